"""Simulated studies on a study's real shape, for calibration (DESIGN 4.7): the claim tests must keep their size.

A simulated study has a baseline and `n_arms` arms, `n_seeds` seeds shared by every arm (paired runs), `n_languages`
languages and `n_examples` test examples per language. Each example's success probability is

    p = sigmoid(logit(mu_language) + difficulty_example + effect_arm + r[arm, seed] + v[arm, seed, language])

Examples (their difficulty) are shared by every arm and seed, as the test sets are. r is the run's luck: one draw
per (arm, seed), shared by every language of the run; v is the rest of the run-to-run noise, per language. The
run noise is sized so that the share run / (run + residual) of a score's variance (the residual includes the
test-set sampling noise) equals `share` (measured back by `stats.core.variance_components`). Metrics: accuracy
(correct / n) and QA F1 (per-question F1 in {0, .25, .5, .75, 1}, averaged). Scores are drawn per difficulty bin
(a binomial or multinomial count per bin), which is exact for the binned difficulty and keeps 2,000 studies of
40 languages x 10 seeds x 2,000 examples a matter of seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import core as C

N_BINS = 8
DIFFICULTY = np.linspace(-1.5, 1.5, N_BINS)     # logit offsets of the example-difficulty bins
QA_VALUES = np.array([1.0, 0.75, 0.5, 0.25, 0.0])  # per-question F1 values; a wrong answer's partial credit
QA_PARTIAL = np.array([0.15, 0.15, 0.15, 0.55])   # ... splits as these shares over .75, .5, .25, 0
V_SD = 0.05                                     # logit sd of the per-language run noise v


@dataclass(frozen=True)
class Shape:
    n_languages: int
    n_seeds: int
    n_examples: int
    share: float           # run / (run + residual) variance of one score
    metric: str = "accuracy"  # accuracy | qa_f1
    n_arms: int = 4

    def label(self) -> str:
        return (f"{self.metric} L={self.n_languages} S={self.n_seeds} n={self.n_examples} "
                f"share={self.share}")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bin_sizes(n: int) -> np.ndarray:
    k = min(N_BINS, n)
    sizes = np.full(N_BINS, 0)
    sizes[:k] = [len(a) for a in np.array_split(np.arange(n), k)]
    return sizes


def _language_means(n_languages: int) -> np.ndarray:
    """Baseline logits of the languages: accuracies from 0.35 to 0.75 (fixed, so the truth is known)."""
    return np.log(np.linspace(0.35, 0.75, n_languages) / (1 - np.linspace(0.35, 0.75, n_languages)))


def _score(rng, logits: np.ndarray, sizes: np.ndarray, metric: str) -> np.ndarray:
    """Scores (points) from logits of shape (..., bins) and bin sizes."""
    p = _sigmoid(logits)
    n = sizes.sum()
    if metric == "accuracy":
        return 100.0 * rng.binomial(sizes, p).sum(axis=-1) / n
    if metric == "qa_f1":  # a multinomial count per bin, drawn as conditional binomials (numpy's is slow here)
        exact = rng.binomial(sizes, p)
        rest, credit, left = sizes - exact, exact.astype(float), 1.0
        for share, value in zip(QA_PARTIAL[:-1], QA_VALUES[1:-1]):
            c = rng.binomial(rest, share / left)
            credit += value * c
            rest, left = rest - c, left - share
        return 100.0 * credit.sum(axis=-1) / n
    raise ValueError(f"simulated metric {metric!r}; expected accuracy or qa_f1")


def _expected(logits: np.ndarray, sd: float, sizes: np.ndarray, metric: str) -> np.ndarray:
    """Expected score (points) when the logits carry N(0, sd^2) noise: Gauss-Hermite over the noise."""
    x, w = np.polynomial.hermite_e.hermegauss(41)
    p = _sigmoid(logits[..., None] + sd * x)
    p = (p * w).sum(axis=-1) / w.sum()
    credit = p if metric == "accuracy" else p + (1 - p) * float(QA_PARTIAL @ QA_VALUES[1:])
    return 100.0 * (credit * sizes).sum(axis=-1) / sizes.sum()


def _measured_share(shape: Shape, r_sd: float, rng, n_pilot: int = 200, n_seeds: int = 20) -> float:
    sizes, mu = _bin_sizes(shape.n_examples), _language_means(shape.n_languages)
    r = rng.normal(0, r_sd, (n_pilot, n_seeds, 1))
    v = rng.normal(0, V_SD, (n_pilot, n_seeds, shape.n_languages))
    x = _score(rng, (mu + r + v)[..., None] + DIFFICULTY, sizes, shape.metric)
    comps = [C.variance_components(m) for m in x]
    run, res = np.mean([c["run"] for c in comps]), np.mean([c["residual"] for c in comps])
    return float(run / (run + res))


def _run_sd(shape: Shape, rng) -> float:
    """Logit sd of the run effect r that gives the shape's shared-noise share. Start from the residual variance of
    a score without r (a pilot) and the slope of the score in the logit, then correct twice on the share a pilot
    with r measures (the logistic link bends large run effects)."""
    if shape.share <= 0:
        return 0.0
    if not 0 < shape.share < 1:
        raise ValueError(f"simulated shared-noise share {shape.share}; expected 0 <= share < 1")
    sizes, mu = _bin_sizes(shape.n_examples), _language_means(shape.n_languages)
    logits = mu[None, :, None] + DIFFICULTY + rng.normal(0, V_SD, (400, shape.n_languages, 1))
    residual = float(_score(rng, logits, sizes, shape.metric).var(axis=0).mean())
    eps = 1e-3
    slope = float(np.mean((_expected(mu[:, None] + DIFFICULTY + eps, 0, sizes, shape.metric)
                           - _expected(mu[:, None] + DIFFICULTY - eps, 0, sizes, shape.metric)) / (2 * eps)))
    odds = shape.share / (1 - shape.share)
    r_sd = float(np.sqrt(odds * residual) / slope)
    for _ in range(2):
        got = min(max(_measured_share(shape, r_sd, rng), 1e-3), 1 - 1e-3)
        r_sd *= float(np.sqrt(odds / (got / (1 - got))))
    return r_sd


def simulate(shape: Shape, n_studies: int, seed: int, effect: float = 0.0):
    """Scores of `n_studies` simulated studies, shape (studies, 1 + n_arms, seeds, languages) in points (index 0
    is the baseline), and the true mean gain over languages of arm 1 (every arm has the same `effect`, in logits;
    the truth is the expected score difference over training randomness and test sampling)."""
    rng = np.random.default_rng(seed)
    sizes, mu = _bin_sizes(shape.n_examples), _language_means(shape.n_languages)
    r_sd = _run_sd(shape, rng)
    k, s, l = 1 + shape.n_arms, shape.n_seeds, shape.n_languages
    eff = np.r_[0.0, np.full(shape.n_arms, effect)]
    r = rng.normal(0, r_sd, (n_studies, k, s, 1))
    v = rng.normal(0, V_SD, (n_studies, k, s, l))
    logits = (mu + eff[:, None, None] + r + v)[..., None] + DIFFICULTY  # (studies, k, s, l, bins)
    scores = _score(rng, logits, sizes, shape.metric)
    noise_sd = float(np.hypot(r_sd, V_SD))
    base = _expected(mu[:, None] + DIFFICULTY, noise_sd, sizes, shape.metric)
    arm = _expected(mu[:, None] + effect + DIFFICULTY, noise_sd, sizes, shape.metric)
    return scores, float(np.mean(arm - base))


def claim_calibration(shape: Shape, n_studies: int, seed: int, alpha: float = C.ALPHA, effect: float = 0.0) -> dict:
    """Rejection rates and CI coverage of the tests a claim rests on, over simulated studies of one shape:

    claim      run-level t (stats.core.seed_t on the per-seed language-averaged gain) of arm 1: type-I / power
    coverage   its 95 % CI covers the true mean gain
    holm       Holm over the n_arms arms (each against the same baseline runs): P(any rejection) = FWER under the null
    per_lang   the per-language run-level t tests (a screen): mean rejection rate over languages
    replicate  partial conjunction (Bonferroni) over the one-sided per-language tests: P(count >= 1)
    share      the measured shared-noise share (variance_components, averaged over studies)
    Each rate comes with its Monte-Carlo 95 % interval half-width (binomial)."""
    scores, truth = simulate(shape, n_studies, seed, effect)
    gains = scores[:, 1:] - scores[:, :1]            # (studies, arms, seeds, languages)
    per_seed = gains.mean(axis=3)                    # (studies, arms, seeds)
    t = C.seed_t(per_seed)
    p = np.where(np.isfinite(t["p"]), t["p"], 1.0)
    claim = p[:, 0] <= alpha
    covered = (t["ci_low"][:, 0] <= truth) & (truth <= t["ci_high"][:, 0])
    holm_any = p.min(axis=1) <= alpha / shape.n_arms  # Holm rejects something iff its first step does
    lang = C.seed_t(np.moveaxis(gains[:, 0], 1, 2))   # (studies, languages) over seeds
    lp = np.where(np.isfinite(lang["p"]), lang["p"], 1.0)
    one_sided = np.where(lang["delta"] > 0, lp / 2, 1 - lp / 2)
    replicate = shape.n_languages * one_sided.min(axis=1) <= alpha
    comps = [C.variance_components(scores[i, 0]) for i in range(min(n_studies, 300))]
    run, res = np.mean([c["run"] for c in comps]), np.mean([c["residual"] for c in comps])
    mc = lambda x: float(1.96 * np.sqrt(max(np.mean(x) * (1 - np.mean(x)), 1e-12) / len(x)))
    return {"shape": shape.label(), "truth": truth, "n_studies": n_studies,
            "claim": float(claim.mean()), "claim_mc": mc(claim),
            "coverage": float(covered.mean()), "coverage_mc": mc(covered),
            "holm": float(holm_any.mean()), "holm_mc": mc(holm_any),
            "per_lang": float((lp <= alpha).mean()), "replicate": float(replicate.mean()),
            "share": float(run / (run + res)) if run + res > 0 else float("nan")}
