"""Confidence intervals and paired comparisons of per-task scores (NumPy, float64).

Tasks are the unit of resampling: a bootstrap draws tasks with replacement, and a
paired comparison of two methods uses the same draws for both, because both were
scored on the same tasks.
"""
import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95  # coverage of every bootstrap interval: evaluate.py's per-task scores and classify_xrays.py's AUROC
BOOTSTRAP_CHUNK = 1000  # resamples drawn at a time, to bound memory on many tasks


def bootstrap_indices(num_items, num_resamples, rng, chunk_rows=BOOTSTRAP_CHUNK):
    """Yield (chunk_rows or fewer, num_items) arrays of indices drawn with replacement, num_resamples rows in all.

    The rows are those of one ``rng.integers(0, num_items, size=(num_resamples, num_items))`` call, whatever
    ``chunk_rows`` is (int64 draws consume the generator row by row).
    """
    for start in range(0, num_resamples, chunk_rows):
        yield rng.integers(0, num_items, size=(min(chunk_rows, num_resamples - start), num_items))


def bootstrap_means(values, num_resamples, seed):
    """(num_resamples,) means of ``values`` resampled with replacement, from ``np.random.default_rng(seed)``."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return np.concatenate([values[idx].mean(1) for idx in bootstrap_indices(len(values), num_resamples, rng)])


def percentile_interval(resampled, confidence=CONFIDENCE):
    """(low, high): the percentile bootstrap interval."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return float(low), float(high)


def mean_with_ci(values, num_resamples, seed, confidence=CONFIDENCE):
    """{'mean', 'ci_low', 'ci_high', 'n'}: the mean and its percentile bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    low, high = percentile_interval(bootstrap_means(values, num_resamples, seed), confidence)
    return {"mean": float(values.mean()), "ci_low": low, "ci_high": high, "n": len(values)}


def paired_t_pvalue(differences):
    """Two-sided p-value of the paired t-test that the mean difference is 0.

    1.0 when every difference is 0 (no evidence of a difference), NaN with fewer than two tasks.
    """
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        return float("nan")
    spread = d.std(ddof=1)
    if spread == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = d.mean() / (spread / np.sqrt(len(d)))
    return float(2 * scipy_stats.t.sf(abs(t), df=len(d) - 1))


def paired_difference(a, b, num_resamples, seed, confidence=CONFIDENCE):
    """Mean of a - b over the same tasks, its bootstrap interval (tasks resampled jointly) and the
    paired t-test p-value: {'diff', 'diff_ci_low', 'diff_ci_high', 'p_value', 'n'}."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have the same shape, got {a.shape} and {b.shape}")
    summary = mean_with_ci(a - b, num_resamples, seed, confidence)
    return {"diff": summary["mean"], "diff_ci_low": summary["ci_low"], "diff_ci_high": summary["ci_high"],
            "p_value": paired_t_pvalue(a - b), "n": summary["n"]}
