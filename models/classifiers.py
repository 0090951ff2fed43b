"""Classifiers built from a task's K labelled X-rays: the paper's, and three that also use what is unlabelled
(docs/evaluation.md#classifiers).

* ``cosine`` — the paper's predictor (models/classifier.MeanSimilarityClassifier), the default everywhere.
* ``logistic`` — L2-regularised logistic regression on the K labelled embeddings (scikit-learn,
  class_weight='balanced', C = LOGISTIC_C fixed); inductive: it never sees an unlabelled X-ray.
* ``label-spreading`` — scikit-learn's LabelSpreading on a k-nearest-neighbour graph over the labelled and
  the unlabelled X-rays; score = the spread probability of 'positive' minus that of 'negative' (the same
  order as the probability of 'positive', except that an X-ray whose part of the graph holds no labelled
  X-ray, which scikit-learn gives probability 0 for both classes, scores 0: no evidence either way, not
  'surely negative'). Transductive.
* ``self-training`` — the cosine classifier, then for SELF_TRAINING_ROUNDS rounds its most confident
  unlabelled X-rays join the labelled ones with their predicted labels (class-balanced pseudo-labels, as
  MultiMix, arXiv 2010.14731, does at the image level). Transductive.

Every classifier works on L2-normalised image embeddings, so that Euclidean geometry is cosine geometry
(the kNN graph is the cosine kNN graph; C means the same for any encoder's scale). The unlabelled X-rays
come as embeddings only: no classifier can read their labels. A task whose K labels hold one class only
gets the paper's behaviour (the cosine score with the missing class's mean counted as 0) from every
classifier; one_class_counts tells the caller how many, to report once at the end.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize
from sklearn.semi_supervised import LabelSpreading

from models.classifier import MeanSimilarityClassifier

COSINE, LOGISTIC, LABEL_SPREADING, SELF_TRAINING = "cosine", "logistic", "label-spreading", "self-training"
CLASSIFIERS = (COSINE, LOGISTIC, LABEL_SPREADING, SELF_TRAINING)
DEFAULT_CLASSIFIER = COSINE  # the paper's; training's reward always uses it

# Fixed, not tuned per task: with K = 5-20 labels a leave-one-out choice would rest on 5-20 predictions.
# On unit-length embeddings, scikit-learn's default C = 1 keeps the weights small, close to the difference
# of the class means (the cosine classifier's direction) at small K, and free to depart from it as K grows.
LOGISTIC_C = 1.0
LOGISTIC_MAX_ITER = 1000  # lbfgs on K points converges in far fewer; this only bounds a pathological case
SPREADING_NEIGHBOURS = 7  # scikit-learn's default n_neighbors of the kNN kernel
SPREADING_ALPHA = 0.2  # scikit-learn's default clamping: each step keeps 80% of the labelled X-rays' own label
SPREADING_MAX_ITER = 30  # scikit-learn's default; with alpha 0.2 the change shrinks ~5x per step
SELF_TRAINING_ROUNDS = 3  # rounds of pseudo-labelling
# The confidence threshold: a pseudo-label is given only to an X-ray whose score lies in the top (bottom)
# 5% of the still-unlabelled X-rays' scores and on the positive (negative) side of 0, the cosine
# classifier's decision boundary; each round adds as many positives as negatives (the fewer of the two).
SELF_TRAINING_FRACTION = 0.05


def one_class_tasks(selected_labels):
    """(B,) bool: the tasks whose selected labels (B, K) hold no positive or no negative."""
    positive = (selected_labels == 1).any(1)
    negative = (selected_labels == 0).any(1)
    return ~(positive & negative)


def one_class_counts(selected_labels):
    """(2,) int64 tensor on the labels' device: tasks with no selected positive, and with no selected negative."""
    return torch.stack([(~(selected_labels == 1).any(1)).sum(), (~(selected_labels == 0).any(1)).sum()])


