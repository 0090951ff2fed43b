"""The selection policy, one REINFORCE step, and scoring a selection on a batch of tasks (the paper's Methods: selector, predictor, reward and REINFORCE; docs/training.md#what-it-does).

Everything here is batched over tasks and runs on the device of the XrayTable:
gathering embeddings, sampling, the classifier and the AUROC. No Python loop
over tasks or X-rays.
"""
import math

import numpy as np
import torch

from models.baselines import select_baseline
from utils.metrics import batched_auroc

VALIDATE_EVERY = 30  # steps within an epoch between meta-validations (as the original); also after the last step


def is_validation_step(iteration, last):
    """Whether run_selector.py meta-validates after ``iteration`` (1-based, within its epoch); ``last``: the run's
    last step."""
    return iteration % VALIDATE_EVERY == 0 or last


def validation_count(steps_per_epoch, epochs):
    """How many meta-validations a run of ``epochs`` epochs of ``steps_per_epoch`` steps makes."""
    return sum(is_validation_step(iteration, epoch == epochs - 1 and iteration == steps_per_epoch)
               for epoch in range(epochs) for iteration in range(1, steps_per_epoch + 1))


# How K pool positions are chosen from the selector's logits (evaluate.py --selection, meta-validation):
SAMPLE = "sample"  # K draws with replacement from softmax(logits): the policy training optimises
TOPK = "topk"  # the K highest logits
SAMPLE_DISTINCT = "sample-distinct"  # K distinct draws, each without those already drawn (select_xrays.py's 'sample')
SELECTION_MODES = (SAMPLE, TOPK, SAMPLE_DISTINCT)
# Training's policy (POLICY) and reward baseline (REWARD_BASELINE); the first of each is the paper's.
MULTINOMIAL, DISTINCT = "multinomial", "distinct"
POLICIES = (MULTINOMIAL, DISTINCT)
RANDOM_BASELINE, LEAVE_ONE_OUT = "random", "leave-one-out"
REWARD_BASELINES = (RANDOM_BASELINE, LEAVE_ONE_OUT)


class NonFiniteLoss(RuntimeError):
    """The REINFORCE loss became NaN or infinite."""


def learning_rate_for_epoch(base_learning_rate, epoch):
    """The original schedule: the base rate for the first two epochs, x 0.1 from the third (epoch is 0-based)."""
    return base_learning_rate * (0.1 if epoch >= 2 else 1.0)


# The selection policy: K pool positions from the selector's logits, and the random baseline's draw
# (docs/evaluation.md#tasks-and-methods). sample_selection's log-probability is what REINFORCE differentiates.
def sample_selection(logits, k, generator=None):
    """K draws with replacement from softmax(logits), and their log-probability.

    logits (B, P) -> idx (B, k) pool positions (a position may repeat),
    log_prob (B,) = log Multinomial(total_count=k, probs=softmax(logits)) of
    the count vector, differentiable with respect to the logits.
    """
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, P)
    probs = log_probs.detach().exp()
    # Non-finite logits (a diverged selector) would make the draw itself fail, on a GPU with a device-side
    # assert; draw uniformly for such rows instead and let the non-finite log_prob report the problem.
    probs = torch.where(torch.isfinite(probs), probs, torch.ones_like(probs))
    idx = torch.multinomial(probs, k, replacement=True, generator=generator)  # (B, k)
    counts = torch.zeros_like(log_probs).scatter_add_(1, idx, torch.ones_like(idx, dtype=log_probs.dtype))
    # log k! from the host: a tensor made from a Python number would be copied to the GPU every step
    log_coefficient = math.lgamma(k + 1) - torch.lgamma(counts + 1).sum(1)
    log_prob = log_coefficient + (counts * log_probs).sum(1)
    return idx, log_prob


def distinct_sample_selection(logits, k, generator=None):
    """K distinct positions drawn from softmax(logits) one after another, each draw without the positions
    already drawn: the selection select_xrays.py's 'sample' makes (a label is never spent twice on one
    X-ray). logits (B, P) -> idx (B, k)."""
    return torch.multinomial(torch.softmax(logits.detach(), dim=-1), k, replacement=False, generator=generator)


def plackett_luce_selection(logits, k, generator=None):
    """K distinct positions by Gumbel-top-K, in draw order, and their exact Plackett-Luce log-probability.

    Adding independent Gumbel noise to the logits and taking the K largest draws K positions one after
    another from softmax(logits) without replacement (POLICY=distinct: the selection select_xrays.py makes).
    logits (B, P) -> idx (B, k) in draw order, log_prob (B,) = log P(that ordered draw), differentiable
    with respect to the logits.
    """
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(logits.dtype).tiny)))
    # Non-finite logits (a diverged selector): draw from the noise alone and let the log_prob report the problem.
    keys = torch.where(torch.isfinite(logits), logits.detach(), torch.zeros_like(logits)) + gumbel
    idx = keys.topk(k, dim=-1).indices  # (B, k), in decreasing key order = draw order
    return idx, plackett_luce_log_prob(logits, idx)


def plackett_luce_log_prob(logits, idx):
    """log P(drawing positions idx (B, k) in this order, each from softmax(logits (B, P)) over the positions not
    yet drawn) = sum_j [logit(idx_j) - logsumexp(logits without idx_1..idx_{j-1})]. -> (B,)"""
    drawn = torch.nn.functional.one_hot(idx, logits.shape[-1]).to(torch.bool)  # (B, k, P)
    drawn_before = (drawn.cumsum(1) - drawn.long()).to(torch.bool)  # (B, k, P): drawn at an earlier step
    remaining = logits[:, None, :].masked_fill(drawn_before, -math.inf)  # (B, k, P)
    return (logits.gather(1, idx) - torch.logsumexp(remaining, dim=-1)).sum(1)


