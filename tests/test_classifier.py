import logging

import numpy as np
import pytest
import torch

from models.classifier import MeanSimilarityClassifier
from utils.logs import LOGGER_NAME


def loop_scores(selected, labels, query, mode):
    """The paper's predictor (Methods), one task and one query X-ray at a time."""
    batch, num_query = query.shape[0], query.shape[1]
    out = np.zeros((batch, num_query))
    for b in range(batch):
        for q in range(num_query):
            x = query[b, q]
            pos, neg = [], []
            for s, y in zip(selected[b], labels[b]):
                if mode == "cosine":
                    value = float(x @ s / (np.linalg.norm(x) * np.linalg.norm(s)))
                else:
                    value = float(np.linalg.norm(x - s))
                (pos if y == 1 else neg).append(value)
            pos_mean = np.mean(pos) if pos else 0.0
            neg_mean = np.mean(neg) if neg else 0.0
            out[b, q] = pos_mean - neg_mean if mode == "cosine" else neg_mean - pos_mean
    return out


@pytest.mark.parametrize("mode", ["cosine", "euclidean"])
def test_matches_plain_loop_with_repeats_and_an_empty_class(mode):
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(3, 6, 5))
    pool_labels = np.array([[1, 0, 1, 0, 1, 0], [1, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]])
    # Task 0 selects position 0 three times (repeats count each time); task 2 has no positive at all.
    selection = np.array([[0, 0, 0, 1, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3, 3]])
    selected = np.take_along_axis(pool, selection[..., None], axis=1)
    labels = np.take_along_axis(pool_labels, selection, axis=1)
    query = rng.normal(size=(3, 7, 5))
    ours = MeanSimilarityClassifier(mode)(torch.tensor(selected), torch.tensor(labels), torch.tensor(query)).numpy()
    np.testing.assert_allclose(ours, loop_scores(selected, labels, query, mode), rtol=1e-6, atol=1e-9)


def test_empty_class_counted_over_every_call_and_reported_once(caplog):
    """Nothing is logged until report_missing_classes(); then one line counts the tasks of every call."""
    classifier = MeanSimilarityClassifier()
    selected, query = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    no_positive = torch.zeros(2, 3, dtype=torch.long)
    both = torch.tensor([[1, 0, 0], [0, 0, 0]])  # one task without a positive
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        classifier(selected, no_positive, query)
        classifier(selected, both, query)
        assert not [r for r in caplog.records if "no selected positive" in r.message]
        classifier.report_missing_classes()
        classifier(selected, no_positive, query)
        classifier.report_missing_classes()
    lines = [r.getMessage() for r in caplog.records if "no selected positive" in r.message]
    assert len(lines) == 1 and lines[0].startswith("of 4 task(s), 3 had no selected positive and 0 no selected")


def test_unknown_mode_refused():
    with pytest.raises(ValueError):
        MeanSimilarityClassifier("manhattan")