def make_classifier(name):
    """The classifier called ``name`` (one of CLASSIFIERS)."""
    kinds = {COSINE: CosineClassifier, LOGISTIC: LogisticClassifier, LABEL_SPREADING: LabelSpreadingClassifier,
             SELF_TRAINING: SelfTrainingClassifier}
    if name not in kinds:
        raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {name!r}")
    return kinds[name]()


class CosineClassifier:
    """The paper's classifier; the others fall back to it on tasks whose labels hold one class.

    Call: selected (B, K, D), selected_labels (B, K) in {0, 1}, query (B, Q, D) -> scores (B, Q), higher =
    more likely positive. ``unlabelled`` (B, U, D) are further unlabelled X-rays of each task (its pool's
    unselected ones) and ``unlabelled_mask`` (B, U) bool which of them to use (None: all); the transductive
    classifiers use them and the query X-rays as the unlabelled set, the inductive ones ignore them.
    A selection that repeats an X-ray counts it each time, as the paper's classifier does.
    """
    name = COSINE
    uses_unlabelled = False

    def __init__(self):
        self.paper = MeanSimilarityClassifier("cosine")

    @torch.no_grad()
    def __call__(self, selected, selected_labels, query, unlabelled=None, unlabelled_mask=None):
        return self.paper(selected, selected_labels, query)  # (B, Q)


class FallbackToCosine(CosineClassifier):
    """A classifier that needs both classes: tasks whose labels hold one class get the paper's scores."""

    @torch.no_grad()
    def __call__(self, selected, selected_labels, query, unlabelled=None, unlabelled_mask=None):
        scores = self.paper(selected, selected_labels, query).double()  # (B, Q)
        both = (~one_class_tasks(selected_labels)).nonzero().flatten()  # tasks that get this classifier's scores
        if not len(both):
            return scores
        if unlabelled is not None and unlabelled_mask is None:
            unlabelled_mask = torch.ones(unlabelled.shape[:2], dtype=torch.bool, device=unlabelled.device)
        scores[both] = self.two_class_scores(selected[both], selected_labels[both], query[both],
                                             None if unlabelled is None else unlabelled[both],
                                             None if unlabelled is None else unlabelled_mask[both]
                                             ).to(scores.device, torch.float64)
        return scores

    def two_class_scores(self, selected, selected_labels, query, unlabelled, unlabelled_mask):
        """The same arguments for tasks with both classes (unlabelled and its mask both None or both given)
        -> (B, Q) scores."""
        raise NotImplementedError


def _unit_rows(tensor):
    """(n, D) tensor -> (n, D) float64 NumPy rows of length 1 (scikit-learn's normalize)."""
    return normalize(tensor.detach().cpu().double().numpy())


class LogisticClassifier(FallbackToCosine):
    name = LOGISTIC

    def two_class_scores(self, selected, selected_labels, query, unlabelled, unlabelled_mask):
        scores = []
        for b in range(len(selected)):  # scikit-learn fits one task at a time
            model = LogisticRegression(C=LOGISTIC_C, class_weight="balanced", max_iter=LOGISTIC_MAX_ITER)
            model.fit(_unit_rows(selected[b]), selected_labels[b].cpu().numpy())
            scores.append(model.decision_function(_unit_rows(query[b])))  # log-odds of class 1
        return torch.from_numpy(np.stack(scores))


class LabelSpreadingClassifier(FallbackToCosine):
    name = LABEL_SPREADING
    uses_unlabelled = True

    def two_class_scores(self, selected, selected_labels, query, unlabelled, unlabelled_mask):
        scores = []
        for b in range(len(selected)):
            parts = [selected[b]] + ([] if unlabelled is None else [unlabelled[b][unlabelled_mask[b]]]) + [query[b]]
            points = _unit_rows(torch.cat(parts))  # (K + U + Q, D): labelled, unlabelled pool, query
            targets = np.full(len(points), -1)  # -1: unlabelled, scikit-learn's convention
            targets[:selected.shape[1]] = selected_labels[b].cpu().numpy()
            model = LabelSpreading(kernel="knn", n_neighbors=min(SPREADING_NEIGHBOURS, len(points)),
                                   alpha=SPREADING_ALPHA, max_iter=SPREADING_MAX_ITER).fit(points, targets)
            spread = model.label_distributions_[-query.shape[1]:]  # (Q, 2): rows sum to 1, or 0 where not reached
            scores.append(spread[:, list(model.classes_).index(1)] - spread[:, list(model.classes_).index(0)])
        return torch.from_numpy(np.stack(scores))


