"""Conditions as one setting: ALL_COND derived, HOLD_OUT may be empty, no overlap; condition columns and
values checked where run_selector.py and evaluate.py read them; a one-condition dataset end to end."""
import os
import re
import shlex

import pandas as pd
import pytest
import torch

import evaluate
import prepare_data
import run_selector
from data.synthetic import write_label_embeddings
from models.checkpoint import checkpoint_config
from tests.conftest import TINY_SETTINGS, run_main
from tests.dataset_layouts import write_pneumonia
from tests.evaluate_helpers import SETTINGS, write_checkpoint, write_test_split
from utils.config import apply_overrides, default_config
from utils.errors import UserError

SPLITS = ("train", "val", "test")


def settings(*items):
    return [arg for item in items for arg in ("--set", item)]


def test_all_cond_is_always_non_hold_out_plus_hold_out():
    config = apply_overrides(default_config(), ["NON_HOLD_OUT=Pneumonia", "HOLD_OUT="])
    assert config["NON_HOLD_OUT"] == ["Pneumonia"] and config["HOLD_OUT"] == [] and config["ALL_COND"] == ["Pneumonia"]
    config = apply_overrides(default_config(), ["HOLD_OUT=Edema,Cardiomegaly", "NON_HOLD_OUT=Consolidation"])
    assert config["ALL_COND"] == ["Consolidation", "Edema", "Cardiomegaly"]
    for bad, message in [("ALL_COND=Pneumonia", "--set ALL_COND: not a setting; it is always NON_HOLD_OUT + HOLD_OUT"),
                         ("NON_HOLD_OUT=", "NON_HOLD_OUT must name at least one condition"),
                         ("HOLD_OUT=Edema,Edema", "HOLD_OUT names 'Edema' twice"),
                         ("HOLD_OUT=Atelectasis,Pneumothorax", "'Pneumothorax' is in both NON_HOLD_OUT and HOLD_OUT")]:
        with pytest.raises(UserError, match=re.escape(message)):
            apply_overrides(default_config(), [bad])
    with pytest.raises(UserError) as error:
        apply_overrides(default_config(), ["KK=1"])
    assert "ALL_COND" not in str(error.value)  # not offered as a valid name


def test_stored_all_cond_still_loads_and_is_rederived():
    """Checkpoints of this project stored ALL_COND; it is replaced by NON_HOLD_OUT + HOLD_OUT, never trusted."""
    stored = apply_overrides(default_config(), ["NON_HOLD_OUT=Edema,Cardiomegaly", "HOLD_OUT=Atelectasis"])
    stored["ALL_COND"] = ["Consolidation"]  # inconsistent, as a hand-edited or old config might be
    config = checkpoint_config({"config": stored})
    assert config["ALL_COND"] == ["Edema", "Cardiomegaly", "Atelectasis"]
    assert checkpoint_config({})["ALL_COND"] == default_config()["ALL_COND"]  # the original's checkpoints


# run_selector.py: bad condition values, overlapping settings, and held-out conditions the CSVs lack.

def copy_split(source_csv, target_csv, change):
    """``target_csv`` = ``change``(source CSV), with the HDF5 of the source beside it (rows unchanged)."""
    change(pd.read_csv(source_csv)).to_csv(target_csv, index=False)
    os.link(source_csv.replace(".csv", ".hdf5"), target_csv.replace(".csv", ".hdf5"))
    return target_csv


