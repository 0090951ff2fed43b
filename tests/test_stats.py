"""Bootstrap intervals and paired comparisons against independent NumPy / SciPy computations."""
import numpy as np
import pytest
from scipy import stats as scipy_stats

from utils.stats import bootstrap_means, mean_with_ci, paired_difference, paired_t_pvalue


def loop_bootstrap_means(values, num_resamples, seed):
    """One resample at a time from the same generator stream."""
    rng = np.random.default_rng(seed)
    return np.array([values[rng.integers(0, len(values), size=len(values))].mean() for _ in range(num_resamples)])


def test_bootstrap_means_equal_a_loop_across_chunks():
    values = np.random.default_rng(0).normal(size=37)
    np.testing.assert_allclose(bootstrap_means(values, 2500, seed=7), loop_bootstrap_means(values, 2500, 7),
                               rtol=0, atol=1e-15)


def test_mean_with_ci_is_the_percentile_interval():
    values = np.random.default_rng(1).uniform(size=50)
    summary = mean_with_ci(values, 3000, seed=3)
    reference = np.sort(loop_bootstrap_means(values, 3000, 3))
    assert summary["mean"] == pytest.approx(values.mean())
    assert summary["n"] == 50
    assert summary["ci_low"] == pytest.approx(np.percentile(reference, 2.5))
    assert summary["ci_high"] == pytest.approx(np.percentile(reference, 97.5))


def test_ci_width_matches_the_normal_approximation():
    values = np.random.default_rng(2).normal(loc=0.7, scale=0.1, size=2000)
    summary = mean_with_ci(values, 4000, seed=0)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert (summary["ci_high"] - summary["ci_low"]) / 2 == pytest.approx(half_width, rel=0.1)
    assert summary["ci_low"] < values.mean() < summary["ci_high"]


def test_paired_difference_resamples_tasks_jointly():
    rng = np.random.default_rng(4)
    task_difficulty = rng.uniform(0.5, 0.9, size=60)  # shared by both methods: pairing removes it
    a = task_difficulty + 0.02 + 0.005 * rng.normal(size=60)
    b = task_difficulty + 0.005 * rng.normal(size=60)
    result = paired_difference(a, b, 2000, seed=5)
    reference = loop_bootstrap_means(a - b, 2000, 5)
    assert result["diff"] == pytest.approx((a - b).mean())
    assert result["diff_ci_low"] == pytest.approx(np.percentile(reference, 2.5))
    assert result["diff_ci_high"] == pytest.approx(np.percentile(reference, 97.5))
    assert 0 < result["diff_ci_low"] < result["diff_ci_high"] < 0.04  # far narrower than the unpaired spread
    assert result["p_value"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert result["p_value"] < 1e-6


def test_paired_t_pvalue_by_hand_and_edge_cases():
    d = np.array([0.1, -0.05, 0.2, 0.0, 0.07])
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert paired_t_pvalue(d) == pytest.approx(2 * scipy_stats.t.sf(abs(t), 4))
    assert paired_t_pvalue(np.zeros(10)) == 1.0
    assert np.isnan(paired_t_pvalue([0.3]))
    with pytest.raises(ValueError, match="same shape"):
        paired_difference([1.0, 2.0], [1.0], 10, 0)


def test_empty_cell_gives_nan():
    summary = mean_with_ci([], 100, 0)
    assert summary["n"] == 0 and np.isnan(summary["mean"])
