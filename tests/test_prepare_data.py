"""prepare_data.py on a hand-made CheXpert-like CSV: uncertain counts as positive, splits by patient, counts."""
import json
import os
import shlex

import numpy as np
import pandas as pd
import pytest

import prepare_data
from constants import ALL_COND
from tests.conftest import run_main
from tests.dataset_layouts import pneumonia_rows, write_pneumonia
from utils.config import apply_overrides, default_config

NAN = np.nan
COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", *ALL_COND, "Support Devices"]


def chexpert_row(patient, study, view, frontal=True, no_finding=NAN, support=NAN, **conditions):
    labels = {c: conditions.get(c.replace(" ", "_").replace("/", "_"), NAN) for c in ALL_COND}
    return {"Path": f"CheXpert-v1.0-small/train/patient{patient:05d}/study{study}/view{view}_"
                    f"{'frontal' if frontal else 'lateral'}.jpg",
            "Sex": "Female" if patient % 2 else "Male", "Age": 40 + patient, "Frontal/Lateral":
            "Frontal" if frontal else "Lateral", "AP/PA": "AP" if frontal else NAN, "No Finding": no_finding,
            **labels, "Support Devices": support}


def hand_made_rows():
    """20 patients. Expected: positive = any condition 1 or -1; normal = No Finding 1 and not positive."""
    rows = []
    for patient in range(1, 21):
        rows.append(chexpert_row(patient, 1, 1, Edema=-1.0, Cardiomegaly=0.0))  # uncertain only: positive
        rows.append(chexpert_row(patient, 1, 2, frontal=False, Atelectasis=1.0, Pneumothorax=-1.0))
        rows.append(chexpert_row(patient, 2, 1, no_finding=1.0, support=1.0))  # normal
        rows.append(chexpert_row(patient, 3, 1, Consolidation=0.0, support=1.0))  # neither
    rows.append(chexpert_row(21, 1, 1, no_finding=1.0, Edema=1.0))  # both: positive only
    return rows


def write_chexpert(path, rows):
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return str(path)


def run(argv, capsys):
    return run_main(prepare_data.main, argv, capsys)


def read_splits(out):
    return {f"{s}_{k}": pd.read_csv(os.path.join(out, f"{s}_{k}.csv")) for s in ("train", "val", "test")
            for k in ("pos", "norm")}


def patient_of(paths):
    return paths.str.extract(r"(patient\d+)", expand=False)


def test_splits_by_patient_with_uncertain_as_positive(tmp_path, capsys):
    rows = hand_made_rows()
    csv = write_chexpert(tmp_path / "train.csv", rows)
    out = tmp_path / "splits"
    code, stdout, err = run(["--train_csv", csv, "--out", out, "--val_frac", 0.25, "--test_frac", 0.25], capsys)
    assert code == 0, err
    splits = read_splits(out)
    positives = pd.concat([splits[f"{s}_pos"] for s in ("train", "val", "test")])
    normals = pd.concat([splits[f"{s}_norm"] for s in ("train", "val", "test")])
    # Rows 0 and 1 of each patient are positive, row 2 normal, row 3 neither; patient 21 is positive only.
    assert sorted(positives["Path"]) == sorted([r["Path"] for i, r in enumerate(rows[:-1]) if i % 4 in (0, 1)]
                                               + [rows[-1]["Path"]])
    assert sorted(normals["Path"]) == sorted(r["Path"] for i, r in enumerate(rows[:-1]) if i % 4 == 2)
    # Uncertain written as positive; explicit negatives and blanks left as they were.
    assert set(positives["Edema"].dropna()) == {1.0} and positives["Edema"].notna().sum() == 21
    assert set(positives["Pneumothorax"].dropna()) == {1.0} and positives["Pneumothorax"].notna().sum() == 20
    assert set(positives["Cardiomegaly"].dropna()) == {0.0}
    assert list(splits["train_pos"].columns) == COLUMNS  # CheXpert's columns, in its order
    # No patient in two splits; every patient somewhere; 25 % / 25 % of 21 patients -> 5 / 5 / 11.
    patients = {s: set(patient_of(pd.concat([splits[f"{s}_pos"], splits[f"{s}_norm"]])["Path"]))
                for s in ("train", "val", "test")}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    assert [len(patients[s]) for s in ("train", "val", "test")] == [11, 5, 5]
    # Rows keep the CSV's order within a split.
    for frame in splits.values():
        order = [next(i for i, r in enumerate(rows) if r["Path"] == p) for p in frame["Path"]]
        assert order == sorted(order)
    # The counts table matches the files.
    counts = pd.read_csv(out / "counts.csv", index_col=0)
    for split in ("train", "val", "test"):
        assert counts.loc["positive X-rays", split] == len(splits[f"{split}_pos"])
        assert counts.loc["normal X-rays", split] == len(splits[f"{split}_norm"])
        assert counts.loc["patients", split] == len(patients[split])
        for condition in ALL_COND:
            assert counts.loc[condition, split] == (splits[f"{split}_pos"][condition] == 1.0).sum()
    assert "Edema" in stdout and "positive X-rays" in stdout
    assert "1 X-ray(s) are marked 'No Finding' and positive" in err
    # Default constants need 550 positives per condition for one task: every used condition is warned about.
    assert "val: 'Consolidation' has 0 positives; one task needs 550 positives" in err
    assert "test: 'Edema' has" in err and "train: 'Edema'" not in err  # held out: never used in training


