"""Significance of intermediate-task gains: pure functions on arrays (DESIGN 4.7).

The unit that varies is the run. One (arm, seed) run serves every language, so a run's luck moves all of its
languages together; claims are tested over seeds (`run_level_test`: paired t over seeds of the language-averaged
gain, the balanced mixed model with a run effect), and their calibration is shown by simulation on the study's
shape (`stats.simulate`, tests/test_calibration.py, bench/calibration.py). `variance_components` says what varies;
`detectable_effect` what a design can show. Conditional tests, labelled as such: the example-level paired bootstrap
per language (the corpus metric recomputed on each resample) holds the trained models fixed. Every metric we use is
100 * (sum of a) / (sum of b) over per-example pieces (accuracy, token accuracy, seqeval F1 = 2 correct / (true +
predicted), QA F1/EM as a mean), so a resample is a matrix product of resampling counts with the pieces.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05


# ---------------------------------------------------------------- per-example pieces -> ratio statistics

def pieces_of(fmt_metric: str, records: list[dict]) -> np.ndarray:
    """(n, 2) numerator/denominator pieces of one prediction file (`evaluation.predict.score`'s records)."""
    if fmt_metric in ("accuracy", "tatoeba_acc"):
        return np.array([[r["correct"], 1.0] for r in records], dtype=float).reshape(-1, 2)
    if fmt_metric == "token_accuracy":
        return np.array([[r["correct_tokens"], r["tokens"]] for r in records], dtype=float).reshape(-1, 2)
    if fmt_metric == "seqeval_f1":
        return np.array([[2.0 * r["n_correct"], r["n_true"] + r["n_pred"]] for r in records], dtype=float).reshape(-1, 2)
    if fmt_metric in ("squad", "mlqa"):
        return np.array([[r["f1"], 1.0] for r in records], dtype=float).reshape(-1, 2)
    raise ValueError(f"no per-example pieces for metric {fmt_metric!r} (BUCC's F1 depends on a global threshold)")


def ratio(pieces: np.ndarray) -> float:
    """The corpus metric (percent) of (n, 2) pieces."""
    den = pieces[:, 1].sum()
    return 100.0 * pieces[:, 0].sum() / den if den else 0.0


def _resample_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) multinomial counts: how often each example is drawn in each resample. Drawn as n uniform indices
    per resample and counted with one bincount (exactly multinomial; ~2.5x faster than Generator.multinomial,
    which loops over the n categories)."""
    idx = rng.integers(0, n, size=(size, n), dtype=np.int64)
    idx += np.arange(size, dtype=np.int64)[:, None] * n
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


@dataclass
class Test:
    """One comparison: the gain, its CI, the test, raw p (adjusted p is added by a correction)."""

    delta: float
    ci_low: float
    ci_high: float
    p: float
    test: str
    n_languages: int | None = None
    n_seeds: int | None = None
    n_examples: int | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def paired_bootstrap(base: np.ndarray, arm: np.ndarray, n_resamples: int = 10_000, seed: int = 0,
                     confidence: float = 0.95, chunk: int = 1000) -> Test:
    """Example-level paired bootstrap of the gain of `arm` over `base` on the same test examples.

    base, arm: pieces of shape (n, 2) for one seed, or (seeds, n, 2): then each resample draws the examples once and
    the gain is averaged over seeds (pooled over seeds). The corpus metric is recomputed on every resample.
    p: two-sided, from the bootstrap distribution shifted to the null (Efron & Tibshirani 1993, 16.4)."""
    return paired_bootstrap_arms(base, {"arm": arm}, n_resamples, seed, confidence, chunk)["arm"]


def paired_bootstrap_arms(base: np.ndarray, arms: dict[str, np.ndarray], n_resamples: int = 10_000, seed: int = 0,
                          confidence: float = 0.95, chunk: int = 1000, per_seed: bool = False):
    """`paired_bootstrap` of several arms against one baseline on one language, sharing each resample across arms
    and seeds: one draw of resampling counts and one matrix product per chunk for all of them.

    per_seed: also return, per seed, each arm's bootstrap on that seed alone, from the same draws (drawing the
    counts is most of the cost). The draws depend only on `seed` and n, so these equal separate single-seed calls.
    Returns {arm: Test}, or ({arm: Test}, [{arm: Test} per seed]) with per_seed."""
    base = np.asarray(base, float)
    base = base[None] if base.ndim == 2 else base
    stack = [base]
    for name, a in arms.items():
        a = np.asarray(a, float)
        a = a[None] if a.ndim == 2 else a
        if a.shape != base.shape:
            raise ValueError(f"paired bootstrap needs the same examples in both arms: arm {name!r} has shape "
                             f"{a.shape}, the baseline {base.shape}")
        stack.append(a)
    k, (n_seeds, n) = len(stack), base.shape[:2]
    pieces = np.stack(stack)  # (k, seeds, n, 2)
    observed = np.array([[ratio(p) for p in arm] for arm in pieces])  # (k, seeds)
    deltas = (observed[1:] - observed[0]).mean(axis=1)
    # float64 throughout: small test sets give a discrete bootstrap distribution with many resampled gains exactly
    # at |observed gain| from the null; float32 rounding decided those ties at random (p moved by ~0.04)
    flat = pieces.transpose(2, 0, 1, 3).reshape(n, -1)  # (n, k*seeds*2)
    rng = np.random.default_rng(seed)
    seed_gains = np.empty((n_resamples, k - 1, n_seeds))
    for s in range(0, n_resamples, chunk):
        c = _resample_counts(rng, n, min(chunk, n_resamples - s))
        sums = (c @ flat).reshape(len(c), k, n_seeds, 2)
        den = sums[..., 1]
        r = np.where(den > 0, 100.0 * sums[..., 0] / np.where(den > 0, den, 1.0), 0.0)  # (c, k, seeds)
        seed_gains[s:s + len(c)] = r[:, 1:] - r[:, :1]

    def tests(gains, observed_deltas, seeds_in):
        lo, hi = np.quantile(gains, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
        out = {}
        for j, name in enumerate(arms):
            d = float(observed_deltas[j])
            p = (1 + np.sum(np.abs(gains[:, j] - d) >= abs(d) - 1e-9)) / (n_resamples + 1)  # ties count
            out[name] = Test(d, float(lo[j]), float(hi[j]), float(min(1.0, p)), "paired bootstrap (examples)",
                             n_languages=1, n_seeds=seeds_in, n_examples=n)
        return out

    pooled = tests(seed_gains.mean(axis=2), deltas, n_seeds)
    if not per_seed:
        return pooled
    return pooled, [tests(seed_gains[:, :, i], observed[1:, i] - observed[0, i], 1) for i in range(n_seeds)]


# ---------------------------------------------------------------- over training randomness: the run is the unit

def sign_flip_test(values: np.ndarray, n_permutations: int = 100_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation test of mean = 0. On per-seed gains (`run_level_test`) it is the exact
    permutation of arm labels within seeds. Exact over all 2^n sign patterns up to n = 16, Monte Carlo above."""
    g = np.asarray(values, float)
    n = len(g)
    if n == 0:
        return 1.0
    obs = abs(g.mean())
    if n <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        stats_ = np.abs(signs @ g) / n
        return float(np.mean(stats_ >= obs - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(n_permutations, n))
    stats_ = np.abs(signs @ g) / n
    return float((1 + np.sum(stats_ >= obs - 1e-12)) / (n_permutations + 1))


def min_sign_flip_p(n: int) -> float:
    """The smallest two-sided p a sign-flip test over n units can give (2 / 2^n)."""
    return 2.0 / 2 ** n if n else 1.0


MIN_SEEDS = 3  # the calibration grid (tests/test_calibration.py, bench/calibration.py) covers 3, 5 and 10 seeds


def seed_t(per_seed, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Student's t over the last axis (seeds), vectorised over any leading axes: mean, standard error, two-sided p
    and the CI. p is nan where the seeds do not vary (sd 0). The one implementation behind every run-level test
    and behind the calibration simulations."""
    x = np.asarray(per_seed, float)
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    sd = x.std(axis=-1, ddof=1)
    se = sd / np.sqrt(n)
    df = n - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.nan)
    q = sps.t.ppf((1 + confidence) / 2, df)
    return {"delta": mean, "se": se, "t": t, "p": 2 * sps.t.sf(np.abs(t), df), "ci_low": mean - q * se,
            "ci_high": mean + q * se, "df": df}


def run_level_test(gains, confidence: float = 0.95) -> dict:
    """The claim test: is an arm's gain over the baseline real over training randomness?

    gains: (languages, seeds) per-language gains d[l, s] = score(arm, s, l) - score(baseline, s, l) of runs paired
    by seed. One (arm, seed) run serves every language, so its luck moves all of them together: the unit that
    varies is the run. Model d[l, s] = Δ_l + u_s + e[l, s] (u_s: the two runs' shared noise, e: the rest); the
    estimand is Δ = mean_l Δ_l, the mean gain over the study's languages, averaged over training randomness. Its
    estimate is the mean of the per-seed language-averaged gains D_s, tested with Student's t on S - 1 degrees of
    freedom. For a balanced paired design this is exactly the mixed model `score ~ arm + language + (1|arm:seed)`
    with its small-sample (Kenward-Roger) F test: the arm effect is tested against the run-to-run mean square. No
    optimiser is involved, so no convergence flag can decide a claim. Also returned: the exact permutation of arm
    labels within seeds (sign flips of D_s), which cannot go below 2/2^S.

    Needs `MIN_SEEDS` seeds: with fewer the run-to-run variance has too few degrees of freedom for a calibrated
    claim, and the result says so (`p` None, `why`) instead of giving a p."""
    g = np.asarray(gains, float)
    if g.ndim == 1:
        g = g[None, :]
    n_l, n_s = g.shape
    per_seed = g.mean(axis=0)
    delta = float(per_seed.mean())
    out = {"delta": delta, "n_languages": int(n_l), "n_seeds": int(n_s), "per_seed": per_seed.tolist(),
           "df": n_s - 1, "test": f"paired t over {n_s} seeds of the language-averaged gain (run = unit)",
           "inference": "over training randomness, for the mean over these languages",
           "p_permutation": sign_flip_test(per_seed), "min_permutation_p": min_sign_flip_p(n_s)}
    if n_s < MIN_SEEDS:
        return {**out, "p": None, "ci_low": None, "ci_high": None,
                "why": f"{n_s} seed(s): calibrated from {MIN_SEEDS} seeds (the run-to-run variance needs degrees of "
                       "freedom); no claim over training randomness"}
    r = seed_t(per_seed, confidence)
    if not np.isfinite(r["p"]):  # identical per-seed gains: deterministic runs, nothing varies between seeds
        return {**out, "p": None, "ci_low": delta, "ci_high": delta, "se": 0.0,
                "why": "no run-to-run variation (deterministic runs): a claim over training randomness is undefined"}
    return {**out, "p": float(r["p"]), "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]),
            "se": float(r["se"]), "t": float(r["t"])}


def per_language_run_tests(gains) -> list[dict]:
    """Per language: the t test over seeds on that language's gains (over training randomness, but with few seeds
    and one language's test set it has little power: a screen). gains: (languages, seeds)."""
    g = np.asarray(gains, float)
    r = seed_t(g)
    out = []
    for i in range(len(g)):
        p = float(r["p"][i]) if g.shape[1] >= MIN_SEEDS and np.isfinite(r["p"][i]) else None
        one = None if p is None else (p / 2 if r["delta"][i] > 0 else 1 - p / 2)
        out.append({"delta": float(r["delta"][i]), "ci_low": float(r["ci_low"][i]) if p is not None else None,
                    "ci_high": float(r["ci_high"][i]) if p is not None else None, "p": p, "p_one_sided": one,
                    "n_seeds": int(g.shape[1]), "test": "paired t over seeds (run-level)"})
    return out


def variance_components(scores) -> dict:
    """What varies in one arm's scores, a (seeds, languages) matrix: run (seed-to-seed, shared by every language of
    a run), language, and residual (run x language plus test-set sampling), by the balanced two-way ANOVA (method
    of moments; equal to REML when no component is at zero, truncated at 0 otherwise). `share` is
    run / (run + residual): how much of a score's training noise moves all languages together. One language: the
    run variance only."""
    x = np.asarray(scores, float)
    n_s, n_l = x.shape
    if n_s < 2:
        return {"run": None, "language": None, "residual": None, "share": None, "n_seeds": n_s, "n_languages": n_l}
    grand = x.mean()
    seed_means, lang_means = x.mean(axis=1), x.mean(axis=0)
    if n_l < 2:
        return {"run": float(seed_means.var(ddof=1)), "language": None, "residual": None, "share": None,
                "n_seeds": n_s, "n_languages": n_l}
    ms_seed = n_l * np.sum((seed_means - grand) ** 2) / (n_s - 1)
    ms_lang = n_s * np.sum((lang_means - grand) ** 2) / (n_l - 1)
    resid = x - seed_means[:, None] - lang_means[None, :] + grand
    ms_res = float(np.sum(resid ** 2) / ((n_s - 1) * (n_l - 1)))
    run = max(0.0, (ms_seed - ms_res) / n_l)
    lang = max(0.0, (ms_lang - ms_res) / n_s)
    total = run + ms_res
    return {"run": float(run), "language": float(lang), "residual": ms_res,
            "share": float(run / total) if total > 0 else None, "n_seeds": n_s, "n_languages": n_l}


# ---------------------------------------------------------------- power: the smallest gain a design can show

def power_t(delta: float, sd: float, n_seeds: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided run-level t test (`run_level_test`) for a true gain `delta`, when the per-seed
    language-averaged gain has standard deviation `sd` (noncentral t)."""
    if n_seeds < 2 or sd <= 0:
        return float("nan")
    df = n_seeds - 1
    q = sps.t.ppf(1 - alpha / 2, df)
    ncp = delta * np.sqrt(n_seeds) / sd
    p = float(sps.nct.sf(q, df, ncp) + sps.nct.cdf(-q, df, ncp))
    if not np.isfinite(p):  # scipy's noncentral t fails far in the tail: there the normal approximation is exact enough
        p = float(sps.norm.sf(q - abs(ncp)))
    return p


def detectable_effect(sd: float, n_seeds: int, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest true gain the run-level t test detects with the given power (minimum detectable effect)."""
    from scipy.optimize import brentq

    if n_seeds < MIN_SEEDS or not np.isfinite(sd) or sd <= 0:
        return float("nan")
    hi = sd
    while power_t(hi, sd, n_seeds, alpha) < power:
        hi *= 2
    return float(brentq(lambda d: power_t(d, sd, n_seeds, alpha) - power, 0.0, hi, xtol=1e-6))


def gain_sd(components_arm: dict, components_base: dict, n_languages: int) -> float | None:
    """Predicted sd of a per-seed language-averaged gain from the two arms' variance components: the runs' noise
    adds, the residual averages over languages (shared-noise share 1 means languages cannot average it away)."""
    parts = []
    for c in (components_arm, components_base):
        if c.get("run") is None:
            return None
        parts.append(c["run"] + (c["residual"] or 0.0) / max(1, n_languages))
    return float(np.sqrt(sum(parts)))


# ---------------------------------------------------------------- seeds: Almost Stochastic Order

def aso_epsilon(arm_scores, base_scores, seed: int = 0, confidence: float = 0.95, num_comparisons: int = 1,
                n_bootstrap: int = 1000, dt: float = 0.005) -> float:
    """ε_min of Almost Stochastic Order (del Barrio et al. 2018; Dror et al. 2019): the arm's score distribution
    (over seeds) stochastically dominates the baseline's when ε_min < 0.5; DESIGN's threshold for a claim is 0.2.
    Needs at least 2 scores per side.

    The algorithm, grid and random draws of `deepsig.aso` 1.2.8 (bootstrap i seeds numpy's legacy generator with
    seed + i + 1), vectorised over the bootstrap: deepsig evaluates its quantile function one point at a time and
    spent ~2 s per comparison, 97 % of the stats stage. tests/test_stats.py checks equality with deepsig."""
    from scipy.stats import norm

    a, b = np.sort(np.asarray(arm_scores, float)), np.sort(np.asarray(base_scores, float))
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if num_comparisons > 1:  # Bonferroni on the confidence level, as deepsig
        confidence += (1 - confidence) / num_comparisons
    t = np.arange(dt, 1, dt)
    ratio = _violation_ratio(_quantiles(a, t), _quantiles(b, t), dt)
    draws_a, draws_b = np.empty((n_bootstrap, len(a))), np.empty((n_bootstrap, len(b)))
    for i in range(n_bootstrap):
        rs = np.random.RandomState(seed + i + 1)
        draws_a[i], draws_b[i] = rs.uniform(0, 1, len(a)), rs.uniform(0, 1, len(b))
    # a bootstrap sample is the quantile function at uniform draws; its own quantile function needs it sorted
    boot_a, boot_b = np.sort(_quantiles(a, draws_a), axis=1), np.sort(_quantiles(b, draws_b), axis=1)
    samples = _violation_ratio(_quantiles(boot_a, t), _quantiles(boot_b, t), dt)
    const = np.sqrt(len(a) * len(b) / (len(a) + len(b)))
    sigma = np.std(const * (samples - ratio))
    return float(np.clip(ratio - sigma / const * norm.ppf(1 - confidence), 0, 1))


def _quantiles(sorted_scores: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Empirical quantile function F^-1(p) = x_(ceil(n p)) of sorted scores (rows: one sample each when 2-D)."""
    n = sorted_scores.shape[-1]
    idx = np.clip(np.ceil(n * p).astype(int) - 1, 0, n - 1)
    if sorted_scores.ndim == 1:
        return sorted_scores[idx]
    return np.take_along_axis(sorted_scores, np.broadcast_to(idx, (len(sorted_scores), idx.shape[-1])), axis=1)


def _violation_ratio(f: np.ndarray, g: np.ndarray, dt: float) -> np.ndarray:
    """ε_W2: the share of the squared Wasserstein-2 distance where F^-1 < G^-1 (stochastic order violated); 0.5
    when the distributions coincide (deepsig's convention). Rows are samples when 2-D."""
    diff = g - f
    w2 = np.sum(diff ** 2 * dt, axis=-1)
    violated = np.where(f >= g, 0.0, diff)
    inside = np.sum(violated[..., 1:] ** 2 * dt, axis=-1)  # deepsig skips the first grid point
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w2 == 0, 0.5, inside / np.where(w2 == 0, 1.0, w2))


# ---------------------------------------------------------------- multiplicity and replicability

def adjust(pvalues, method: str) -> np.ndarray:
    """Holm (`holm`, confirmatory claims) or Benjamini-Hochberg (`fdr_bh`, screens); always name the method
    (statsmodels' default is Holm-Sidak)."""
    from statsmodels.stats.multitest import multipletests

    if method not in ("holm", "fdr_bh", "bonferroni"):
        raise ValueError(f"multiplicity method {method!r}; expected holm, fdr_bh or bonferroni")
    p = np.asarray(pvalues, float)
    if p.size == 0:
        return p
    return multipletests(p, alpha=ALPHA, method=method)[1]


def partial_conjunction(pvalues, alpha: float = ALPHA, method: str = "bonferroni") -> dict:
    """In how many languages does the gain hold? Partial-conjunction p-values p^{u/n} (Benjamini & Heller 2008) with
    Bonferroni or Fisher combination; the count is the largest u whose (monotone) p^{u/n} <= alpha (Dror et al. 2017)."""
    p = np.sort(np.clip(np.asarray(pvalues, float), 1e-300, 1.0))
    n = len(p)
    pu = np.empty(n)
    for u in range(1, n + 1):
        rest = p[u - 1:]
        if method == "bonferroni":
            pu[u - 1] = min(1.0, (n - u + 1) * rest[0])
        elif method == "fisher":
            pu[u - 1] = sps.chi2.sf(-2 * np.log(rest).sum(), 2 * len(rest))
        else:
            raise ValueError(f"partial conjunction method {method!r}; expected bonferroni or fisher")
    pu = np.maximum.accumulate(pu)  # p^{u/n} is non-decreasing in u
    return {"count": int(np.sum(pu <= alpha)), "n": n, "p_u": pu.tolist(), "method": method}


# ---------------------------------------------------------------- selection-aware best intermediate task

def select_on_dev(dev: dict[str, float], test_gain: dict[str, dict]) -> dict:
    """"Best intermediate per target" as a selection: pick the arm with the best English-dev score, report that
    arm's test result (its test was not used to choose). Also says what the naive test-maximum would have claimed."""
    if not dev:
        return {}
    chosen = max(dev, key=dev.get)
    naive = max(test_gain, key=lambda a: test_gain[a]["delta"]) if test_gain else None
    return {"chosen_on_dev": chosen, "dev": dev[chosen], "test": test_gain.get(chosen),
            "naive_test_max": naive, "naive_differs": naive != chosen}
