"""models/classifiers.py against independent computations: scikit-learn called directly, a hand-worked
self-training case, the paper's scores for one-class tasks, and scores that never depend on unlabelled labels."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

import models.classifiers
from data.tasks import TEST_STREAM, FixedTaskSet, TaskSampler, TaskShape
from data.xray_table import load_xray_table
from evaluation.classifier_scoring import task_auroc
from models.classifier import MeanSimilarityClassifier
from models.classifiers import (CLASSIFIERS, LABEL_SPREADING, LOGISTIC, SPREADING_ALPHA,
                                SPREADING_MAX_ITER, SPREADING_NEIGHBOURS, SelfTrainingClassifier, make_classifier)
from tests.evaluate_helpers import write_test_split


def clustered_task(seed, batch=3, k=8, unlabelled=40, query=12, dim=6):
    """Two clusters; every task's K labels hold both classes. -> selected, labels, query, unlabelled tensors."""
    rng = np.random.default_rng(seed)
    centre = 2.0 * rng.normal(size=dim)

    def draw(n, labels=None):
        labels = rng.integers(0, 2, size=(batch, n)) if labels is None else labels
        return torch.tensor(rng.normal(size=(batch, n, dim)) + labels[..., None] * centre), torch.tensor(labels)

    labels = np.tile(np.arange(k) % 2, (batch, 1))
    selected, selected_labels = draw(k, labels)
    return selected, selected_labels, draw(query)[0], draw(unlabelled)[0]


def unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_logistic_equals_scikit_learn_called_directly():
    selected, labels, query, _ = clustered_task(0)
    ours = make_classifier(LOGISTIC)(selected, labels, query).numpy()
    for b in range(len(selected)):
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)  # the documented settings
        model.fit(unit(selected[b].numpy()), labels[b].numpy())
        np.testing.assert_allclose(ours[b], model.decision_function(unit(query[b].numpy())), rtol=1e-6, atol=1e-9)


def cosine_knn_kernel(neighbours):
    """kNN connectivity by cosine similarity, by brute force in NumPy (each point its own first neighbour)."""
    def kernel(x, y):
        similarity = unit(x) @ unit(y).T
        graph = np.zeros_like(similarity)
        nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :neighbours]
        np.put_along_axis(graph, nearest, 1.0, axis=1)
        return graph
    return kernel


def test_label_spreading_equals_scikit_learn_on_a_cosine_knn_graph_built_independently():
    """Ours normalises and uses scikit-learn's Euclidean kNN; the reference gets the raw embeddings and a
    cosine kNN graph from NumPy. Masked-out pool X-rays (the selected ones) are left out of the graph."""
    selected, labels, query, unlabelled = clustered_task(1)
    mask = torch.ones(unlabelled.shape[:2], dtype=torch.bool)
    mask[:, ::5] = False
    ours = make_classifier(LABEL_SPREADING)(selected, labels, query, unlabelled, mask).numpy()
    for b in range(len(selected)):
        points = np.concatenate([selected[b].numpy(), unlabelled[b].numpy()[mask[b].numpy()], query[b].numpy()])
        targets = np.concatenate([labels[b].numpy(), -np.ones(len(points) - selected.shape[1], dtype=int)])
        model = LabelSpreading(kernel=cosine_knn_kernel(SPREADING_NEIGHBOURS), alpha=SPREADING_ALPHA,
                               max_iter=SPREADING_MAX_ITER).fit(points, targets)
        spread = model.label_distributions_[-query.shape[1]:]
        np.testing.assert_allclose(ours[b], spread[:, 1] - spread[:, 0], rtol=1e-9, atol=1e-12)