def test_seed_frontal_only_and_valid_csv(tmp_path, capsys):
    rows = hand_made_rows()
    csv = write_chexpert(tmp_path / "train.csv", rows)
    valid = write_chexpert(tmp_path / "valid.csv", [chexpert_row(64541, 1, 1, Edema=1.0),
                                                     chexpert_row(64542, 1, 1, no_finding=1.0)])
    argv = ["--train_csv", csv, "--valid_csv", valid, "--frontal_only", "--seed", 3,
            "--set", "UNLABELED_POOL_SIZE=4", "--set", "QUERY_SET_SIZE=2", "--set", "K=2"]
    assert run([*argv, "--out", tmp_path / "a"], capsys)[0] == 0
    code, _, err = run([*argv, "--out", tmp_path / "b"], capsys)
    assert code == 0 and "has 0 positives; one task needs 3 positives" in err
    a, b = read_splits(tmp_path / "a"), read_splits(tmp_path / "b")
    assert all(a[name].equals(b[name]) for name in a)  # same seed, same split
    everything = pd.concat(a.values())
    assert set(everything["Frontal/Lateral"]) == {"Frontal"}
    assert {"patient64541", "patient64542"} <= set(patient_of(everything["Path"]))
    assert len(everything) == 20 * 2 + 1 + 2
    code, _, _ = run([*argv[:-6], "--seed", 4, "--out", tmp_path / "c"], capsys)
    assert code == 0 and not all(a[n].equals(read_splits(tmp_path / "c")[n]) for n in a)


