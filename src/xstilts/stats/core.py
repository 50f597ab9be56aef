"""Significance of intermediate-task gains: pure functions on arrays (DESIGN 4.7).

Unit of replication = language (and seed). Per language, the gain of an arm over the baseline is tested with an
example-level paired bootstrap that recomputes the corpus metric on each resample; across languages, with a paired
sign-flip permutation test and Wilcoxon on seed-averaged gains plus a hierarchical (languages, then seeds) bootstrap
CI; seed distributions with Almost Stochastic Order. Every metric we use is 100 * (sum of a) / (sum of b) over
per-example pieces (accuracy, token accuracy, seqeval F1 = 2 correct / (true + predicted), QA F1/EM as a mean), so
a resample is a matrix product of resampling counts with the pieces: no Python loop per resample.
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


# ---------------------------------------------------------------- across languages (seed-averaged gains)

def sign_flip_test(gains: np.ndarray, n_permutations: int = 100_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation test of mean gain = 0 (gains are per-language differences).
    Exact over all 2^n sign patterns up to n = 16 languages, Monte Carlo (with the observed pattern) above."""
    g = np.asarray(gains, float)
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
    """The smallest two-sided p a sign-flip test over n languages can give (2 / 2^n): with few languages no gain
    can be significant, whatever its size."""
    return 2.0 / 2 ** n if n else 1.0


def wilcoxon_test(gains: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank test (scipy; exact for small n without ties)."""
    g = np.asarray(gains, float)
    if len(g) == 0 or np.all(g == 0):
        return 1.0
    return float(sps.wilcoxon(g, alternative="two-sided").pvalue)


def hierarchical_bootstrap(gains: np.ndarray, n_resamples: int = 10_000, seed: int = 0,
                           confidence: float = 0.95) -> tuple[float, float, float]:
    """CI of the mean gain over a (languages, seeds) matrix: resample languages, then seeds within each language.
    Returns (mean, low, high)."""
    g = np.asarray(gains, float)
    if g.ndim == 1:
        g = g[:, None]
    n_l, n_s = g.shape
    rng = np.random.default_rng(seed)
    li = rng.integers(0, n_l, size=(n_resamples, n_l))
    si = rng.integers(0, n_s, size=(n_resamples, n_l, n_s))
    means = g[li[..., None], si].mean(axis=(1, 2))
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(g.mean()), float(lo), float(hi)


def across_languages(gains: np.ndarray, n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Gain of an arm over the baseline across languages from a (languages, seeds) matrix of per-language gains:
    sign-flip and Wilcoxon on seed-averaged gains, hierarchical bootstrap CI."""
    g = np.asarray(gains, float)
    if g.ndim == 1:
        g = g[:, None]
    per_lang = g.mean(axis=1)
    mean, lo, hi = hierarchical_bootstrap(g, n_resamples, seed)
    return {"delta": mean, "ci_low": lo, "ci_high": hi, "ci": "hierarchical bootstrap (languages, then seeds)",
            "p_sign_flip": sign_flip_test(per_lang, seed=seed), "p_wilcoxon": wilcoxon_test(per_lang),
            "min_attainable_p": min_sign_flip_p(len(per_lang)), "n_languages": int(g.shape[0]),
            "n_seeds": int(g.shape[1])}


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


# ---------------------------------------------------------------- pooled effect

def mixed_model(scores) -> dict:
    """`score ~ arm + (1|language) + (1|seed)` (statsmodels MixedLM, crossed random intercepts as variance
    components in one group). scores: DataFrame with columns score, arm, language, seed; the first arm level in
    sorted order is the reference unless an arm is called `none`. Returns the fixed effects with CIs and p, the
    variance components and whether the fit converged."""
    import warnings

    import pandas as pd
    import statsmodels.formula.api as smf

    df = pd.DataFrame(scores).copy()
    arms = sorted(df["arm"].unique(), key=lambda a: (a != "none", a))
    df["arm"] = pd.Categorical(df["arm"], categories=arms)
    df["language"], df["seed"], df["group"] = df["language"].astype(str), df["seed"].astype(str), 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = smf.mixedlm("score ~ C(arm)", df, groups="group", re_formula="0",
                            vc_formula={"language": "0 + C(language)", "seed": "0 + C(seed)"})
        try:
            fit = model.fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as e:
            return {"converged": False, "error": str(e), "reference": arms[0]}
    ci = fit.conf_int()
    effects = {}
    for name in fit.fe_params.index:
        if name.startswith("C(arm)"):
            arm = name.split("[T.", 1)[1].rstrip("]")
            effects[arm] = {"delta": float(fit.fe_params[name]), "ci_low": float(ci.loc[name, 0]),
                            "ci_high": float(ci.loc[name, 1]), "p": float(fit.pvalues[name])}
    return {"reference": arms[0], "effects": effects, "converged": bool(getattr(fit, "converged", True)),
            "warnings": sorted({str(w.message).split("\n")[0] for w in caught})[:5],
            "variance": {k: float(v) for k, v in zip(fit.model.exog_vc.names, fit.vcomp)},
            "residual_variance": float(fit.scale), "n": int(len(df))}


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
