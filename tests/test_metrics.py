import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from utils.metrics import batched_auroc


def test_batched_auroc_equals_sklearn_per_row_with_ties():
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 30)) < 0.4).astype(np.int64)
    labels[:, 0], labels[:, 1] = 1, 0  # both classes in every row
    # Rounded scores give many ties, within and across classes.
    scores = np.round(rng.normal(size=(50, 30)), 1)
    ours = batched_auroc(torch.from_numpy(labels), torch.from_numpy(scores).float()).numpy()
    expected = [roc_auc_score(labels[i], scores[i].astype(np.float32)) for i in range(50)]
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_hand_worked_example():
    # positives score 0.9 and 0.5, negatives 0.5 and 0.1: pairs (0.9>0.5, 0.9>0.1, 0.5=0.5, 0.5>0.1) -> 3.5/4
    auroc = batched_auroc(torch.tensor([[1, 1, 0, 0]]), torch.tensor([[0.9, 0.5, 0.5, 0.1]]))
    assert auroc.item() == pytest.approx(0.875)


def test_one_class_row_is_nan():
    auroc = batched_auroc(torch.tensor([[1, 1, 1]]), torch.tensor([[0.1, 0.2, 0.3]]))
    assert torch.isnan(auroc).all()
