"""classify_xrays.py: scores equal the training classifier's and a plain NumPy cosine loop; bad input is refused."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import classify_xrays
import medselect.classification
from medselect.classification import classify, ground_truth_auroc
from models.classifier import MeanSimilarityClassifier
from tests.medselect_helpers import LABELLED, write_labelled_pool
from tests.conftest import run_main
from utils.seeding import CLASSIFY_BOOTSTRAP, derived_seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, capsys):
    """classify_xrays.py in-process: (exit code, stdout, stderr)."""
    return run_main(classify_xrays.main, argv, capsys)


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    for fragment in fragments:
        assert fragment in last, last


def numpy_cosine_scores(labelled, labels, query):
    """The paper's predictor, one X-ray at a time: mean cosine to the positives minus mean cosine to the negatives."""
    scores = []
    for x in query.astype(np.float64):
        cosines = [x @ s / (np.linalg.norm(x) * np.linalg.norm(s)) for s in labelled.astype(np.float64)]
        positives = [c for c, y in zip(cosines, labels) if y == 1]
        negatives = [c for c, y in zip(cosines, labels) if y == 0]
        scores.append(np.mean(positives) - np.mean(negatives))
    return np.array(scores)


@pytest.fixture
def labelled_pool(tmp_path):
    """(pool csv, pool frame, embeddings, labeled.csv path, 0/1 labels of LABELLED for Edema)."""
    return write_labelled_pool(tmp_path)


@pytest.mark.parametrize("rows_per_step", [8192, 16])
def test_scores_equal_the_training_classifier_and_a_numpy_loop(tmp_path, labelled_pool, rows_per_step, capsys,
                                                               monkeypatch):
    csv_path, frame, embeddings, labeled_csv, labels = labelled_pool
    monkeypatch.setattr(medselect.classification, "QUERY_ROWS_PER_STEP", rows_per_step)  # 16: several steps
    out = tmp_path / "predictions.csv"
    code, _, err = run(["--labeled", labeled_csv, "--label_column", "Edema", "--unlabeled", csv_path, "--out", out],
                       capsys)
    assert code == 0, err
    predictions = pd.read_csv(out)
    rest = [i for i in range(len(frame)) if i not in LABELLED]  # every other X-ray, in pool order
    pd.testing.assert_frame_equal(predictions[frame.columns], frame.iloc[rest].reset_index(drop=True))
    expected = numpy_cosine_scores(embeddings[LABELLED], labels, embeddings[rest])
    np.testing.assert_allclose(predictions["score"], expected, rtol=1e-5, atol=1e-6)
    training = MeanSimilarityClassifier("cosine")(torch.from_numpy(embeddings[LABELLED])[None], torch.from_numpy(labels)[None],
                                       torch.from_numpy(embeddings[rest])[None])[0].numpy()
    ours = predictions["score"].to_numpy(dtype=np.float32)
    if rows_per_step > len(rest):  # the very same call: identical numbers
        np.testing.assert_array_equal(ours, training)
    else:  # matrix products of another shape: equal up to float32 rounding
        np.testing.assert_allclose(ours, training, rtol=0, atol=1e-6)


def test_ground_truth_auroc_matches_sklearn(tmp_path, labelled_pool, capsys):
    csv_path, frame, _, labeled_csv, _ = labelled_pool
    out = tmp_path / "predictions.csv"
    code, stdout, err = run(["--labeled", labeled_csv, "--label_column", "Edema", "--unlabeled", csv_path,
                             "--out", out, "--ground_truth", csv_path, "--bootstrap", 200], capsys)
    assert code == 0, err
    predictions = pd.read_csv(out)
    truth = predictions["Edema"].isin([1, -1])  # CheXpert: uncertain (-1) counts as positive, blank negative
    expected = roc_auc_score(truth, predictions["score"])
    line = stdout.strip()
    assert line.startswith(f"Edema: AUROC {expected:.4f} (95% bootstrap CI ")
    assert f"200 resamples) on {len(predictions)} X-rays, {int(truth.sum())} positive" in line
    low, high = (float(v) for v in line.split("CI ")[1].split(",")[0].split("-"))
    assert low < expected < high


@pytest.mark.parametrize("values_per_step", [1 << 22, 1000])  # all resamples in one step; many steps
@pytest.mark.parametrize("truth_rows, confidence", [(None, 0.95), ([0, 1, 2, 3, 5, 8, 13], 0.95),
                                                    ([0, 1, 2, 3, 5, 8, 13], 0.8)])
