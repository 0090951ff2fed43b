"""The demo's numbers that docs/evaluation.md quotes besides its tables: the time of each `make demo` step
(scripts/demo_report.py --step_times) and the tuning runs (bench/demo_tuning.py). Each is checked against
numbers worked out by hand from given files, never against a fresh run's."""
import os
import re

import h5py
import numpy as np
import pandas as pd
import pytest

from bench import demo_tuning
from scripts import demo_report
from tests.conftest import ROOT, run_main


def write_marks(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_each_step_takes_the_time_between_its_mark_and_the_next(tmp_path):
    marks = demo_report.read_step_marks(write_marks(tmp_path / "marks.txt", [
        "images 1000.0", "prepare 1030.5", "embed 1040.0", "train 1110.0", "evaluate 1122.0", "own_xrays 1140.0",
        "end 1160.0"]))
    lines = demo_report.time_lines(marks, 280)
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in lines if line.startswith("| ")}
    assert [rows[demo_report.STEPS[step]] for step in demo_report.STEPS] == ["30.5", "9.5", "70.0", "12.0", "18.0",
                                                                             "20.0"]
    assert rows["total"] == "160.0 (2 min 40 s)"
    assert lines[-1] == "The embedding step embedded 280 pictures (the six split HDF5s) at 4.0 images/s."  # 280 / 70


@pytest.mark.parametrize("lines, problem", [
    (["images 10", "embed 5", "end 20"], "marks.txt:2: embed's time is earlier than images's"),
    (["images 10", "embed ten", "end 20"], "marks.txt:2: expected 'STEP SECONDS'"),
    (["images 10", "embed 12"], "'end' after the last"),
    (["images 10", "images 12", "end 20"], "marks.txt:2: step images is marked twice"),
])
def test_marks_out_of_order_malformed_or_unfinished_are_refused(tmp_path, lines, problem):
    with pytest.raises(demo_report.UserError, match=problem):
        demo_report.read_step_marks(write_marks(tmp_path / "marks.txt", lines))


def test_make_demo_marks_every_step_the_report_names_in_its_order():
    # A step the Makefile does not mark is silently added to the step before it in the time table.
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        marked = re.findall(r"^\t\$\(call demo_mark,(\w+)\)", f.read(), re.MULTILINE)  # recipe lines only
    assert marked == [*demo_report.STEPS, demo_report.END]


def test_the_pictures_embedded_are_the_rows_of_the_six_split_hdf5s(tmp_path):
    for rows, name in enumerate(demo_report.SPLIT_FILES, 1):
        with h5py.File(tmp_path / f"{name}.hdf5", "w") as f:
            f.create_dataset("dataset", data=np.zeros((rows, 4), dtype=np.float32))
    (tmp_path / "other.hdf5").write_bytes(b"")  # not a split: not counted, never opened
    assert demo_report.embedded_pictures(str(tmp_path)) == 1 + 2 + 3 + 4 + 5 + 6


def test_makefile_settings_are_every_set_of_the_demo_variables_in_order():
    text = ("X := 1\nDEMO_TASKS := --set A=1 --set B=2\nDEMO_OTHER := --set C=3\n"
            "DEMO_TRAINING := --set D=4 \\\n    --set LEARNING_RATE=1e-3\n\tcommand --set E=5\n")
    settings = demo_tuning.makefile_settings(text)
    assert settings == ["A=1", "B=2", "D=4", "LEARNING_RATE=1e-3"]
    assert demo_tuning.replaced(settings, "LEARNING_RATE", "1e-4") == ["A=1", "B=2", "D=4", "LEARNING_RATE=1e-4"]


def write_run(folder, differences, val_auroc, best_step):
    """A run folder as run_selector.py and evaluate.py leave it, with the given held-out differences
    {(first, second): diff}, each stored as results.csv stores it (reference − method, earlier variant as
    reference), and the given meta-validation AUROCs at steps 30, 60, ..."""
    rows = [{"group": "unseen", "condition": "Edema", "method": "random", "reference": "medselect-sample",
             "diff_vs_medselect": 0.9, "diff_ci_low": 0.8, "diff_ci_high": 1.0}]  # one condition: not the table's
    for (first, second), diff in differences.items():
        rows.append({"group": "unseen", "condition": "overall", "method": second, "reference": first,
                     "diff_vs_medselect": diff, "diff_ci_low": diff - 0.02, "diff_ci_high": diff + 0.03})
    (folder / "test").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "test" / "results.csv", index=False)
    steps = [30 * (i + 1) for i in range(len(val_auroc))]
    (folder / "selector").mkdir()
    pd.DataFrame({"step": steps, "val_auroc": val_auroc, "val_topk_auroc": [v + 0.1 for v in val_auroc],
                  "saved": [f"model_epoch1_iter{s}" for s in steps],
                  "best_checkpoint": [f"model_epoch1_iter{min(s, best_step)}" for s in steps]}).to_csv(
        folder / "selector" / "metrics.csv", index=False)
    return demo_tuning.read_run(str(folder))