class SelfTrainingClassifier(FallbackToCosine):
    """Pseudo-labelling around the cosine classifier, batched over tasks.

    The cosine score is x/|x| . (mean of the positives' unit vectors - mean of the negatives'), so adding
    pseudo-labelled X-rays only changes the two means. scikit-learn's SelfTrainingClassifier does not do
    this: it needs a fitted estimator with predict_proba and picks its k best overall, not per class.
    """
    name = SELF_TRAINING
    uses_unlabelled = True

    def __init__(self, rounds=SELF_TRAINING_ROUNDS, fraction=SELF_TRAINING_FRACTION):
        super().__init__()
        self.rounds, self.fraction = rounds, fraction

    def two_class_scores(self, selected, selected_labels, query, unlabelled, unlabelled_mask):
        batch, num_query = query.shape[:2]
        labelled = F.normalize(selected.double(), dim=-1)  # (B, K, D)
        others = query if unlabelled is None else torch.cat([unlabelled, query], 1)
        others = F.normalize(others.double(), dim=-1)  # (B, U + Q, D): every unlabelled X-ray
        candidate = torch.ones(others.shape[:2], dtype=torch.bool, device=others.device)  # (B, U + Q)
        if unlabelled is not None:
            candidate[:, :unlabelled.shape[1]] = unlabelled_mask
        points = torch.cat([labelled, others], 1)  # (B, K + U + Q, D)
        positive = (selected_labels == 1).double()  # (B, K)
        pseudo_positive = torch.zeros(others.shape[:2], dtype=torch.bool, device=others.device)  # (B, U + Q)
        pseudo_negative = torch.zeros_like(pseudo_positive)
        for round_ in range(self.rounds + 1):
            positive_weight = torch.cat([positive, pseudo_positive.double()], 1)  # (B, K + U + Q)
            negative_weight = torch.cat([1 - positive, pseudo_negative.double()], 1)
            prototype = (_weighted_mean(points, positive_weight) - _weighted_mean(points, negative_weight))  # (B, D)
            scores = (others @ prototype.unsqueeze(-1)).squeeze(-1)  # (B, U + Q)
            if round_ == self.rounds:
                break
            eligible = candidate & ~pseudo_positive & ~pseudo_negative
            allowed = (eligible.sum(1, keepdim=True) * self.fraction).floor()  # (B, 1): the top / bottom fraction
            rank_down = _ranks(scores.masked_fill(~eligible, -math.inf), descending=True)  # (B, U + Q), 0 = highest
            rank_up = _ranks(scores.masked_fill(~eligible, math.inf), descending=False)  # 0 = lowest
            confident_positive = (eligible & (rank_down < allowed) & (scores > 0)).sum(1, keepdim=True)
            confident_negative = (eligible & (rank_up < allowed) & (scores < 0)).sum(1, keepdim=True)
            per_class = torch.minimum(confident_positive, confident_negative)  # (B, 1): class-balanced
            pseudo_positive |= eligible & (rank_down < per_class)
            pseudo_negative |= eligible & (rank_up < per_class)
        return scores[:, -num_query:]


def _weighted_mean(points, weights):
    """points (B, N, D), weights (B, N) -> (B, D)."""
    return (weights.unsqueeze(1) @ points).squeeze(1) / weights.sum(1, keepdim=True).clamp(min=1)


def _ranks(values, descending):
    """(B, N) -> (B, N) int64: each value's place in its row's order (0 = first)."""
    return values.argsort(dim=1, descending=descending, stable=True).argsort(dim=1)