def test_self_training_on_a_hand_worked_case():
    """Labelled: positive (1, 0), negative (0, 1). Unlabelled pool: e = 3 * (0.6, -0.8), f = (-1, 0) and g =
    (0, -1), g masked out (selected); query q = (0.6, 0.8). Round 0 (cosine): e 1.4, f -1, q -0.2. Three
    candidates (e, f, q) at fraction 0.5: the top 1 and bottom 1, e positive and f negative. Round 1:
    positives' mean (0.8, -0.4), negatives' (-0.5, 0.5), so q scores 0.6 * 1.3 + 0.8 * -0.9 = 0.06."""
    selected = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    labels = torch.tensor([[1, 0]])
    unlabelled = torch.tensor([[[1.8, -2.4], [-1.0, 0.0], [0.0, -1.0]]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    query = torch.tensor([[[0.6, 0.8]]], dtype=torch.float64)
    scores = {rounds: SelfTrainingClassifier(rounds=rounds, fraction=0.5)(selected, labels, query, unlabelled, mask)
              for rounds in (0, 1, 2)}
    assert scores[0].item() == pytest.approx(-0.2)  # the cosine classifier
    assert scores[1].item() == pytest.approx(0.06)
    assert scores[2].item() == pytest.approx(0.06)  # one candidate left: floor(0.5) = 0 may be added
    # g a candidate too (g scores 1): 4 candidates, 2 per class: e, g positive, f, q negative. Positives' mean
    # (1.6, -1.8) / 3, negatives' (-0.4, 1.8) / 3: q scores (0.6 * 2.0 - 0.8 * 3.6) / 3 = -0.56.
    mask[0, 2] = True
    assert SelfTrainingClassifier(rounds=1, fraction=0.5)(selected, labels, query, unlabelled, mask).item() \
        == pytest.approx(-0.56)


def test_self_training_pseudo_labels_are_class_balanced():
    """Only one X-ray lies on the negative side: one positive pseudo-label joins it, not the top 5% of positives.
    Labelled (1, 0) +, (0, 1) -; unlabelled 20 X-rays near (1, 0) and one at (0, 1); query (1, 1)."""
    selected = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    labels = torch.tensor([[1, 0]])
    near_positive = torch.stack([torch.ones(20), torch.linspace(0.0, 0.5, 20)], 1)  # scores 1 - y: top is y = 0
    unlabelled = torch.cat([near_positive, torch.tensor([[0.0, 1.0]])])[None].double()
    query = torch.tensor([[[1.0, 1.0]]], dtype=torch.float64)
    score = SelfTrainingClassifier(rounds=1, fraction=0.5)(selected, labels, query, unlabelled).item()
    # pseudo: (1, 0) positive, (0, 1) negative: the means stay (1, 0) and (0, 1), so q scores 0.
    assert score == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_one_class_tasks_get_the_papers_scores(name):
    selected, labels, query, unlabelled = clustered_task(2)
    labels[0] = 1  # task 0: positives only; task 1: negatives only
    labels[1] = 0
    scores = make_classifier(name)(selected, labels, query, unlabelled).numpy()
    paper = MeanSimilarityClassifier("cosine")(selected, labels, query).numpy()
    np.testing.assert_allclose(scores[:2], paper[:2], rtol=1e-12)


@pytest.fixture(scope="module")
def task_batch(tmp_path_factory):
    positive_csv, normal_csv = write_test_split(str(tmp_path_factory.mktemp("classifiers")))
    table = load_xray_table(positive_csv, normal_csv, ["Edema", "Atelectasis"])
    shape = TaskShape(pool_size=30, pool_positives=12, query_size=10, query_positives=5)
    tasks = next(FixedTaskSet(TaskSampler(table, ["Edema", "Atelectasis"], shape, 0, TEST_STREAM), 6).batches(6))
    selection = torch.tensor([[i, i + 1, i + 2, (i + 3) % 30, i + 2] for i in range(6)])  # a repeated X-ray
    return table, tasks, selection


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_scores_never_read_unlabelled_labels(task_batch, name):
    """Flipping, or writing nonsense into, every label of the pool X-rays not selected changes nothing."""
    table, tasks, selection = task_batch
    query, pool = table.classifier_input(tasks.query_rows), table.classifier_input(tasks.pool_rows)
    labels = tasks.pool_labels.gather(1, selection)
    assert ((labels == 0).any(1) & (labels == 1).any(1)).any()  # the classifier's own scores are under test
    honest = task_auroc(table, tasks, selection, make_classifier(name), query, pool)
    selected = torch.zeros_like(tasks.pool_labels, dtype=torch.bool).scatter_(1, selection, True)
    original = tasks.pool_labels.clone()
    try:
        for poison in (1 - original, torch.full_like(original, -7)):
            tasks.pool_labels = torch.where(selected, original, poison)
            poisoned = task_auroc(table, tasks, selection, make_classifier(name), query, pool)
            torch.testing.assert_close(poisoned, honest, rtol=0, atol=0)
    finally:
        tasks.pool_labels = original


def test_unknown_classifier_refused():
    with pytest.raises(ValueError):
        make_classifier("svm")


def test_label_spreading_scores_an_unreached_xray_0_between_the_classes(monkeypatch):
    """Two far-apart groups of 3 points on a 2-neighbour graph: the group without a label is never reached; its
    X-rays score 0, below the X-rays spread towards 'positive' and above those spread towards 'negative'."""
    labelled = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    labels = torch.tensor([[1, 0]])
    query = torch.tensor([[[1.0, 0.05], [0.05, 1.0], [-1.0, -0.02], [-1.0, -0.04]]], dtype=torch.float64)
    unlabelled = torch.tensor([[[1.0, 0.02], [0.02, 1.0], [-1.0, 0.0]]], dtype=torch.float64)
    monkeypatch.setattr(models.classifiers, "SPREADING_NEIGHBOURS", 2)
    scores = make_classifier(LABEL_SPREADING)(labelled, labels, query, unlabelled)[0].numpy()
    assert scores[0] > 0 > scores[1]
    np.testing.assert_array_equal(scores[2:], [0.0, 0.0])
