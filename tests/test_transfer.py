"""Cross-dataset transfer: a selector meta-trained on one dataset, evaluated on another whose columns are named
differently (--conditions, --condition_map); the results name both datasets."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import evaluate
import prepare_data
import run_selector
from data.provenance import dataset_of
from data.synthetic import synthetic_centres, synthetic_split, write_pair
from tests.conftest import TINY_SETTINGS, run_main
from tests.dataset_layouts import write_nih

# Two SYNTHETIC datasets in prepare_data.py's output layout: NIH-like names for the training dataset, MIMIC-like
# (CheXpert's) for the test dataset. 'Infiltration' (NIH) and 'Lung Opacity' (MIMIC) stand for one finding.
TRAIN_CONDITIONS = ["Pleural Effusion", "Infiltration", "Nodule", "Atelectasis"]
TEST_CONDITIONS = ["Pleural Effusion", "Lung Opacity", "Atelectasis", "Edema", "Consolidation"]
TRAIN_SETTINGS = [*TINY_SETTINGS, "NUM_META_TRAIN_TASKS=8", "NUM_EPOCHS=1", "NON_HOLD_OUT=Pleural Effusion,"
                  "Infiltration,Nodule", "HOLD_OUT=Atelectasis"]
EVALUATE = ["--methods", "medselect-topk,random", "--num_tasks", "6", "--bootstrap", "20"]


def write_dataset(folder, splits, conditions, data_format, seed):
    """{split}_pos/_norm CSV + HDF5 and a prepare_data.json naming the layout, as prepare_data.py leaves them."""
    rng = np.random.default_rng(seed)
    centres = synthetic_centres(8, np.random.default_rng(99), len(conditions))
    os.makedirs(folder, exist_ok=True)
    for split in splits:
        positive, positive_embeddings, normal, normal_embeddings = synthetic_split(
            160, 60, 8, rng, centres=centres, conditions=conditions)
        write_pair(positive, positive_embeddings, os.path.join(folder, f"{split}_pos.csv"))
        write_pair(normal, normal_embeddings, os.path.join(folder, f"{split}_norm.csv"))
    with open(os.path.join(folder, "prepare_data.json"), "w") as f:
        json.dump({"format": data_format, "files": [f"/downloads/{data_format}/labels.csv"]}, f)


def settings(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer")
    nih, mimic = folder / "nih", folder / "mimic"
    write_dataset(nih, ("train", "val"), TRAIN_CONDITIONS, "nih", seed=1)
    write_dataset(mimic, ("test",), TEST_CONDITIONS, "mimic", seed=2)
    run = folder / "run"
    assert run_selector.main([
        "--train_pos_csv", str(nih / "train_pos.csv"), "--train_norm_csv", str(nih / "train_norm.csv"),
        "--val_pos_csv", str(nih / "val_pos.csv"), "--val_norm_csv", str(nih / "val_norm.csv"), "--out", str(run),
        *settings(TRAIN_SETTINGS)]) == 0
    checkpoint = sorted(run.glob("model_epoch*"))[-1]
    return {"folder": folder, "nih": nih, "mimic": mimic, "run": run, "checkpoint": checkpoint,
            "test": ["--test_pos_csv", str(mimic / "test_pos.csv"), "--test_norm_csv", str(mimic / "test_norm.csv")]}


def evaluate_into(transfer, out, *extra, checkpoint=None, test=None):
    argv = ["--checkpoint", str(checkpoint or transfer["checkpoint"]), *(test or transfer["test"]), "--out", str(out),
            *EVALUATE, *extra]
    assert evaluate.main(argv) == 0
    with open(out / "results.json") as f:
        return json.load(f), pd.read_csv(out / "per_task.csv"), (out / "results.md").read_text()


def test_checkpoint_records_its_training_data_and_keeps_the_original_keys(transfer):
    checkpoint = torch.load(transfer["checkpoint"], weights_only=False)
    assert {"epoch", "model_state_dict", "optimizer_state_dict"} <= set(checkpoint)
    assert checkpoint["data"]["train_pos_csv"]["csv"] == str(transfer["nih"] / "train_pos.csv")
    assert checkpoint["data"]["val_norm_csv"]["csv"] == str(transfer["nih"] / "val_norm.csv")


def test_renamed_condition_keeps_its_group_and_results_name_both_datasets(transfer, tmp_path):
    summary, per_task, report = evaluate_into(
        transfer, tmp_path / "out", "--condition_map", "Infiltration=Lung Opacity",
        "--conditions", "Pleural Effusion,Lung Opacity,Atelectasis,Edema")
    # Infiltration was meta-trained on (NON_HOLD_OUT): as Lung Opacity it is seen; Atelectasis was held out, and
    # Edema is no condition of the checkpoint at all: both unseen.
    assert summary["conditions"] == {"seen": ["Pleural Effusion", "Lung Opacity"], "unseen": ["Atelectasis", "Edema"]}
    assert set(per_task[per_task.group == "seen"].condition) == {"Pleural Effusion", "Lung Opacity"}
    assert summary["trained_on"]["folder"] == str(transfer["nih"]) and summary["trained_on"]["format"] == "nih"
    assert summary["tested_on"]["folder"] == str(transfer["mimic"]) and summary["tested_on"]["format"] == "mimic"
    assert summary["condition_map"] == {"Infiltration": "Lung Opacity"}
    assert report.splitlines()[0] == (
        f"Selector {transfer['checkpoint']}, trained on {transfer['nih']} (nih, from /downloads/nih/labels.csv); "
        f"test data {transfer['mimic']} (mimic, from /downloads/mimic/labels.csv). Conditions renamed for the test "
        "data (checkpoint → test column): Infiltration → Lung Opacity (seen).")


def test_a_map_is_the_same_as_renaming_the_test_column(transfer, tmp_path):
    """The test CSV with 'Lung Opacity' renamed 'Infiltration' (no map) gives the same tasks and numbers."""
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for kind in ("pos", "norm"):
        frame = pd.read_csv(transfer["mimic"] / f"test_{kind}.csv").rename(columns={"Lung Opacity": "Infiltration"})
        frame.to_csv(renamed / f"test_{kind}.csv", index=False)
        shutil.copy(transfer["mimic"] / f"test_{kind}.hdf5", renamed / f"test_{kind}.hdf5")
    _, mapped, _ = evaluate_into(transfer, tmp_path / "mapped", "--condition_map", "Infiltration=Lung Opacity",
                                 "--conditions", "Lung Opacity,Pleural Effusion,Edema")
    _, plain, _ = evaluate_into(transfer, tmp_path / "plain", "--conditions", "Infiltration,Pleural Effusion,Edema",
                                test=["--test_pos_csv", str(renamed / "test_pos.csv"),
                                      "--test_norm_csv", str(renamed / "test_norm.csv")])
    plain["condition"] = plain["condition"].replace({"Infiltration": "Lung Opacity"})
    pd.testing.assert_frame_equal(mapped, plain)


def test_default_conditions_are_the_mapped_ones_the_test_csv_has(transfer, tmp_path, capsys):
    code, _, err = run_main(evaluate.main, ["--checkpoint", transfer["checkpoint"], *transfer["test"], "--out",
                                            tmp_path / "out", *EVALUATE, "--condition_map", "Infiltration=Lung Opacity"],
                            capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["conditions"] == {"seen": ["Pleural Effusion", "Lung Opacity"], "unseen": ["Atelectasis"]}
    assert "has no column for 'Nodule' (NON_HOLD_OUT)" in err


def test_a_held_out_condition_mapped_stays_unseen(transfer, tmp_path):
    summary, _, _ = evaluate_into(transfer, tmp_path / "out", "--condition_map", "Atelectasis=Edema",
                                  "--conditions", "unseen")
    assert summary["conditions"] == {"unseen": ["Edema"]}


def test_same_dataset_results_do_not_claim_a_transfer(transfer, tmp_path):
    write_dataset(transfer["nih"], ("test",), TRAIN_CONDITIONS, "nih", seed=3)  # the training dataset's test split
    summary, _, report = evaluate_into(transfer, tmp_path / "out", test=[
        "--test_pos_csv", str(transfer["nih"] / "test_pos.csv"), "--test_norm_csv", str(transfer["nih"] / "test_norm.csv")])
    assert summary["trained_on"]["folder"] == summary["tested_on"]["folder"] == str(transfer["nih"])
    assert report.startswith("Mean query AUROC")  # the report of an evaluation on its own dataset is as before


def test_training_data_of_checkpoints_that_do_not_record_it(transfer, tmp_path):
    checkpoint = torch.load(transfer["checkpoint"], weights_only=False)
    del checkpoint["data"]
    # Ours, saved before checkpoints recorded their data: the run folder's config.json says it.
    beside = transfer["run"] / "model_epoch9_iter9"
    torch.save(checkpoint, beside)
    try:
        summary, _, _ = evaluate_into(transfer, tmp_path / "beside", "--conditions", "Pleural Effusion",
                                      checkpoint=beside)
    finally:
        beside.unlink()
    assert summary["trained_on"]["folder"] == str(transfer["nih"])
    torch.save(checkpoint, tmp_path / "moved")
    summary, _, report = evaluate_into(transfer, tmp_path / "moved_out", "--conditions", "Pleural Effusion",
                                       checkpoint=tmp_path / "moved")
    assert summary["trained_on"] == {"unknown": "unknown (not recorded in the checkpoint)"}
    assert report.startswith("Mean query AUROC")  # no claim of a transfer from unknown data
    original = {key: checkpoint[key] for key in ("epoch", "model_state_dict", "optimizer_state_dict")}
    torch.save(original, tmp_path / "original")
    summary, _, report = evaluate_into(transfer, tmp_path / "original_out", "--conditions", "Pleural Effusion",
                                       "--condition_map", "Lung Opacity=Consolidation,Consolidation=Lung Opacity",
                                       *settings(TINY_SETTINGS),
                                       checkpoint=tmp_path / "original")
    assert summary["trained_on"] == {"unknown": "unknown (original checkpoint)"}
    assert "trained on unknown (original checkpoint)" in report.splitlines()[0]


def test_prepare_data_output_names_its_layout(tmp_path, capsys):
    root = tmp_path / "nih"
    write_nih(root)
    code, _, err = run_main(prepare_data.main, ["--format", "nih", "--root", root, "--out", tmp_path / "splits",
                                                "--official_split", "--val_frac", "0.25"], capsys)
    assert code == 0, err
    dataset = dataset_of(tmp_path / "splits" / "test_pos.csv")
    assert dataset == {"csv": str(tmp_path / "splits" / "test_pos.csv"), "folder": str(tmp_path / "splits"),
                       "format": "nih", "source": str(root / "Data_Entry_2017.csv")}


@pytest.mark.parametrize("extra, message", [
    (["--condition_map", "Fibrosis=Edema"], "--condition_map: 'Fibrosis' is not a condition of the checkpoint "
                                           "(NON_HOLD_OUT: Pleural Effusion, Infiltration, Nodule; HOLD_OUT: Atelectasis)"),
    (["--condition_map", "Infiltration=Opacity"], "test_pos.csv has no column 'Opacity'"),
    (["--condition_map", "Infiltration=Pleural Effusion"],
     "--condition_map: 'Pleural Effusion' and 'Infiltration' of the checkpoint would both be evaluated as "
     "'Pleural Effusion'"),
    (["--condition_map", "Infiltration"], "--condition_map: expected OLD=NEW"),
    (["--condition_map", "Infiltration=Lung Opacity,Infiltration=Edema"], "'Infiltration' is mapped twice"),
    (["--condition_map", "Infiltration=Lung Opacity", "--conditions", "Infiltration"],
     "--conditions: --condition_map renames 'Infiltration' to 'Lung Opacity'; name the test CSV's column"),
    (["--conditions", "Fracture"], "--conditions: unknown condition(s) 'Fracture'"),
    (["--conditions", "Sex"], "--conditions: unknown condition(s) 'Sex'"),
])
def test_bad_maps_are_one_line_and_write_nothing(transfer, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code, _, err = run_main(evaluate.main, ["--checkpoint", transfer["checkpoint"], *transfer["test"], "--out", out,
                                            *EVALUATE, *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()