def top_k_selection(logits, k):
    """The k pool positions with the highest logits: a deterministic selection. (B, P) -> (B, k)."""
    return logits.topk(k, dim=-1).indices


def random_selection(batch_size, pool_size, k, generator=None, device=None):
    """k distinct pool positions per task, uniformly at random: the baseline selection. -> (B, k)."""
    noise = torch.rand(batch_size, pool_size, generator=generator, device=device)
    return noise.topk(k, dim=-1).indices


def selection_auroc(table, tasks, selection, classifier, query_embeddings=None):
    """Query-set AUROC of the classifier built from the selected pool positions.

    selection (B, K) pool positions -> (B,) AUROC. The classifier sees image
    embeddings only, never the ASL features.
    """
    selected_rows = tasks.pool_rows.gather(1, selection)  # (B, K)
    selected_labels = tasks.pool_labels.gather(1, selection)  # (B, K)
    if query_embeddings is None:
        query_embeddings = table.classifier_input(tasks.query_rows)  # (B, Q, D)
    scores = classifier(table.classifier_input(selected_rows), selected_labels, query_embeddings)  # (B, Q)
    return batched_auroc(tasks.query_labels, scores)


def train_step(selector, optimizer, classifier, table, tasks, k, selection_generator, baseline_generator,
               policy=MULTINOMIAL, samples_per_task=1, reward_baseline=RANDOM_BASELINE):
    """One REINFORCE update on a batch of tasks; returns per-batch means as floats.

    The paper's step (the defaults): reward = AUROC(selector's K draws) - AUROC(K uniformly random distinct
    X-rays), loss = -mean(reward * log p(selection)). The options (docs/training.md#selector-options):
    ``policy`` 'distinct' draws K different X-rays (Plackett-Luce) instead of K with replacement;
    ``samples_per_task`` S draws per task from the same logits; ``reward_baseline`` 'leave-one-out' takes as
    baseline of each draw the mean AUROC of the task's other S - 1 draws instead of a random selection.
    """
    selector.train()
    logits = selector(table.selector_input(tasks.pool_rows, reuse_buffer=True))  # (B, P)
    batch, pool_size = logits.shape
    draw_logits = logits if samples_per_task == 1 else logits.repeat_interleave(samples_per_task, 0)  # (B S, P)
    draw = plackett_luce_selection if policy == DISTINCT else sample_selection
    selection, log_prob = draw(draw_logits, k, selection_generator)  # (B S, K), (B S,)
    selection = selection.view(batch, samples_per_task, k)
    with torch.no_grad():
        query = table.classifier_input(tasks.query_rows)  # (B, Q, D)
        # S is a handful of draws: one batched AUROC over the tasks per draw
        auroc = torch.stack([selection_auroc(table, tasks, selection[:, s], classifier, query)
                             for s in range(samples_per_task)], dim=1)  # (B, S)
        if reward_baseline == LEAVE_ONE_OUT:
            baseline_auroc = (auroc.sum(1, keepdim=True) - auroc) / (samples_per_task - 1)  # (B, S)
        else:
            baseline = random_selection(batch, pool_size, k, baseline_generator, logits.device)
            baseline_auroc = selection_auroc(table, tasks, baseline, classifier, query)[:, None].expand_as(auroc)
        reward = (auroc - baseline_auroc).to(log_prob.dtype).reshape(-1)  # (B S,) in the order of log_prob
    loss = -(reward * log_prob).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    # One device synchronisation per step, here at its end, so that drawing the next batch of tasks on
    # the CPU overlaps this step's work on a GPU.
    stats = torch.stack([auroc.mean(), baseline_auroc.mean(), reward.mean().double(), loss.detach().double()])
    stats = dict(zip(("auroc", "baseline_auroc", "reward", "loss"), stats.tolist()))
    classifier.report_missing_classes()
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
def evaluate_selector(selector, classifier, table, task_set, k, batch_size, generator, modes=(SAMPLE,)):
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
            aurocs[mode].append(selection_auroc(table, tasks, selection, classifier, query))
    selector.train(was_training)
    classifier.report_missing_classes()
    return {mode: torch.cat(a).cpu().numpy().astype(np.float64) for mode, a in aurocs.items()}


@torch.no_grad()
def evaluate_random_selection(classifier, table, task_set, k, batch_size, seed):
    """Per-task query AUROC (numpy, task order) of K distinct X-rays drawn uniformly at random.

    The draws are evaluate.py's 'random' baseline (task i's from the seed and i alone), so for the same
    tasks and seed the numbers are those evaluate.py reports.
    """
    device = table.embeddings.device
    aurocs, first = [], 0
    for tasks in task_set.batches(batch_size, device):
        selection = select_baseline("random", table.classifier_input(tasks.pool_rows), k, seed,
                                    task_ids=range(first, first + len(tasks)))  # (B, K)
        aurocs.append(selection_auroc(table, tasks, selection, classifier))
        first += len(tasks)
    classifier.report_missing_classes()
    return torch.cat(aurocs).cpu().numpy().astype(np.float64)
