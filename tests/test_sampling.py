"""engine.py's selection policy: the draws and their log-probability, top-K, and the random baseline."""
import numpy as np
import torch

import itertools

from engine import distinct_sample_selection, random_selection, sample_selection, top_k_selection


def test_log_prob_equals_torch_multinomial(test_device):
    generator = torch.Generator(device=test_device).manual_seed(0)
    logits = torch.randn(6, 15, device=test_device, requires_grad=True)
    idx, log_prob = sample_selection(logits, 7, generator)
    assert idx.shape == (6, 7) and log_prob.device == logits.device
    counts = torch.zeros(6, 15, device=test_device).scatter_add_(1, idx, torch.ones(6, 7, device=test_device))
    expected = torch.distributions.Multinomial(total_count=7, logits=logits).log_prob(counts)
    torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=1e-5)
    # The gradient of the log-probability is that of the reference too.
    (grad,) = torch.autograd.grad(log_prob.sum(), logits)
    (expected_grad,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(grad, expected_grad)


def test_draws_follow_softmax_with_replacement():
    generator = torch.Generator().manual_seed(1)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).expand(4000, 3)
    idx, _ = sample_selection(logits, 5, generator)
    frequencies = np.bincount(idx.flatten().numpy(), minlength=3) / idx.numel()
    np.testing.assert_allclose(frequencies, [0.5, 0.3, 0.2], atol=0.01)
    # With replacement: some tasks select the same position twice.
    assert any(len(set(row.tolist())) < 5 for row in idx)


def test_distinct_draws_follow_softmax_without_replacement():
    """P(i among the 2 drawn) = p_i + sum over j != i of p_j p_i / (1 - p_j): draw j first, then i among the rest."""
    p = np.array([0.5, 0.3, 0.15, 0.05])
    expected = [p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(4) if j != i) for i in range(4)]
    assert abs(sum(expected) - 2.0) < 1e-12  # two X-rays are drawn
    draws = 20000
    idx = distinct_sample_selection(torch.log(torch.tensor(p)).expand(draws, 4), 2, torch.Generator().manual_seed(3))
    assert all(row[0] != row[1] for row in idx.tolist()[:500])
    frequencies = np.bincount(idx.flatten().numpy(), minlength=4) / draws
    np.testing.assert_allclose(frequencies, expected, atol=4.5 * np.sqrt(0.25 / draws))
    pairs = {tuple(sorted(pair)) for pair in idx.tolist()}
    assert pairs == set(itertools.combinations(range(4), 2))


def test_random_selection_is_distinct_and_uniform():
    generator = torch.Generator().manual_seed(2)
    idx = random_selection(3000, 10, 4, generator)
    assert all(len(set(row.tolist())) == 4 for row in idx[:200])
    frequencies = np.bincount(idx.flatten().numpy(), minlength=10) / idx.numel()
    np.testing.assert_allclose(frequencies, np.full(10, 0.1), atol=0.01)


def test_top_k_selection():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0]])
    assert sorted(top_k_selection(logits, 2)[0].tolist()) == [1, 3]