def test_ground_truth_ci_is_the_percentile_of_a_plain_bootstrap_loop(labelled_pool, monkeypatch, values_per_step,
                                                                     truth_rows, confidence):
    """The CI equals np.percentile of sklearn AUROCs over the X-rays drawn by the documented generator, one
    resample at a time, one-class resamples left out (a few X-rays of ground truth make those common)."""
    csv_path, frame, _, labeled_csv, _ = labelled_pool
    monkeypatch.setattr(medselect.classification, "BOOTSTRAP_VALUES_PER_STEP", values_per_step)
    predictions = classify(labeled_csv, "Edema", csv_path)
    if truth_rows is not None:
        predictions = predictions.iloc[truth_rows].reset_index(drop=True)
    resamples, seed = 300, 7
    estimate = ground_truth_auroc(predictions, csv_path, "Edema", resamples=resamples, confidence=confidence,
                                  seed=seed)
    truth = predictions["Edema"].isin([1, -1]).to_numpy()
    scores = predictions["score"].to_numpy(dtype=np.float64)
    assert 0 < truth.sum() < len(truth)
    rng = np.random.default_rng(derived_seed(seed, CLASSIFY_BOOTSTRAP))
    aurocs = [roc_auc_score(truth[rows], scores[rows])
              for rows in rng.integers(0, len(truth), size=(resamples, len(truth)))
              if truth[rows].min() != truth[rows].max()]
    assert truth_rows is None or len(aurocs) < resamples  # the few-X-ray case does skip one-class resamples
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(aurocs, [tail, 100 - tail])
    assert (estimate.ci_low, estimate.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_ground_truth_for_some_xrays_only(tmp_path, labelled_pool, capsys):
    csv_path, frame, _, labeled_csv, _ = labelled_pool
    truth = frame.iloc[::2][["Path", "Edema"]]  # every other pool row has ground truth
    truth.to_csv(tmp_path / "truth.csv", index=False)
    out = tmp_path / "predictions.csv"
    code, stdout, err = run(["--labeled", labeled_csv, "--label_column", "Edema", "--unlabeled", csv_path,
                             "--out", out, "--ground_truth", tmp_path / "truth.csv", "--bootstrap", 50], capsys)
    assert code == 0, err
    predictions = pd.read_csv(out)
    known = predictions[predictions["Path"].isin(truth["Path"])]
    assert f"on {len(known)} X-rays" in stdout
    assert f"{roc_auc_score(known['Edema'].isin([1, -1]), known['score']):.4f}" in stdout
    assert "left out of the AUROC" in err


def _labeled_with(column_values):
    def corrupt(d):
        frame = pd.read_csv(d["labeled"])
        frame["Edema"] = column_values(len(frame))
        frame.to_csv(d["labeled"], index=False)
    return corrupt


BAD_INPUTS = {
    "label column missing": (lambda d: pd.read_csv(d["labeled"])[["Path"]].to_csv(d["labeled"], index=False),
                             ["'Edema'", "missing"]),
    "label 2": (_labeled_with(lambda n: [2] + [0, 1] * (n // 2)), ["must be 0 or 1", "row 0 is 2"]),
    "label blank": (_labeled_with(lambda n: [1, 0, None] + [0] * (n - 3)), ["must be 0 or 1", "row 2 is blank"]),
    "label uncertain": (_labeled_with(lambda n: [-1] + [0, 1] * (n // 2)), ["must be 0 or 1", "row 0 is -1"]),
    "label text": (_labeled_with(lambda n: ["yes"] + [0, 1] * (n // 2)), ["must be 0 or 1", "'yes'"]),
    "one class only": (_labeled_with(lambda n: [1] * n), ["both classes", "all 7", "= 1"]),
    "path not in pool": (lambda d: pd.concat([pd.read_csv(d["labeled"]), pd.DataFrame(
        {"Path": ["elsewhere/x.jpg"], "Edema": [1]})]).to_csv(d["labeled"], index=False),
                         ["1 Path(s) are not in the pool", "'elsewhere/x.jpg'"]),
    "path twice": (lambda d: pd.concat([pd.read_csv(d["labeled"])] * 2).to_csv(d["labeled"], index=False),
                   ["more than once"]),
    "no labelled rows": (lambda d: pd.read_csv(d["labeled"]).iloc[:0].to_csv(d["labeled"], index=False),
                         ["no labelled X-rays"]),
    "everything labelled": (lambda d: pd.DataFrame({"Path": d["frame"]["Path"], "Edema": np.arange(70) % 2}).to_csv(
        d["labeled"], index=False), ["nothing is left to classify"]),
    "missing hdf5": (lambda d: os.remove(os.path.splitext(d["pool"])[0] + ".hdf5"), ["python3 xray_to_hdf5.py -d"]),
    "bad ground truth": (lambda d: d["frame"].assign(Edema=2.0).to_csv(d["truth"], index=False),
                         ["must be 1, -1", "or blank"]),
    "ground truth one class": (lambda d: d["frame"].assign(Edema=1.0).to_csv(d["truth"], index=False),
                               ["all positive", "both classes"]),
    "ground truth unrelated": (lambda d: d["frame"].assign(Path="other").iloc[:1].to_csv(d["truth"], index=False),
                               ["none of the 63"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_keeps_the_old_output(tmp_path, labelled_pool, case, capsys):
    csv_path, frame, _, labeled_csv, _ = labelled_pool
    paths = {"pool": csv_path, "frame": frame, "labeled": labeled_csv, "truth": tmp_path / "truth.csv"}
    frame.to_csv(paths["truth"], index=False)
    corrupt, fragments = BAD_INPUTS[case]
    corrupt(paths)
    out = tmp_path / "predictions.csv"
    out.write_text("an earlier result\n")
    code, _, err = run(["--labeled", labeled_csv, "--label_column", "Edema", "--unlabeled", csv_path, "--out", out,
                        "--overwrite", "--ground_truth", paths["truth"], "--bootstrap", 20], capsys)
    assert_one_line_error(code, err, *fragments)
    assert out.read_text() == "an earlier result\n"


def test_out_must_not_be_an_input(tmp_path, labelled_pool, capsys):
    csv_path, _, _, labeled_csv, _ = labelled_pool
    before = open(csv_path).read()
    code, _, err = run(["--labeled", labeled_csv, "--label_column", "Edema", "--unlabeled", csv_path,
                        "--out", csv_path], capsys)
    assert_one_line_error(code, err, "is the unlabeled input file")
    assert open(csv_path).read() == before


def test_command_line_exit_code_and_message(tmp_path, labelled_pool):
    csv_path, _, _, labeled_csv, _ = labelled_pool
    result = subprocess.run([sys.executable, "classify_xrays.py", "--labeled", str(labeled_csv), "--label_column",
                             "Atelectasis", "--unlabeled", csv_path, "--out", str(tmp_path / "p.csv")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {labeled_csv}: missing column(s) 'Atelectasis'; found 'Path', 'Edema'"]