def test_run_selector_refuses_bad_condition_values_and_overlap(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"

    def with_text(frame):
        frame["Cardiomegaly"] = frame["Cardiomegaly"].astype(object)
        frame.loc[7, "Cardiomegaly"] = "yes"
        return frame

    odd = copy_split(tiny_data[1], str(tmp_path / "odd.csv"), with_text)
    argv = [*tiny_data[:1], odd, *tiny_data[2:], "--out", out, *settings(*TINY_SETTINGS)]
    code, _, err = run_main(run_selector.main, argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert err == (f"error: {odd}: column 'Cardiomegaly' row 7 is 'yes'; allowed values: 1 (positive), 0 (negative), "
                   "-1 (uncertain, counted as positive) or blank\n")
    assert not out.exists()
    code, _, err = run_main(run_selector.main, [*tiny_data, "--out", out, "--set", "HOLD_OUT=Edema,Cardiomegaly"],
                            capsys)
    assert code == 2 and "'Cardiomegaly' is in both NON_HOLD_OUT and HOLD_OUT" in err and not out.exists()


def test_run_selector_says_once_that_held_out_columns_are_absent(tiny_data, tmp_path, capsys):
    def without_held_out(frame):
        return frame.drop(columns=["Atelectasis", "Edema"])

    args = list(tiny_data)
    for flag in ("--train_pos_csv", "--val_pos_csv"):
        index = args.index(flag) + 1
        args[index] = copy_split(args[index], str(tmp_path / f"{flag[2:]}.csv"), without_held_out)
    out = tmp_path / "run"
    code, _, err = run_main(run_selector.main, [*args, "--out", out, *settings(
        "UNLABELED_POOL_SIZE=20", "QUERY_SET_SIZE=10", "K=4", "BATCH_SIZE=4", "NUM_META_TRAIN_TASKS=8",
        "NUM_META_TEST_TASKS=4", "NUM_EPOCHS=1")], capsys)
    assert code == 0, err
    log = (out / "train.log").read_text()
    assert log.count("HOLD_OUT condition(s)") == 1
    assert "HOLD_OUT condition(s) 'Atelectasis', 'Edema' are not columns of" in log


# evaluate.py: default conditions are the checkpoint's that the test CSV has.

@pytest.fixture(scope="module")
def test_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conditions")
    positive_csv, normal_csv = write_test_split(str(folder / "data"))
    return {"folder": folder, "pos": positive_csv, "norm": normal_csv,
            "checkpoint": write_checkpoint(str(folder / "model_epoch1_iter30"))}


def evaluate_argv(test_data, positive_csv, out, *extra):
    return ["--checkpoint", test_data["checkpoint"], "--test_pos_csv", positive_csv, "--test_norm_csv",
            test_data["norm"], "--out", out, "--methods", "medselect,random", "--num_tasks", "6", "--bootstrap", "20",
            *extra]


def test_evaluate_uses_the_conditions_the_test_csv_has(test_data, tmp_path, capsys):
    no_edema = copy_split(test_data["pos"], str(tmp_path / "no_edema.csv"), lambda f: f.drop(columns=["Edema"]))
    code, _, err = run_main(evaluate.main, evaluate_argv(test_data, no_edema, tmp_path / "a"), capsys)
    assert code == 0, err
    assert f"{no_edema} has no column for 'Edema' (HOLD_OUT): evaluating the conditions it has" in err
    assert err.count("has no column for") == 1
    results = pd.read_csv(tmp_path / "a" / "per_task.csv")
    assert set(results.loc[results.group == "unseen", "condition"]) == {"Atelectasis"}
    # The same as naming the conditions explicitly on the full CSV: identical tasks and AUROCs.
    seen = apply_overrides(default_config(), SETTINGS)["NON_HOLD_OUT"]
    named = ",".join([*seen, "Atelectasis"])
    code, _, err = run_main(evaluate.main, evaluate_argv(test_data, test_data["pos"], tmp_path / "b", "--conditions",
                                                         named), capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(results, pd.read_csv(tmp_path / "b" / "per_task.csv"))


def test_evaluate_condition_errors_suggest_settings(test_data, tmp_path, capsys):
    no_held_out = copy_split(test_data["pos"], str(tmp_path / "no_held_out.csv"),
                             lambda f: f.drop(columns=["Edema", "Atelectasis"]))
    out = tmp_path / "out"
    for extra, message in [
            (["--conditions", "unseen"], f"--conditions unseen: none of HOLD_OUT (Atelectasis, Edema) is a column of "
                                         f"{no_held_out}; its condition columns can be evaluated as conditions "
                                         "the selector never met (reported unseen): --conditions 'Consolidation,"
                                         "Lung Opacity,Pleural Effusion,Pneumothorax,Enlarged Cardiomediastinum,"
                                         "Cardiomegaly'"),
            (["--conditions", "Edema"], f"--conditions: {no_held_out} has no column for 'Edema'")]:
        code, _, err = run_main(evaluate.main, evaluate_argv(test_data, no_held_out, out, *extra), capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err
        assert not out.exists()
    # A checkpoint without held-out conditions: 'unseen' has nothing to evaluate.
    checkpoint = write_checkpoint(str(tmp_path / "one_group"), settings=[*SETTINGS, "HOLD_OUT="])
    argv = evaluate_argv(test_data, no_held_out, out, "--conditions", "unseen")
    argv[1] = checkpoint
    code, _, err = run_main(evaluate.main, argv, capsys)
    assert code == 2 and "--conditions unseen: HOLD_OUT is empty in the checkpoint's configuration" in err
    assert not out.exists()


def test_one_condition_dataset_from_csv_to_evaluation(tmp_path, capsys):
    """A pneumonia-only collection with its own patient column and split: prepare -> train -> evaluate with the
    settings prepare_data.py prints, no dummy held-out condition; evaluation reports the seen group only."""
    csv = write_pneumonia(tmp_path / "pneumonia.csv")
    splits = tmp_path / "splits"
    code, stdout, err = run_main(prepare_data.main, [
        "--train_csv", csv, "--patient_column", "PatientID", "--split_column", "split", "--out", splits,
        "--set", "NON_HOLD_OUT=Pneumonia", "--set", "HOLD_OUT=", "--set", "UNLABELED_POOL_SIZE=4",
        "--set", "QUERY_SET_SIZE=2", "--set", "K=2"], capsys)
    assert code == 0, err
    line = shlex.split(stdout.rstrip().splitlines()[-1])
    assert line == ["--set", "UNLABELED_POOL_SIZE=4", "--set", "QUERY_SET_SIZE=2", "--set", "K=2",
                    "--set", "NON_HOLD_OUT=Pneumonia", "--set", "HOLD_OUT="]
    csvs = {f"{s}_{k}": str(splits / f"{s}_{k}.csv") for s in SPLITS for k in ("pos", "norm")}
    write_label_embeddings(csvs.values(), ["Pneumonia"], dim=8, seed=0)

    run = tmp_path / "run"
    code, _, err = run_main(run_selector.main, [
        "--train_pos_csv", csvs["train_pos"], "--train_norm_csv", csvs["train_norm"], "--val_pos_csv",
        csvs["val_pos"], "--val_norm_csv", csvs["val_norm"], "--out", run, *line,
        *settings("BATCH_SIZE=4", "NUM_META_TRAIN_TASKS=8", "NUM_META_TEST_TASKS=4", "NUM_EPOCHS=1")], capsys)
    assert code == 0, err
    checkpoint = run / "model_epoch1_iter2"
    stored = torch.load(checkpoint, weights_only=False)["config"]
    assert (stored["NON_HOLD_OUT"], stored["HOLD_OUT"], stored["ALL_COND"]) == (["Pneumonia"], [], ["Pneumonia"])

    code, stdout, err = run_main(evaluate.main, [
        "--checkpoint", checkpoint, "--test_pos_csv", csvs["test_pos"], "--test_norm_csv", csvs["test_norm"],
        "--out", tmp_path / "eval", "--methods", "medselect,random", "--num_tasks", "8", "--bootstrap", "20"], capsys)
    assert code == 0, err
    results = pd.read_csv(tmp_path / "eval" / "results.csv")
    assert set(results.group) == {"seen"} and set(results.condition) == {"Pneumonia", "overall"}
    assert (results.num_tasks == 8).all() and "has no column" not in err
    assert "| seen | Pneumonia | 8 |" in stdout and "| unseen" not in stdout and "| all |" not in stdout
