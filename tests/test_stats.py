"""The statistics module: known answers, agreement with scipy/statsmodels, and calibration by simulation.

Simulated studies have realistic structure: per-language difficulty shared by both arms (paired), seed noise per
run, per-example difficulty shared by both arms. Under the null (no true gain) each test must reject at
alpha = 0.05 in [0.03, 0.07] of >= 1,000 studies; CIs must cover the true gain within 3 points of nominal.
"""

import numpy as np
import pytest
from scipy import stats as sps

from xstilts.stats import core as C

N_STUDIES = 1000


def null_gains(rng, n_studies=N_STUDIES, n_lang=10, n_seeds=3, lang_sd=1.0, seed_sd=1.5, effect=0.0):
    """(studies, languages, seeds) gains: a language-specific true gain around `effect` plus seed noise of two runs."""
    lang = rng.normal(effect, lang_sd, size=(n_studies, n_lang, 1))
    return lang + rng.normal(0, seed_sd * np.sqrt(2), size=(n_studies, n_lang, n_seeds))


# ---------------------------------------------------------------- known answers

def test_ratio_pieces_reproduce_the_corpus_metrics():
    recs = [{"n_true": 2, "n_pred": 1, "n_correct": 1}, {"n_true": 1, "n_pred": 2, "n_correct": 1}]
    # seqeval: P = 2/3, R = 2/3 -> F1 = 66.67
    assert C.ratio(C.pieces_of("seqeval_f1", recs)) == pytest.approx(200 / 3)
    assert C.ratio(C.pieces_of("accuracy", [{"correct": 1}, {"correct": 0}, {"correct": 1}])) == pytest.approx(200 / 3)
    assert C.ratio(C.pieces_of("squad", [{"f1": 0.5}, {"f1": 1.0}])) == pytest.approx(75.0)
    with pytest.raises(ValueError, match="BUCC"):
        C.pieces_of("bucc_f1", [])


def test_sign_flip_is_exact_and_agrees_with_scipy():
    g = np.array([1.2, 0.4, -0.3, 2.0, 0.9, 1.1, -0.2, 0.7])
    ref = sps.permutation_test((g,), np.mean, permutation_type="samples", n_resamples=np.inf,
                               alternative="two-sided").pvalue
    assert C.sign_flip_test(g) == pytest.approx(ref)
    # all positive: only the all-plus and all-minus patterns are as extreme
    assert C.sign_flip_test(np.ones(6)) == pytest.approx(2 / 64) == C.min_sign_flip_p(6)


def test_wilcoxon_is_scipys_and_partial_conjunction_known_values():
    g = np.array([1.2, 0.4, -0.3, 2.0, 0.9, 1.1, -0.25, 0.7])
    assert C.wilcoxon_test(g) == pytest.approx(sps.wilcoxon(g).pvalue)
    pc = C.partial_conjunction([0.001, 0.01, 0.02, 0.3, 0.5])
    assert pc["p_u"] == pytest.approx([0.005, 0.04, 0.06, 0.6, 0.6]) and pc["count"] == 2
    fisher = C.partial_conjunction([0.001, 0.01, 0.02, 0.3, 0.5], method="fisher")
    assert fisher["p_u"][0] == pytest.approx(sps.combine_pvalues([0.001, 0.01, 0.02, 0.3, 0.5]).pvalue)


def test_multiplicity_names_its_method():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.2]
    assert C.adjust(p, "holm") == pytest.approx(multipletests(p, method="holm")[1])
    assert C.adjust(p, "fdr_bh") == pytest.approx(multipletests(p, method="fdr_bh")[1])
    with pytest.raises(ValueError, match="holm"):
        C.adjust(p, "sidak")


def test_paired_bootstrap_matches_a_loop_and_pools_seeds():
    rng = np.random.default_rng(1)
    base = np.c_[rng.binomial(1, 0.6, 300), np.ones(300)]
    arm = np.c_[rng.binomial(1, 0.7, 300), np.ones(300)]
    t = C.paired_bootstrap(base, arm, n_resamples=2000, seed=3)
    assert t.delta == pytest.approx(C.ratio(arm) - C.ratio(base))
    loop_rng = np.random.default_rng(7)
    loop = [C.ratio(arm[i]) - C.ratio(base[i]) for i in (loop_rng.integers(0, 300, 300) for _ in range(2000))]
    assert t.ci_low == pytest.approx(np.quantile(loop, 0.025), abs=1.5)
    assert t.ci_high == pytest.approx(np.quantile(loop, 0.975), abs=1.5)
    pooled = C.paired_bootstrap(np.stack([base, base]), np.stack([arm, arm]), n_resamples=500)
    assert pooled.n_seeds == 2 and pooled.delta == pytest.approx(t.delta)
    with pytest.raises(ValueError, match="same examples"):
        C.paired_bootstrap(base, arm[:10])


def test_bootstrap_p_counts_ties_exactly_on_a_small_test_set():
    """24 accuracy examples: the bootstrap distribution is discrete and many resampled gains lie exactly at
    |observed gain| from the null. The p must equal the one counted in integers on the same draws (float32 once
    decided those ties by rounding)."""
    rng = np.random.default_rng(5)
    base, arm = (np.c_[rng.binomial(1, q, 24), np.ones(24)] for q in (0.5, 0.6))
    t = C.paired_bootstrap(base, arm, n_resamples=3000, seed=11, chunk=1000)
    draws = np.random.default_rng(11)
    counts = np.concatenate([C._resample_counts(draws, 24, 1000) for _ in range(3)]).astype(np.int64)
    diff = (arm[:, 0] - base[:, 0]).astype(np.int64)
    D, G = diff.sum(), counts @ diff  # gains in units of 100/24 points
    assert D != 0 and np.sum(np.abs(G - D) == abs(D)) > 30  # ties are common here
    assert t.p == (1 + np.sum(np.abs(G - D) >= abs(D))) / 3001


