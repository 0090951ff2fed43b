"""Choosing K X-rays from a pool: the selector's multinomial draw and the random baseline (the paper's Methods: selector; docs/evaluation.md#tasks-and-methods)."""
import torch


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
    log_coefficient = torch.lgamma(torch.tensor(k + 1.0, device=logits.device)) - torch.lgamma(counts + 1).sum(1)
    log_prob = log_coefficient + (counts * log_probs).sum(1)
    return idx, log_prob


def distinct_sample_selection(logits, k, generator=None):
    """K distinct positions drawn from softmax(logits) one after another, each draw without the positions
    already drawn: the selection select_xrays.py's 'sample' makes (a label is never spent twice on one
    X-ray). logits (B, P) -> idx (B, k)."""
    return torch.multinomial(torch.softmax(logits.detach(), dim=-1), k, replacement=False, generator=generator)


def top_k_selection(logits, k):
    """The k pool positions with the highest logits: a deterministic selection. (B, P) -> (B, k)."""
    return logits.topk(k, dim=-1).indices


def random_selection(batch_size, pool_size, k, generator=None, device=None):
    """k distinct pool positions per task, uniformly at random: the baseline selection. -> (B, k)."""
    noise = torch.rand(batch_size, pool_size, generator=generator, device=device)
    return noise.topk(k, dim=-1).indices
