"""classify_xrays.py --classifier and classify(..., classifier=): scores equal scikit-learn called directly, the
classifier is recorded beside the predictions, and the pool's own label column is never read."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

import classify_xrays
from medselect import classify
from tests.conftest import run_main
from tests.medselect_helpers import LABELLED, write_labelled_pool

@pytest.fixture
def labelled_pool(tmp_path):
    """write_labelled_pool's files, and the pool rows left unlabelled."""
    csv_path, frame, embeddings, labeled_csv, labels = write_labelled_pool(tmp_path)
    rest = [i for i in range(len(frame)) if i not in LABELLED]
    return csv_path, frame, embeddings, labeled_csv, labels, rest


def unit(rows):
    rows = rows.astype(np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_logistic_scores_equal_scikit_learn_and_the_classifier_is_recorded(tmp_path, labelled_pool, capsys):
    csv_path, _, embeddings, labeled_csv, labels, rest = labelled_pool
    out = tmp_path / "predictions.csv"
    code, _, err = run_main(classify_xrays.main, ["--labeled", labeled_csv, "--label_column", "Edema", "--unlabeled",
                                                  csv_path, "--out", out, "--classifier", "logistic"], capsys)
    assert code == 0, err
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(unit(embeddings[LABELLED]), labels)
    np.testing.assert_allclose(pd.read_csv(out)["score"], model.decision_function(unit(embeddings[rest])),
                               rtol=1e-6, atol=1e-9)
    with open(f"{out}.json") as f:
        record = json.load(f)
    assert record["classifier"] == "logistic" and record["label_column"] == "Edema"
    assert record["num_scored"] == len(rest)


def test_label_spreading_uses_the_rest_of_the_pool_and_never_its_labels(tmp_path, labelled_pool):
    """The graph: the labelled X-rays and every other pool X-ray, scored by scikit-learn directly; the pool's
    own Edema column flipped or blanked changes nothing."""
    csv_path, frame, embeddings, labeled_csv, labels, rest = labelled_pool
    points = np.concatenate([embeddings[LABELLED], embeddings[rest]])
    targets = np.concatenate([labels, -np.ones(len(rest), dtype=int)])
    expected = LabelSpreading(kernel="knn", n_neighbors=7, alpha=0.2, max_iter=30).fit(unit(points), targets)
    scores = classify(labeled_csv, "Edema", csv_path, classifier="label-spreading")["score"].to_numpy()
    spread = expected.label_distributions_[len(LABELLED):]
    np.testing.assert_allclose(scores, spread[:, 1] - spread[:, 0], rtol=1e-9, atol=1e-12)
    for poison in (1 - frame["Edema"].isin([1, -1]).astype(int), np.nan):
        frame.assign(Edema=poison).to_csv(csv_path, index=False)  # the HDF5 beside it is unchanged
        poisoned = classify(labeled_csv, "Edema", csv_path, classifier="label-spreading")["score"].to_numpy()
        np.testing.assert_array_equal(poisoned, scores)


def test_default_is_the_papers_classifier_and_recorded(tmp_path, labelled_pool, capsys):
    csv_path, _, _, labeled_csv, _, _ = labelled_pool
    out = tmp_path / "predictions.csv"
    code, _, err = run_main(classify_xrays.main, ["--labeled", labeled_csv, "--label_column", "Edema", "--unlabeled",
                                                  csv_path, "--out", out], capsys)
    assert code == 0, err
    with open(f"{out}.json") as f:
        assert json.load(f)["classifier"] == "cosine"
    np.testing.assert_allclose(pd.read_csv(out)["score"],  # float32 scores through CSV text
                               classify(labeled_csv, "Edema", csv_path, classifier="cosine")["score"], rtol=1e-6)


def test_unknown_classifier_is_one_line(tmp_path, labelled_pool, capsys):
    csv_path, _, _, labeled_csv, _, _ = labelled_pool
    out = tmp_path / "predictions.csv"
    code, _, err = run_main(classify_xrays.main, ["--labeled", labeled_csv, "--label_column", "Edema", "--unlabeled",
                                                  csv_path, "--out", out, "--classifier", "svm"], capsys)
    assert code == 2 and "invalid choice: 'svm'" in err and not out.exists()