def assert_refused(argv, capsys, folder, *expected):
    before = sorted(os.listdir(folder))
    code, _, err = run(argv, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    assert sorted(os.listdir(folder)) == before
    return err


def test_bad_input(tmp_path, capsys):
    rows = hand_made_rows()
    good = write_chexpert(tmp_path / "train.csv", rows)
    out = ["--out", tmp_path / "out"]
    pd.DataFrame(rows).drop(columns=["No Finding"]).to_csv(tmp_path / "cols.csv", index=False)
    assert_refused(["--train_csv", tmp_path / "cols.csv", *out], capsys, tmp_path,
                   "not a chexpert label file: missing column(s) 'No Finding'; it fits none of the layouts")
    pd.DataFrame(rows).drop(columns=["Edema"]).to_csv(tmp_path / "cols.csv", index=False)
    assert_refused(["--train_csv", tmp_path / "cols.csv", *out], capsys, tmp_path, "no column for condition(s) 'Edema'")
    assert_refused(["--train_csv", tmp_path / "none.csv", *out], capsys, tmp_path, "not found")
    lateral = write_chexpert(tmp_path / "lateral.csv", [chexpert_row(1, 1, 1, frontal=False, Edema=1.0)])
    assert_refused(["--train_csv", lateral, "--frontal_only", *out], capsys, tmp_path, "no rows left")
    assert_refused(["--train_csv", good, "--val_frac", 0.6, "--test_frac", 0.5, *out], capsys, tmp_path, "--val_frac")
    few = write_chexpert(tmp_path / "few.csv", rows[:8])  # two patients cannot fill three splits
    assert_refused(["--train_csv", few, *out], capsys, tmp_path, "2 patient(s) cannot be split")
    odd = pd.DataFrame(rows, columns=COLUMNS)
    odd.loc[5, "Edema"] = 2.0
    odd.to_csv(tmp_path / "odd.csv", index=False)
    assert_refused(["--train_csv", tmp_path / "odd.csv", *out], capsys, tmp_path, "'Edema' row 5", "2.0")
    nameless = pd.DataFrame(rows, columns=COLUMNS)
    nameless.loc[6, "Path"] = "images/x.jpg"  # a normal X-ray (row 3, neither positive nor normal, is not written)
    nameless.to_csv(tmp_path / "nameless.csv", index=False)
    assert_refused(["--train_csv", tmp_path / "nameless.csv", *out], capsys, tmp_path, "row 6", "images/x.jpg",
                   "--patient_column NAME, or pass --no_patient")
    assert_refused(["--train_csv", good, "--set", "NO_SUCH=1", *out], capsys, tmp_path, "unknown name")
    assert run(["--train_csv", good, *out], capsys)[0] == 0
    before = (tmp_path / "out" / "train_pos.csv").read_bytes()
    assert_refused(["--train_csv", few, *out], capsys, tmp_path / "out", "already holds split CSVs", "--overwrite")
    assert (tmp_path / "out" / "train_pos.csv").read_bytes() == before


@pytest.mark.parametrize("frac", ["0", "1"])
def test_fraction_bounds(tmp_path, capsys, frac):
    good = write_chexpert(tmp_path / "train.csv", hand_made_rows())
    assert_refused(["--train_csv", good, "--val_frac", frac, "--out", tmp_path / "out"], capsys, tmp_path,
                   "--val_frac")


# Your own dataset: one condition, its own patient column and official split (tests/dataset_layouts.py).
# Task: pool 4 (2 positive) + query 2 (1 positive) -> 3 positives and 3 normals per task.
OWN_TASK = ["--set", "UNLABELED_POOL_SIZE=4", "--set", "QUERY_SET_SIZE=2", "--set", "K=2"]
PNEUMONIA_ONLY = ["--set", "NON_HOLD_OUT=Pneumonia", "--set", "HOLD_OUT="]


def test_own_dataset_patient_column_official_split_and_settings_line(tmp_path, capsys):
    csv = write_pneumonia(tmp_path / "pneumonia.csv")
    out = ["--out", tmp_path / "out"]
    own = ["--train_csv", csv, "--patient_column", "PatientID", "--split_column", "split", *OWN_TASK]
    # CheXpert's eight conditions are not there: the error gives the settings that fit the CSV.
    err = assert_refused([*own, *out], capsys, tmp_path, "no column for condition(s) 'Consolidation'")
    assert err.endswith("its condition columns fit: --set NON_HOLD_OUT=Pneumonia --set HOLD_OUT=\n")
    # No patientNNNNN in its Paths: the error names the column to give.
    assert_refused(["--train_csv", csv, *PNEUMONIA_ONLY, *out], capsys, tmp_path,
                   "row 0: cannot find the patient in Path 'images/P01_0.jpeg'",
                   "name the patient column with --patient_column (e.g. 'PatientID')")

    code, stdout, err = run([*own, *PNEUMONIA_ONLY, *out], capsys)
    assert code == 0, err
    splits = read_splits(tmp_path / "out")
    frame = pneumonia_rows()
    for split in ("train", "val", "test"):  # every row in the split its column names, positives and normals apart
        expected = frame[frame["split"] == split]
        assert sorted(splits[f"{split}_pos"]["Path"]) == sorted(expected[expected["Pneumonia"] == 1]["Path"])
        assert sorted(splits[f"{split}_norm"]["Path"]) == sorted(expected[expected["Pneumonia"] == 0]["Path"])
    counts = pd.read_csv(tmp_path / "out" / "counts.csv", index_col=0)
    assert counts.loc["patients"].tolist() == [4, 2, 2] and counts.loc["Pneumonia"].tolist() == [6, 3, 3]
    # The exact settings to give run_selector.py, the task shape included.
    line = ("--set UNLABELED_POOL_SIZE=4 --set QUERY_SET_SIZE=2 --set K=2 --set NON_HOLD_OUT=Pneumonia "
            "--set HOLD_OUT=")
    assert stdout.rstrip().endswith(line)
    summary = json.loads((tmp_path / "out" / "prepare_data.json").read_text())
    assert summary["set"] == line and summary["patient"] == "PatientID" and summary["split"] == "column split"


def test_official_split_without_validation_and_bad_split_names(tmp_path, capsys):
    # P05 and P06 are training patients here; the split column says 'Train' / 'Test' only.
    frame = pneumonia_rows()
    frame["split"] = frame["split"].map({"train": "Train", "val": "Train", "test": "Test"})
    frame.to_csv(tmp_path / "two_part.csv", index=False)
    argv = ["--train_csv", tmp_path / "two_part.csv", "--patient_column", "PatientID", "--split_column", "split",
            "--val_frac", 0.34, *PNEUMONIA_ONLY, *OWN_TASK]
    code, _, err = run([*argv, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    splits = read_splits(tmp_path / "out")
    patients = {s: set(pd.concat([splits[f"{s}_pos"], splits[f"{s}_norm"]])["PatientID"])
                for s in ("train", "val", "test")}
    assert patients["test"] == {"P07", "P08"}
    assert len(patients["val"]) == 2 and patients["train"] | patients["val"] == {"P01", "P02", "P03", "P04", "P05",
                                                                              "P06"}
    assert not patients["train"] & patients["val"]  # round(0.34 x 6) = 2 whole patients
    assert_refused([*argv, "--test_frac", 0.2, "--out", tmp_path / "o2"], capsys, tmp_path,
                   "--test_frac is not used with an official split")
    bad = write_pneumonia(tmp_path / "bad.csv", split={4: "holdout"})
    assert_refused(["--train_csv", bad, "--patient_column", "PatientID", "--split_column", "split", *PNEUMONIA_ONLY,
                    "--out", tmp_path / "o3"], capsys, tmp_path,
                   "column 'split': row 4 is 'holdout'; allowed split names: train, training, val, valid")
    nobody = write_pneumonia(tmp_path / "nobody.csv", PatientID={2: " "})
    assert_refused(["--train_csv", nobody, "--patient_column", "PatientID", *PNEUMONIA_ONLY, "--out",
                    tmp_path / "o4"], capsys, tmp_path, "column 'PatientID' row 2 names no patient")
    assert_refused(["--train_csv", nobody, "--patient_column", "Patient", *PNEUMONIA_ONLY, "--out",
                    tmp_path / "o4"], capsys, tmp_path, "--patient_column 'Patient': no such column")


def test_no_patient_warns_and_counts_no_patients(tmp_path, capsys):
    csv = write_pneumonia(tmp_path / "pneumonia.csv")
    code, _, err = run(["--train_csv", csv, "--no_patient", "--split_column", "split", *PNEUMONIA_ONLY, *OWN_TASK,
                        "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert "--no_patient: X-rays are split one by one, so images of one patient may land in different splits" in err
    counts = pd.read_csv(tmp_path / "out" / "counts.csv", index_col=0)
    assert "patients" not in counts.index and counts.loc["positive X-rays"].tolist() == [6, 3, 3]
    assert json.loads((tmp_path / "out" / "prepare_data.json").read_text())["patient"] == "none"


def test_settings_line_keeps_conditions_with_enough_positives(tmp_path, capsys):
    """Pneumonia has 6 / 3 / 3 positives, Covid 1 / 0 / 3, Tuberculosis 1 / 1 / 1; a task needs 3."""
    csv = write_pneumonia(tmp_path / "three.csv", extra_findings=True)
    own = ["--train_csv", csv, "--patient_column", "PatientID", "--split_column", "split", "--set", "K=2",
           "--set", "UNLABELED_POOL_SIZE=4", "--set", "QUERY_SET_SIZE=2"]
    # Covid held out: it needs its positives in test only.
    code, stdout, err = run([*own, "--set", "NON_HOLD_OUT=Pneumonia,Tuberculosis", "--set", "HOLD_OUT=Covid",
                             "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    line = stdout.rstrip().splitlines()[-1].strip()
    assert line == ("--set K=2 --set UNLABELED_POOL_SIZE=4 --set QUERY_SET_SIZE=2 --set NON_HOLD_OUT=Pneumonia "
                    "--set HOLD_OUT=Covid")
    config = apply_overrides(default_config(), [w for w in shlex.split(line) if w != "--set"])
    assert config["NON_HOLD_OUT"] == ["Pneumonia"] and config["HOLD_OUT"] == ["Covid"]
    assert "train: 'Tuberculosis' has 1 positives; one task needs 3 positives" in err
    # a validation pool takes 2 of val's 3 Pneumonia positives: the validation tasks nearly repeat one pool
    assert "each validation task's pool takes most of the X-rays available ('Pneumonia' 2 of 3 positives" in err
    assert "needs at least 4 positives of each condition" in err
    # Covid meta-trained on: it lacks training positives, so the line leaves it out.
    code, stdout, _ = run([*own, "--set", "NON_HOLD_OUT=Pneumonia,Tuberculosis,Covid", "--set", "HOLD_OUT=",
                           "--out", tmp_path / "b"], capsys)
    assert code == 0 and stdout.rstrip().endswith("--set NON_HOLD_OUT=Pneumonia --set HOLD_OUT=")
    # Positive = any condition in use: every Pneumonia-positive row, and no other.
    positives = pd.concat([pd.read_csv(tmp_path / "b" / f"{s}_pos.csv") for s in ("train", "val", "test")])
    assert len(positives) == 12 and (positives["Pneumonia"] == 1).all()


def test_all_cond_is_not_a_setting_and_out_under_a_file(tmp_path, capsys):
    csv = write_pneumonia(tmp_path / "pneumonia.csv")
    own = ["--train_csv", csv, "--patient_column", "PatientID", "--split_column", "split"]
    err = assert_refused([*own, "--set", "ALL_COND=Pneumonia", "--out", tmp_path / "out"], capsys, tmp_path,
                         "--set ALL_COND: not a setting; it is always NON_HOLD_OUT + HOLD_OUT")
    assert "--set NON_HOLD_OUT=Pneumonia --set HOLD_OUT=" in err
    (tmp_path / "a_file").write_text("x")
    # Checked before any work: the missing CSV is not even looked at.
    assert_refused(["--train_csv", tmp_path / "missing.csv", "--out", tmp_path / "a_file" / "splits"], capsys,
                   tmp_path, f"--out {tmp_path / 'a_file' / 'splits'}: cannot write there ({tmp_path / 'a_file'} is a "
                             "file, not a folder)")
    assert (tmp_path / "a_file").read_text() == "x"
    assert_refused(["--train_csv", tmp_path / "missing.csv", "--out", tmp_path / "a_file"], capsys, tmp_path,
                   "exists and is not a folder")
