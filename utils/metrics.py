"""AUROC for a whole batch of tasks at once, on the inputs' device."""
import torch


def batched_auroc(labels, scores):
    """Area under the ROC curve of every row.

    labels (B, Q) in {0, 1}, scores (B, Q) -> (B,) float64.
    Equal to scikit-learn's ``roc_auc_score`` per row (tied scores count one
    half), via the Mann-Whitney statistic on average ranks. A row with only
    one class gives NaN.
    """
    scores = scores.detach().to(torch.float64)
    positive = labels.to(torch.float64)
    batch, length = scores.shape
    sorted_scores, order = scores.sort(dim=1)  # (B, Q)
    # Tied scores share the mean of the ranks they span.
    starts_group = torch.ones_like(sorted_scores, dtype=torch.bool)
    starts_group[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    group = starts_group.cumsum(1) - 1  # (B, Q): tie-group id within the row
    ranks = torch.arange(1, length + 1, device=scores.device, dtype=torch.float64).expand(batch, -1)
    group_rank_sum = torch.zeros_like(sorted_scores).scatter_add_(1, group, ranks)
    group_size = torch.zeros_like(sorted_scores).scatter_add_(1, group, torch.ones_like(ranks))
    mean_rank_sorted = (group_rank_sum / group_size.clamp(min=1)).gather(1, group)
    mean_rank = torch.empty_like(mean_rank_sorted).scatter_(1, order, mean_rank_sorted)  # back to input order
    num_positive = positive.sum(1)
    num_negative = length - num_positive
    positive_rank_sum = (mean_rank * positive).sum(1)
    return (positive_rank_sum - num_positive * (num_positive + 1) / 2) / (num_positive * num_negative)
