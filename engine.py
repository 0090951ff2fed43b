"""One REINFORCE step, and scoring a selection on a batch of tasks (the paper's Methods: predictor, reward and REINFORCE; docs/training.md#what-it-does).

Everything here is batched over tasks and runs on the device of the XrayTable:
gathering embeddings, sampling, the classifier and the AUROC. No Python loop
over tasks or X-rays.
"""
import math

import numpy as np
import torch

from models.baselines import select_baseline
from utils.metrics import batched_auroc
from utils.sampling import distinct_sample_selection, random_selection, sample_selection, top_k_selection

# How K pool positions are chosen from the selector's logits (evaluate.py --selection, meta-validation):
SAMPLE = "sample"  # K draws with replacement from softmax(logits): the policy training optimises
TOPK = "topk"  # the K highest logits
SAMPLE_DISTINCT = "sample-distinct"  # K distinct draws, each without those already drawn (select_xrays.py's 'sample')
SELECTION_MODES = (SAMPLE, TOPK, SAMPLE_DISTINCT)


class NonFiniteLoss(RuntimeError):
    """The REINFORCE loss became NaN or infinite."""


def learning_rate_for_epoch(base_learning_rate, epoch):
    """The original schedule: the base rate for the first two epochs, x 0.1 from the third (epoch is 0-based)."""
    return base_learning_rate * (0.1 if epoch >= 2 else 1.0)


def selection_auroc(table, tasks, selection, predictor, query_embeddings=None):
    """Query-set AUROC of the classifier built from the selected pool positions.

    selection (B, K) pool positions -> (B,) AUROC. The classifier sees image
    embeddings only, never the ASL features.
    """
    selected_rows = tasks.pool_rows.gather(1, selection)  # (B, K)
    selected_labels = tasks.pool_labels.gather(1, selection)  # (B, K)
    if query_embeddings is None:
        query_embeddings = table.classifier_input(tasks.query_rows)  # (B, Q, D)
    scores = predictor(table.classifier_input(selected_rows), selected_labels, query_embeddings)  # (B, Q)
    return batched_auroc(tasks.query_labels, scores)


def train_step(selector, optimizer, predictor, table, tasks, k, selection_generator, baseline_generator):
    """One REINFORCE update on a batch of tasks; returns per-batch means as floats.

    reward = AUROC(selector's K draws) - AUROC(K uniformly random distinct X-rays),
    loss = -mean(reward * log p(selection)).
    """
    selector.train()
    logits = selector(table.selector_input(tasks.pool_rows, reuse_buffer=True))  # (B, P)
    selection, log_prob = sample_selection(logits, k, selection_generator)  # (B, K), (B,)
    with torch.no_grad():
        query = table.classifier_input(tasks.query_rows)  # (B, Q, D)
        auroc = selection_auroc(table, tasks, selection, predictor, query)
        baseline = random_selection(len(tasks), logits.shape[1], k, baseline_generator, logits.device)
        baseline_auroc = selection_auroc(table, tasks, baseline, predictor, query)
        reward = (auroc - baseline_auroc).to(log_prob.dtype)  # (B,)
    loss = -(reward * log_prob).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    # One device synchronisation per step, here at its end, so that drawing the next batch of tasks on
    # the CPU overlaps this step's work on a GPU.
    stats = torch.stack([auroc.mean(), baseline_auroc.mean(), reward.mean().double(), loss.detach().double()])
    stats = dict(zip(("auroc", "baseline_auroc", "reward", "loss"), stats.tolist()))
    predictor.report_missing_classes()
    if not math.isfinite(stats["loss"]):
        raise NonFiniteLoss(f"the loss is {stats['loss']} (the selector's output is no longer finite)")
    return stats


@torch.no_grad()
def selector_logits(selector, table, tasks):
    """The selector's logits for every pool X-ray of each task: (B, P). They do not depend on K."""
    return selector(table.selector_input(tasks.pool_rows, reuse_buffer=True))  # (B, P)


def select_from_logits(logits, k, mode=SAMPLE, generator=None):
    """K pool positions per task from the selector's logits (B, P) -> (B, K): multinomial draws ('sample'),
    the K best ('topk') or K distinct draws ('sample-distinct')."""
    if mode == SAMPLE:
        return sample_selection(logits, k, generator)[0]
    if mode == TOPK:
        return top_k_selection(logits, k)
    if mode == SAMPLE_DISTINCT:
        return distinct_sample_selection(logits, k, generator)
    raise ValueError(f"selection mode must be one of {SELECTION_MODES}, got {mode!r}")


@torch.no_grad()
def selector_positions(selector, table, tasks, k, mode=SAMPLE, generator=None):
    """The selector's K pool positions for each task (see select_from_logits for the modes)."""
    return select_from_logits(selector_logits(selector, table, tasks), k, mode, generator)


@torch.no_grad()
def evaluate_selector(selector, predictor, table, task_set, k, batch_size, generator, modes=(SAMPLE,)):
    """Per-task query AUROC (numpy, task order) of the selector on a fixed task set, for each selection mode.

    Returns {mode: (N,)}. The modes share one BiLSTM pass per batch: each selects from the same logits.
    ``generator`` serves the sampling modes in the order of ``modes``, so 'topk' added after 'sample' leaves
    the sample draws as they are without it.
    """
    was_training = selector.training
    selector.eval()
    device = table.embeddings.device
    aurocs = {mode: [] for mode in modes}
    for tasks in task_set.batches(batch_size, device):
        logits = selector_logits(selector, table, tasks)  # (B, P)
        query = table.classifier_input(tasks.query_rows)  # (B, Q, D)
        for mode in modes:
            selection = select_from_logits(logits, k, mode, generator)  # (B, K)
            aurocs[mode].append(selection_auroc(table, tasks, selection, predictor, query))
    selector.train(was_training)
    predictor.report_missing_classes()
    return {mode: torch.cat(a).cpu().numpy().astype(np.float64) for mode, a in aurocs.items()}


@torch.no_grad()
def evaluate_random_selection(predictor, table, task_set, k, batch_size, seed):
    """Per-task query AUROC (numpy, task order) of K distinct X-rays drawn uniformly at random.

    The draws are evaluate.py's 'random' baseline (task i's from the seed and i alone), so for the same
    tasks and seed the numbers are those evaluate.py reports.
    """
    device = table.embeddings.device
    aurocs, first = [], 0
    for tasks in task_set.batches(batch_size, device):
        selection = select_baseline("random", table.classifier_input(tasks.pool_rows), k, seed,
                                    task_ids=range(first, first + len(tasks)))  # (B, K)
        aurocs.append(selection_auroc(table, tasks, selection, predictor))
        first += len(tasks)
    predictor.report_missing_classes()
    return torch.cat(aurocs).cpu().numpy().astype(np.float64)