def test_selection_is_made_on_dev_not_test():
    s = C.select_on_dev({"nli": 70.0, "qa": 72.0}, {"nli": {"delta": 3.0}, "qa": {"delta": 1.0}})
    assert s["chosen_on_dev"] == "qa" and s["test"] == {"delta": 1.0} and s["naive_differs"]


def test_mixed_model_recovers_a_planted_effect_and_reports_convergence():
    rng = np.random.default_rng(0)
    lang_eff, seed_eff = rng.normal(0, 5, 12), rng.normal(0, 1, 3)
    rows = [{"score": 50 + {"none": 0, "nli": 2.0, "qa": 0}[a] + lang_eff[l] + seed_eff[s] + rng.normal(0, 1),
             "arm": a, "language": f"l{l}", "seed": s} for a in ("none", "nli", "qa") for l in range(12) for s in range(3)]
    m = C.mixed_model(rows)
    assert m["reference"] == "none" and m["converged"]
    assert m["effects"]["nli"]["ci_low"] < 2.0 < m["effects"]["nli"]["ci_high"] and m["effects"]["nli"]["p"] < 0.001
    assert m["effects"]["qa"]["p"] > 0.01


def test_aso_orders_clearly_different_seed_distributions():
    rng = np.random.default_rng(0)
    better, worse = rng.normal(60, 1, 5), rng.normal(55, 1, 5)
    assert C.aso_epsilon(better, worse) < 0.2
    assert C.aso_epsilon(worse, better) > 0.5


@pytest.mark.parametrize("case", ["three_seeds", "unequal_sizes", "ties", "identical", "bonferroni"])
def test_aso_equals_deepsig(case):
    """Our vectorised ASO is deepsig 1.2.8's algorithm with its random draws: the same ε_min."""
    import warnings

    from deepsig import aso

    rng = np.random.default_rng(7)
    a, b, k = {"three_seeds": (rng.normal(41, 2, 3), rng.normal(39, 2, 3), 1),
               "unequal_sizes": (rng.normal(50, 1, 5), rng.normal(50.5, 3, 8), 1),
               "ties": ([54.2, 54.2, 54.2], [50.0, 54.2, 53.1], 1),
               "identical": ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 1),
               "bonferroni": (rng.normal(60, 1, 4), rng.normal(59, 1, 4), 5)}[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deepsig warns on zero Wasserstein distance
        ref = aso(a, b, num_comparisons=k, seed=3, show_progress=False, num_bootstrap_iterations=300)
    assert C.aso_epsilon(a, b, seed=3, num_comparisons=k, n_bootstrap=300) == pytest.approx(ref, abs=1e-9)


# ---------------------------------------------------------------- calibration by simulation

@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(2026)
    return null_gains(rng), null_gains(rng, effect=1.5)


def _rate(pvalues):
    return float(np.mean(np.asarray(pvalues) <= 0.05))


def test_across_language_tests_hold_their_size_under_the_null(simulated):
    null, _ = simulated
    per_lang = null.mean(axis=2)
    size_flip = _rate([C.sign_flip_test(g) for g in per_lang])
    size_wilcoxon = _rate([C.wilcoxon_test(g) for g in per_lang])
    print(f"type-I at 0.05: sign-flip {size_flip:.3f}, Wilcoxon {size_wilcoxon:.3f}")
    assert 0.03 <= size_flip <= 0.07 and 0.03 <= size_wilcoxon <= 0.07


def test_across_language_power_for_a_planted_gain(simulated):
    _, planted = simulated
    power = _rate([C.sign_flip_test(g) for g in planted.mean(axis=2)])
    print(f"power of the sign-flip test, gain 1.5 points (language sd 1, seed sd 1.5, 10 languages x 3 seeds): {power:.3f}")
    assert power > 0.6


def test_hierarchical_bootstrap_ci_coverage(simulated):
    _, planted = simulated
    covered = []
    for g in planted:
        _, lo, hi = C.hierarchical_bootstrap(g, n_resamples=1000, seed=0)
        covered.append(lo <= 1.5 <= hi)
    coverage = float(np.mean(covered))
    print(f"hierarchical bootstrap 95% CI coverage: {coverage:.3f}")
    assert 0.92 <= coverage <= 0.98


def test_example_level_bootstrap_size_and_coverage():
    """Per language: paired examples (shared difficulty), two arms of equal skill; F1-like ratio metric."""
    rng = np.random.default_rng(7)
    n, pvals, covered = 200, [], []
    for _ in range(N_STUDIES):
        difficulty = rng.beta(2, 2, n)
        base = np.c_[rng.binomial(1, difficulty), np.ones(n)]
        arm = np.c_[rng.binomial(1, difficulty), np.ones(n)]
        t = C.paired_bootstrap(base, arm, n_resamples=400, seed=int(rng.integers(1 << 30)))
        pvals.append(t.p)
        covered.append(t.ci_low <= 0.0 <= t.ci_high)
    size, coverage = _rate(pvals), float(np.mean(covered))
    print(f"example-level paired bootstrap: type-I {size:.3f}, 95% CI coverage {coverage:.3f}")
    assert 0.03 <= size <= 0.07 and 0.92 <= coverage <= 0.98
