"""Selection analysis against SciPy distances, a sorted-sample Wasserstein distance and the CSV columns."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import pdist

from data.synthetic import write_pair
from evaluation.selection_analysis import (compare_selections, pairwise_selected_distances, read_demographics,
                                           selection_quantities)


def test_pairwise_distances_match_scipy():
    selected = np.random.default_rng(0).normal(size=(3, 5, 4))
    selected[1, 3] = selected[1, 0]  # a repeated selection: distance 0
    ours = pairwise_selected_distances(torch.from_numpy(selected))
    for metric, scipy_name in (("L1", "cityblock"), ("L2", "euclidean"), ("Linf", "chebyshev"),
                               ("cosine", "cosine")):
        expected = np.concatenate([pdist(task, scipy_name) for task in selected])
        np.testing.assert_allclose(ours[metric], expected, atol=1e-12)
    assert ours["L2"][10 + 2] == 0.0  # task 1, pair (0, 3)


def test_wasserstein_equals_mean_gap_of_sorted_samples():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(loc=0.5, size=200)
    rows = compare_selections({"medselect": {"age": a}, "kmedoids": {"age": b}})
    assert [r["method"] for r in rows] == ["medselect", "kmedoids"]
    assert rows[0]["wasserstein"] == pytest.approx(np.abs(np.sort(a) - np.sort(b)).mean())
    assert rows[1]["mean"] == pytest.approx(b.mean()) and rows[1]["median"] == pytest.approx(np.median(b))


def test_quantities_from_selected_rows(tmp_path):
    positive = pd.DataFrame({"Path": ["a", "b"], "Sex": ["Female", "Male"], "Age": [30, "unknown"],
                             "Laterality": ["Frontal", "Lateral"]})
    normal = pd.DataFrame({"Path": ["c", "d"], "Sex": ["Male", "Female"], "Age": [50, 70],
                           "Frontal/Lateral": ["Lateral", "Frontal"]})
    write_pair(positive, np.zeros((2, 3), np.float32), str(tmp_path / "pos.csv"))
    write_pair(normal, np.zeros((2, 3), np.float32), str(tmp_path / "norm.csv"))
    demographics = read_demographics(str(tmp_path / "pos.csv"), str(tmp_path / "norm.csv"))
    np.testing.assert_array_equal(demographics["female"], [1, 0, 0, 1])
    np.testing.assert_array_equal(demographics["frontal"], [1, 0, 0, 1])  # either laterality column
    assert np.isnan(demographics["age"][1]) and demographics["age"][3] == 70

    embeddings = torch.eye(4, dtype=torch.float64)
    rows = np.array([[0, 1, 3], [2, 2, 3]])
    values = selection_quantities(embeddings, rows, np.array([[1, 1, 0], [0, 0, 0]]), demographics)
    np.testing.assert_allclose(values["positive_fraction"], [2 / 3, 0])
    np.testing.assert_allclose(values["female_fraction"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(values["age"], [30, 70, 50, 50, 70])  # the unknown age is left out
    np.testing.assert_allclose(values["distance_L2"], [np.sqrt(2)] * 3 + [0, np.sqrt(2), np.sqrt(2)])


def test_missing_demographic_columns_are_skipped(tmp_path):
    frame = pd.DataFrame({"Path": ["a"]})
    write_pair(frame, np.zeros((1, 2), np.float32), str(tmp_path / "p.csv"))
    assert read_demographics(str(tmp_path / "p.csv"), str(tmp_path / "p.csv")) == {}
