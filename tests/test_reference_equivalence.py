"""The fast batched paths give the same numbers as the original-style reference paths (bench/reference.py)."""
import numpy as np
import pandas as pd
import pytest
import torch

from bench.reference import (ReferenceTaskDataset, reference_aurocs, reference_collate, reference_gather,
                             reference_random_baseline, reference_sample_once, reference_scores)
from data.tasks import TaskBatch
from data.xray_table import XrayTable
from engine import sample_selection, selection_auroc
from models.classifier import MeanSimilarityClassifier
from utils.metrics import batched_auroc


@pytest.fixture
def reference_batch():
    rng = np.random.default_rng(0)
    conditions = ["Edema", "Atelectasis"]
    positives = pd.DataFrame({"Path": [f"p{i}" for i in range(300)],
                              "Edema": rng.choice([1.0, np.nan], 300), "Atelectasis": rng.choice([1.0, 0.0], 300)})
    normals = pd.DataFrame({"Path": [f"n{i}" for i in range(200)]})
    dataset = ReferenceTaskDataset(positives, normals, rng.normal(size=(300, 16)).astype(np.float32),
                                   rng.normal(size=(200, 16)).astype(np.float32), 40, 0.5, 20, 0.5, conditions)
    return reference_collate([dataset[i] for i in range(8)])


def as_task_batch(batch):
    """The reference batch expressed as a table of X-rays and row numbers, as our code holds tasks."""
    num_tasks, pool_size, dim = batch["pool"].shape
    query_size = batch["query"].shape[1]
    embeddings = torch.cat([batch["pool"].reshape(-1, dim), batch["query"].reshape(-1, dim)])
    pool_rows = torch.arange(num_tasks * pool_size).reshape(num_tasks, pool_size)
    query_rows = num_tasks * pool_size + torch.arange(num_tasks * query_size).reshape(num_tasks, query_size)
    table = XrayTable(embeddings, None, {}, {}, len(embeddings), 0, "pos.csv", "norm.csv")
    return table, TaskBatch(torch.zeros(num_tasks, dtype=torch.long), pool_rows, batch["pool_labels"],
                            query_rows, batch["query_labels"])


def test_selection_auroc_equals_reference_gather_scores_and_sklearn(reference_batch):
    table, tasks = as_task_batch(reference_batch)
    idx, _ = reference_sample_once(torch.randn(8, 40), 20)
    selected, labels = reference_gather(reference_batch["pool"], reference_batch["pool_labels"], idx)
    expected = reference_aurocs(reference_batch["query_labels"],
                                reference_scores(selected, labels, reference_batch["query"]))
    ours = selection_auroc(table, tasks, torch.from_numpy(idx), MeanSimilarityClassifier())
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=1e-6)


def test_random_baseline_equals_reference_masked_full_pool(reference_batch):
    table, tasks = as_task_batch(reference_batch)
    expected, mask = reference_random_baseline(reference_batch, 6, 40, np.random.RandomState(0))
    selection = torch.stack([torch.nonzero(row).flatten() for row in mask])  # the same K X-rays, as indices
    ours = selection_auroc(table, tasks, selection, MeanSimilarityClassifier())
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=1e-6)


def test_log_prob_equals_reference_multinomial():
    logits = torch.randn(5, 30)
    idx, log_prob = sample_selection(logits, 20, torch.Generator().manual_seed(0))
    counts = torch.zeros(5, 30).scatter_add_(1, idx, torch.ones(5, 20))
    reference = torch.distributions.multinomial.Multinomial(total_count=20, logits=logits).log_prob(counts)
    torch.testing.assert_close(log_prob, reference, rtol=1e-5, atol=1e-5)


def test_batched_auroc_equals_reference_loop(reference_batch):
    scores = torch.randn(8, 20)
    np.testing.assert_allclose(batched_auroc(reference_batch["query_labels"], scores).numpy(),
                               reference_aurocs(reference_batch["query_labels"], scores).numpy(), atol=1e-6)
