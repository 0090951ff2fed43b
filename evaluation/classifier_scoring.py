"""Scoring one selection per task with any classifier of models/classifiers.py (evaluate.py --classifiers).

Each classifier sees the selected X-rays with their labels and, as unlabelled X-rays, the task's other pool
X-rays and its query X-rays (the transductive ones use them; no label of theirs is passed). The query set is
scored. Tasks whose selection holds one class only get the paper's scores from every classifier; how many
there were is counted per selection method (count_one_class) and reported once, at the end.
"""
import torch

from models.classifiers import make_classifier, one_class_counts
from utils.metrics import batched_auroc


def make_classifiers(names):
    """{name: classifier} for evaluate_methods."""
    return {name: make_classifier(name) for name in names}


def task_auroc(table, tasks, selection, classifier, query, pool=None):
    """Query AUROC (B,) of ``classifier`` built from the selected pool positions (B, K).

    ``pool`` (B, P, D) are the pools' embeddings, for the classifiers that use unlabelled X-rays: the
    positions not selected are their unlabelled pool X-rays. Only the selected positions' labels are read.
    """
    selected_labels = tasks.pool_labels.gather(1, selection)  # (B, K)
    selected = table.classifier_input(tasks.pool_rows.gather(1, selection))  # (B, K, D)
    unlabelled_mask = None
    if classifier.uses_unlabelled:
        unlabelled_mask = torch.ones(tasks.pool_rows.shape, dtype=torch.bool, device=selection.device)
        unlabelled_mask.scatter_(1, selection, False)  # (B, P): the pool X-rays nobody labelled
    scores = classifier(selected, selected_labels, query, pool if classifier.uses_unlabelled else None,
                        unlabelled_mask)  # (B, Q)
    return batched_auroc(tasks.query_labels, scores)


def count_one_class(tasks, selection):
    """(2,) tensor: tasks of the batch whose selection holds no positive, and no negative."""
    return one_class_counts(tasks.pool_labels.gather(1, selection))