def test_tuning_table_holds_each_runs_held_out_differences_and_validation(tmp_path):
    first = write_run(tmp_path / "a", {("medselect-sample", "medselect-untrained"): 0.072,
                                       ("medselect-sample", "random"): 0.095,
                                       ("medselect-topk", "medselect-untrained-topk"): 0.05,
                                       ("medselect-topk", "random"): 0.121}, [0.61, 0.675, 0.684], 60)
    # a pair stored the other way round (untrained-topk as the reference) reads as its negation
    second = write_run(tmp_path / "b", {("medselect-sample", "medselect-untrained"): -0.01,
                                        ("medselect-sample", "random"): 0.02,
                                        ("medselect-untrained-topk", "medselect-topk"): 0.03,
                                        ("medselect-topk", "random"): 0.0}, [0.6, 0.62, 0.66], 90)
    settings = ["K=5", "LEARNING_RATE=1e-3"]
    lines = demo_tuning.report_lines({("1e-3", 0): first, ("1e-4", 2): second}, settings, 300, 2.5)
    table = [line for line in lines if line.startswith("| 1e-")]
    assert table[0] == ("| 1e-3 (the demo's) | 0 | +0.072 [+0.052, +0.102] | +0.095 [+0.075, +0.125] | "
                        "+0.050 [+0.030, +0.080] | +0.121 [+0.101, +0.151] |")
    assert table[1] == ("| 1e-4 (the paper's) | 2 | -0.010 [-0.030, +0.020] | +0.020 [+0.000, +0.050] | "
                        "-0.030 [-0.060, -0.010] | +0.000 [-0.020, +0.030] |")
    assert table[2] == "| 1e-3 (the demo's) | 0 | 0.610, 0.675, 0.684 | 0.710, 0.775, 0.784 | 60 |"
    assert table[3] == "| 1e-4 (the paper's) | 2 | 0.600, 0.620, 0.660 | 0.700, 0.720, 0.760 | 90 |"
    assert "at steps 30, 60, 90" in "\n".join(lines) and "(--set K=5)" in lines[0]


def test_tuning_refuses_without_the_demos_data_before_running_anything(tmp_path, capsys):
    code, out, err = run_main(demo_tuning.main, ["--splits", tmp_path, "--out", tmp_path / "report.md"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "the demo's prepared data is missing (train_pos.csv" in err and "run make demo first" in err
    assert not (tmp_path / "report.md").exists()


def test_data_lines_count_pictures_patients_and_x_rays_and_measure_the_embeddings(tmp_path):
    """Split CSVs and HDF5s built here: patients counted by hand (a patient with several X-rays, or with X-rays in
    both a split's positive and normal CSV, counts once), and the embeddings' statistics from scikit-learn."""
    from sklearn.metrics.pairwise import cosine_similarity

    def path(patient, study=1):
        return f"CheXpert-v1.0-small/train/patient{patient:05d}/study{study}/view1_frontal.jpg"

    split_patients = {"train_pos": [1, 1, 2, 3], "train_norm": [3, 4],  # train: patients 1, 2, 3, 4
                      "val_pos": [5], "val_norm": [6, 6],  # val: 5, 6
                      "test_pos": [7, 8, 8], "test_norm": [9]}  # test: 7, 8, 9; 3 positive and 1 normal X-rays
    rng = np.random.default_rng(0)
    stacked = []
    for name, ids in split_patients.items():
        pd.DataFrame({"Path": [path(p, study) for study, p in enumerate(ids, 1)]}).to_csv(tmp_path / f"{name}.csv",
                                                                                           index=False)
        rows = rng.normal(size=(len(ids), 5)).astype(np.float32) + 2.0  # pointing roughly one way
        stacked.append(rows)
        with h5py.File(tmp_path / f"{name}.hdf5", "w") as f:
            f.create_dataset("dataset", data=rows)
    images = pd.DataFrame({"Path": [path(p, s) for p in range(1, 11) for s in (1, 2)] + [path(10, 3)]})
    stacked = np.concatenate(stacked).astype(np.float64)
    similarity = cosine_similarity(stacked)
    mean_cosine = similarity[~np.eye(len(stacked), dtype=bool)].mean()
    mean_norm = np.mean([np.sqrt(sum(v * v for v in row)) for row in stacked])

    (line,) = demo_report.data_lines(images, str(tmp_path))
    assert line.startswith("The demo's data: 21 pictures of 10 patients ")
    assert "study 4 / 2 / 3 (training / validation / test)" in line
    assert "the test split holds 3 positive and 1 normal X-rays" in line
    assert f"(the six split HDF5s, 13 rows): mean norm {mean_norm:.1f}; " in line
    assert line.endswith(f"mean cosine similarity of two different X-rays {mean_cosine:.3f}.")
    assert 0.3 < mean_cosine < 0.99  # a premise of the check: neither orthogonal nor all one direction


def test_data_lines_name_a_missing_split_file(tmp_path):
    for name in demo_report.SPLIT_FILES:
        pd.DataFrame({"Path": ["CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"]}).to_csv(
            tmp_path / f"{name}.csv", index=False)  # the CSVs, none embedded yet
    with pytest.raises(demo_report.UserError, match="train_pos.hdf5: not found"):
        demo_report.data_lines(pd.DataFrame({"Path": []}), str(tmp_path))
