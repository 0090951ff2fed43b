"""Reports and advice that never mislabel: the transfer advice, a moved project, the task size of a
baselines-only evaluation, options that do not apply, --help defaults, a run folder as --checkpoint, the
selection analysis's files, and what README and changes_from_original.md say about the original's files."""
import importlib
import json
import os
import re
import shutil

import pandas as pd
import pytest

import constants
import evaluate
import select_xrays
from tests.conftest import ROOT, run_main
from tests.evaluate_helpers import write_checkpoint, write_test_split
from utils.hashing import file_sha256

QUICK = ["--num_tasks", "4", "--bootstrap", "20"]
SETTINGS = ["--set", "UNLABELED_POOL_SIZE=30", "--set", "UNLABELED_POS_FRAC=0.2", "--set", "QUERY_SET_SIZE=10",
            "--set", "K=4"]


@pytest.fixture
def data(tmp_path):
    pos, norm = write_test_split(tmp_path / "data")
    return {"folder": tmp_path / "data", "test": ["--test_pos_csv", pos, "--test_norm_csv", norm],
            "checkpoint": write_checkpoint(tmp_path / "ckpt.pt")}


def test_transfer_advice_names_conditions_reported_unseen(data, tmp_path, capsys):
    other = tmp_path / "pneumonia"
    other.mkdir()
    for kind in ("pos", "norm"):
        frame = pd.read_csv(data["folder"] / f"test_{kind}.csv").drop(columns=constants.ALL_COND, errors="ignore")
        if kind == "pos":
            frame["Pneumonia"] = 1.0
        frame.to_csv(other / f"test_{kind}.csv", index=False)
        shutil.copy(data["folder"] / f"test_{kind}.hdf5", other / f"test_{kind}.hdf5")
    test = ["--test_pos_csv", other / "test_pos.csv", "--test_norm_csv", other / "test_norm.csv"]
    argv = ["--checkpoint", data["checkpoint"], *test, "--methods", "medselect-topk,random", *QUICK]
    code, _, err = run_main(evaluate.main, [*argv, "--out", tmp_path / "a"], capsys)
    assert code == 2 and "--conditions Pneumonia" in err and "NON_HOLD_OUT" not in err.split(";", 1)[1]
    code, _, err = run_main(evaluate.main, [*argv, "--conditions", "Pneumonia", "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "b" / "results.json").read_text())
    assert summary["conditions"] == {"unseen": ["Pneumonia"]}  # never met in meta-training: not seen


@pytest.mark.parametrize("same_content", [True, False])
def test_a_moved_project_is_the_same_dataset_by_content(data, tmp_path, capsys, same_content):
    train_csv = data["folder"] / "train_pos.csv"  # the training CSV, now beside the test CSVs
    shutil.copy(data["folder"] / "test_pos.csv", train_csv)
    recorded = file_sha256(train_csv) if same_content else "0" * 64
    checkpoint = write_checkpoint(tmp_path / "moved.pt")
    import torch
    saved = torch.load(checkpoint, weights_only=False)
    saved["data"] = {"train_pos_csv": {"csv": "/old/place/data/train_pos.csv", "csv_sha256": recorded}}
    torch.save(saved, checkpoint)
    code, _, err = run_main(evaluate.main, ["--checkpoint", checkpoint, *data["test"], "--methods",
                                            "medselect-topk,random", *QUICK, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    report = (tmp_path / "out" / "results.md").read_text()
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    if same_content:
        assert not report.startswith("Selector")  # no banner for another dataset
        assert summary["trained_on"]["moved_to"] == str(data["folder"])
        assert "moved or copied" in err
    else:
        assert report.startswith(f"Selector {checkpoint}, trained on /old/place/data")
        assert "moved_to" not in summary["trained_on"]


def test_baselines_only_evaluation_names_its_task_size_and_the_setting(data, tmp_path, capsys):
    code, _, err = run_main(evaluate.main, [*data["test"], "--methods", "random", *QUICK, "--out", tmp_path / "a"],
                            capsys)
    assert code == 2 and not (tmp_path / "a" / "results.md").exists()
    assert (f"without --checkpoint the task size is constants.py's (UNLABELED_POOL_SIZE={constants.UNLABELED_POOL_SIZE}"
            f", QUERY_SET_SIZE={constants.QUERY_SET_SIZE}, K={constants.K})") in err
    assert "--set UNLABELED_POOL_SIZE=" in err
    code, _, err = run_main(evaluate.main, [*data["test"], "--methods", "random", *QUICK, *SETTINGS,
                                            "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    assert "no --checkpoint: the task size is constants.py's: UNLABELED_POOL_SIZE=30, QUERY_SET_SIZE=10, K=4" in err


def test_a_run_folder_as_checkpoint_means_its_best_checkpoint(data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(data["checkpoint"], run / "best.pt")
    code, _, err = run_main(evaluate.main, ["--checkpoint", run, *data["test"], "--methods", "medselect-topk,random",
                                            *QUICK, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "results.json").read_text())["checkpoint"] == str(run / "best.pt")
    code, _, err = run_main(evaluate.main, ["--checkpoint", tmp_path / "out", *data["test"], "--out", tmp_path / "x"],
                            capsys)
    assert code == 2 and "without best.pt" in err


def test_analysis_says_where_it_wrote_its_files(data, tmp_path, capsys):
    code, out, err = run_main(evaluate.main, ["--checkpoint", data["checkpoint"], *data["test"], "--methods",
                                              "medselect-topk,kmedoids", *QUICK, "--analysis", "--out",
                                              tmp_path / "out"], capsys)
    assert code == 0, err
    for text in (out, (tmp_path / "out" / "results.md").read_text()):
        assert f"selection_analysis.csv and selection_analysis.png in {tmp_path / 'out'}" in text
    assert (tmp_path / "out" / "selection_analysis.csv").is_file()


@pytest.mark.parametrize("option", [["--selection", "topk"], ["--selection", "sample"], ["--large_pool", "whole"]])
def test_selector_options_are_refused_with_a_label_free_method(data, tmp_path, capsys, option):
    pool = data["folder"] / "test_norm.csv"
    code, _, err = run_main(select_xrays.main, ["--pool_csv", pool, "--method", "random", "-k", 3, *option,
                                                "--out", tmp_path / "x.csv"], capsys)
    assert code == 2 and f"{option[0]} applies to --method medselect only" in err
    assert not (tmp_path / "x.csv").exists()
    code, _, err = run_main(select_xrays.main, ["--pool_csv", pool, "--method", "random", "-k", 3,
                                                "--out", tmp_path / "y.csv"], capsys)
    assert code == 0, err and len(pd.read_csv(tmp_path / "y.csv")) == 3


ENTRY_POINTS = ["prepare_data", "xray_to_hdf5", "run_selector", "evaluate", "select_xrays", "classify_xrays",
                "utils.plots", "scripts.make_demo_images", "scripts.make_demo_data"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_states_each_default_once(module):
    parser = importlib.import_module(module).get_args_parser()
    text = re.sub(r"\s", "", parser.format_help())  # argparse wraps lines, also at hyphens
    assert "(default:None)" not in text and "(default:[])" not in text
    for action in parser._actions:
        if action.help and re.search(r"\bdefault\b", action.help, re.I):
            # a help text that states its default gets no second one
            assert re.sub(r"\s", "", f"{action.help} (default:") not in text, action.option_strings
        elif action.help and action.default not in (None, False, []) and action.option_strings != ["-h", "--help"]:
            assert re.sub(r"\s", "", f"(default: {action.default})") in text, action.option_strings


def test_readme_and_changes_agree_on_the_path_column():
    for page in ("README.md", os.path.join("docs", "changes_from_original.md")):
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            paragraphs = f.read().split("\n\n")
        claims = [p for p in paragraphs if "unchanged" in p and "original" in p]
        assert claims, page
        assert all("`Path`" in p for p in claims), f"{page}: the original's files 'unchanged', the Path column unsaid"
