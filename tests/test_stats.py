"""The statistics module: known answers and agreement with scipy/statsmodels. The calibration of the claim tests
by simulation on the study's shape is tests/test_calibration.py."""

import numpy as np
import pytest
from scipy import stats as sps

from xstilts.stats import core as C

N_STUDIES = 1000


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


def test_partial_conjunction_known_values():
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


def test_run_level_test_is_students_t_over_seeds_of_the_language_average():
    g = np.array([[1.0, 2.0, 0.5, 3.0], [2.0, 1.5, 0.0, 2.5], [0.5, 3.0, 1.0, 2.0]])  # 3 languages x 4 seeds
    r = C.run_level_test(g)
    ref = sps.ttest_1samp(g.mean(axis=0), 0.0)
    assert r["p"] == pytest.approx(ref.pvalue) and r["df"] == 3 and r["n_languages"] == 3 and r["n_seeds"] == 4
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert r["p_permutation"] == pytest.approx(2 / 16) == r["min_permutation_p"]  # all four per-seed gains > 0
    # a language's own luck cannot make a claim: shifting one language by a constant moves delta, not the run spread
    shifted = g.copy()
    shifted[0] += 10
    assert C.run_level_test(shifted)["se"] == pytest.approx(r["se"])


def test_run_level_test_refuses_what_it_cannot_calibrate():
    two = C.run_level_test(np.array([[1.0, 2.0], [1.5, 2.5]]))
    assert two["p"] is None and "calibrated from 3 seeds" in two["why"]
    flat = C.run_level_test(np.array([[1.0, 1.0, 1.0]]))
    assert flat["p"] is None and "deterministic" in flat["why"]
    langs = C.per_language_run_tests(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    assert langs[0]["p"] == pytest.approx(sps.ttest_1samp([1, 2, 3], 0).pvalue) and langs[1]["p"] is None


def test_variance_components_recover_planted_components():
    """Balanced two-way ANOVA on (seeds, languages): known components come back on average."""
    rng = np.random.default_rng(3)
    run, lang, res = 4.0, 9.0, 1.0
    est = [C.variance_components(rng.normal(0, np.sqrt(run), (20, 1)) + rng.normal(0, np.sqrt(lang), (1, 15))
                                 + rng.normal(0, np.sqrt(res), (20, 15))) for _ in range(300)]
    assert np.mean([e["run"] for e in est]) == pytest.approx(run, rel=0.1)
    assert np.mean([e["language"] for e in est]) == pytest.approx(lang, rel=0.15)
    assert np.mean([e["residual"] for e in est]) == pytest.approx(res, rel=0.05)
    assert np.mean([e["share"] for e in est]) == pytest.approx(run / (run + res), abs=0.05)
    one = C.variance_components(np.array([[1.0], [3.0], [2.0]]))
    assert one["run"] == pytest.approx(1.0) and one["share"] is None


def test_power_and_detectable_effect_agree_with_statsmodels():
    from statsmodels.stats.power import TTestPower

    ref = TTestPower()
    assert C.power_t(3.0, 4.0, 5, 0.05) == pytest.approx(ref.power(effect_size=0.75, nobs=5, alpha=0.05), abs=1e-6)
    mde = C.detectable_effect(4.0, 5, 0.0125)
    assert mde / 4.0 == pytest.approx(ref.solve_power(nobs=5, alpha=0.0125, power=0.8), rel=1e-4)
    assert C.power_t(mde, 4.0, 5, 0.0125) == pytest.approx(0.8, abs=1e-6)
    assert np.isnan(C.detectable_effect(4.0, 2))  # below the calibrated seed count
    assert C.gain_sd({"run": 2.0, "residual": 10.0}, {"run": 1.0, "residual": 10.0}, 10) == pytest.approx(np.sqrt(5.0))


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


# ---------------------------------------------------------------- the conditional per-language test

def _rate(pvalues):
    return float(np.mean(np.asarray(pvalues) <= 0.05))


def test_example_level_bootstrap_size_and_coverage():
    """Per language, with the trained models held fixed (no run noise: what this conditional test is for): paired
    examples (shared difficulty), two arms of equal skill."""
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
