"""The non-parametric classifier built from the K labelled X-rays (the paper's Methods: predictor)."""
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.logs import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)


class MeanSimilarityClassifier(nn.Module):
    """Scores query X-rays by their mean similarity to the selected positives vs. negatives.

    cosine:    score(x) = mean_{s in pos} cos(x, s) - mean_{s in neg} cos(x, s)
    euclidean: score(x) = mean_{s in neg} |x - s| - mean_{s in pos} |x - s|

    The means run over the K selected slots, so an X-ray selected twice counts
    twice. A task with no selected positive (or negative) gets 0 for that mean;
    the tasks are counted over every call and reported once, at report_missing_classes(). No training, no
    parameters; batched over tasks.
    """

    def __init__(self, mode="cosine"):
        super().__init__()
        if mode not in ("cosine", "euclidean"):
            raise ValueError(f"mode must be 'cosine' or 'euclidean', got {mode!r}")
        self.mode = mode
        self._warned_empty_class = False
        self._pending_empty_class = None  # (2,) device tensor: tasks without a positive, without a negative
        self._tasks_counted = 0  # tasks scored since the last report_missing_classes()

    def forward(self, selected, selected_labels, query):
        """selected (B, K, D), selected_labels (B, K) in {0, 1}, query (B, Q, D) -> scores (B, Q)."""
        if self.mode == "cosine":
            # Dividing the (B, Q, K) products by the query norms is cheaper than normalising the (B, Q, D) queries.
            query_norm = query.norm(dim=-1, keepdim=True).clamp(min=1e-12)  # (B, Q, 1)
            similarity = (query @ F.normalize(selected, dim=-1).transpose(1, 2)) / query_norm  # (B, Q, K)
        else:
            similarity = -torch.cdist(query, selected)  # (B, Q, K): closer is more similar
        positive = (selected_labels == 1).to(similarity.dtype)  # (B, K)
        negative = 1.0 - positive
        num_positive = positive.sum(1, keepdim=True)  # (B, 1)
        num_negative = negative.sum(1, keepdim=True)
        self._note_missing_classes(num_positive, num_negative)
        # Sum over the selected slots of one class, divided by how many there are (0 when none).
        positive_mean = (similarity @ positive.unsqueeze(-1)).squeeze(-1) / num_positive.clamp(min=1)  # (B, Q)
        negative_mean = (similarity @ negative.unsqueeze(-1)).squeeze(-1) / num_negative.clamp(min=1)
        return positive_mean - negative_mean

    def _note_missing_classes(self, num_positive, num_negative):
        if self._warned_empty_class:
            return
        # Counted over every call until report_missing_classes() (reading it here would also stall a GPU), so
        # that the count reported covers every task seen, not the first batch's.
        missing = torch.stack([(num_positive == 0).sum(), (num_negative == 0).sum()])
        self._tasks_counted += len(num_positive)  # a shape: known on the host without waiting for the device
        self._pending_empty_class = missing if self._pending_empty_class is None \
            else self._pending_empty_class + missing

    def report_missing_classes(self):
        """Log, once per classifier, if some task had no selected positive or no selected negative."""
        if self._warned_empty_class or self._pending_empty_class is None:
            return
        no_positive, no_negative = (int(n) for n in self._pending_empty_class.tolist())
        tasks, self._tasks_counted = self._tasks_counted, 0
        self._pending_empty_class = None
        if no_positive or no_negative:
            self._warned_empty_class = True
            log.warning("of %d task(s), %d had no selected positive and %d no selected negative; "
                        "the missing class's mean similarity counts as 0 (reported once)",
                        tasks, no_positive, no_negative)
