"""Inputs that were silently accepted: validation on the training CSVs, shared X-rays or patients between the
splits (data/input_checks.py), and a non-finite --set value."""
import os

import pandas as pd
import pytest

import run_selector
from data.input_checks import check_separate_splits
from tests.conftest import TINY_SETTINGS, run_main, write_tiny_split
from utils.errors import UserError


def write_paths(path, paths):
    pd.DataFrame({"Path": paths, "Edema": 1.0}).to_csv(path, index=False)
    return str(path)


def test_validation_on_the_training_csvs_is_refused(tmp_path, capsys):
    pos, norm = write_tiny_split(tmp_path / "data", "train")
    out = tmp_path / "run"
    code, _, err = run_main(run_selector.main, ["--train_pos_csv", pos, "--train_norm_csv", norm, "--val_pos_csv", pos,
                                                "--val_norm_csv", norm, "--out", out,
                                                *[a for s in TINY_SETTINGS for a in ("--set", s)]], capsys)
    assert code == 2
    assert err.strip() == (f"error: --val_pos_csv {pos}: is the same file as --train_pos_csv; the best checkpoint "
                           "would be chosen on training data: give the validation split's CSVs")
    assert not out.exists()


def test_a_copy_of_a_training_csv_is_refused_too(tmp_path):
    a = write_paths(tmp_path / "a.csv", ["x/patient00001/s1/v.jpg"])
    b = write_paths(tmp_path / "b.csv", ["x/patient00001/s1/v.jpg"])
    with pytest.raises(UserError, match=r"b.csv: is the same file as --train_pos_csv \(the same content\)"):
        check_separate_splits({"--train_pos_csv": a}, {"--val_pos_csv": b})


def test_shared_xrays_and_patients_are_counted(tmp_path):
    train = write_paths(tmp_path / "t.csv", ["d/patient00001/s1/a.jpg", "d/patient00002/s1/a.jpg",
                                             "d/patient00003/s1/a.jpg"])
    train_norm = write_paths(tmp_path / "tn.csv", ["d/patient00004/s1/a.jpg"])
    val = write_paths(tmp_path / "v.csv", ["d/patient00001/s1/a.jpg", "d/patient00002/s2/b.jpg",
                                           "d/patient00004/s9/c.jpg", "d/patient00009/s1/a.jpg"])
    warnings = check_separate_splits({"--train_pos_csv": train, "--train_norm_csv": train_norm},
                                     {"--val_pos_csv": val})
    # X-rays: patient00001/s1/a.jpg only; patients: 00001, 00002 and 00004 (a normal of training)
    assert warnings == [
        "1 X-ray(s) are in both the training and the validation CSVs (e.g. d/patient00001/s1/a.jpg): the best "
        "checkpoint is partly chosen on training X-rays",
        "3 patient(s) have X-rays in both the training and the validation CSVs (e.g. patient00001): the best "
        "checkpoint is partly chosen on patients seen in training"]
    other = write_paths(tmp_path / "o.csv", ["e/img1.jpg", "e/img2.jpg"])
    assert check_separate_splits({"--train_pos_csv": train}, {"--val_pos_csv": other}) == []


def test_a_non_finite_learning_rate_is_refused_before_anything_is_written(tmp_path, capsys):
    train_pos, train_norm = write_tiny_split(tmp_path / "data", "train", seed=1)
    val_pos, val_norm = write_tiny_split(tmp_path / "data", "val", seed=2)
    out = tmp_path / "run"
    code, _, err = run_main(run_selector.main, ["--train_pos_csv", train_pos, "--train_norm_csv", train_norm,
                                                "--val_pos_csv", val_pos, "--val_norm_csv", val_norm, "--out", out,
                                                "--set", "LEARNING_RATE=1e400"], capsys)
    assert code == 2
    assert err.strip() == "error: --set LEARNING_RATE: expected a finite number, got '1e400' (read as inf)"
    assert not os.path.exists(out)
