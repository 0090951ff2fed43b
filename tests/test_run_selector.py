"""End-to-end meta-training on tiny generated data, through run_selector.py's main()."""
import csv
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

import run_selector
from tests.conftest import ROOT, TINY_SETTINGS, write_tiny_split
from utils.errors import run_cli

ORIGINAL_KEYS = {"LSTM.weight_ih_l0", "LSTM.weight_hh_l0", "LSTM.bias_ih_l0", "LSTM.bias_hh_l0",
                 "LSTM.weight_ih_l0_reverse", "LSTM.weight_hh_l0_reverse", "LSTM.bias_ih_l0_reverse",
                 "LSTM.bias_hh_l0_reverse", "linear.weight", "linear.bias"}
NEW_VALIDATION_COLUMNS = ("val_random_auroc", "val_topk_auroc", "val_diff_vs_random", "val_topk_diff_vs_random")


class OriginalSelector(nn.Module):
    """The original code's module layout, written out independently of ours."""

    def __init__(self, input_size):
        super().__init__()
        self.LSTM = nn.LSTM(input_size=input_size, hidden_size=256, num_layers=1, batch_first=True,
                            bidirectional=True)
        self.linear = nn.Linear(512, 1)


def settings(*extra):
    return [arg for item in (*TINY_SETTINGS, *extra) for arg in ("--set", item)]


def train(tiny_data, out, *extra, seed=0):
    assert run_cli(run_selector.main, [*tiny_data, "--out", str(out), "--seed", str(seed), *extra]) == 0


def read_metrics(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def test_run_writes_original_format_checkpoints(tiny_data, tmp_path):
    out = tmp_path / "runs" / "new"  # parent folders are created too
    train(tiny_data, out, *settings("NUM_META_TRAIN_TASKS=160", "NUM_EPOCHS=3"))
    rows = read_metrics(out)
    # 40 steps per epoch: validation at iter 30 of every epoch and at the very end.
    assert [(r["epoch"], r["iter"]) for r in rows] == [("1", "30"), ("2", "30"), ("3", "30"), ("3", "40")]
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5])
    best = [r["saved"] for r in rows if r["saved"]]
    assert best[0] == "model_epoch1_iter30" and all((out / name).exists() for name in best)
    checkpoint = torch.load(out / best[-1], weights_only=False)
    assert {"epoch", "model_state_dict", "optimizer_state_dict", "config"} <= set(checkpoint)
    assert set(checkpoint["model_state_dict"]) == ORIGINAL_KEYS
    assert checkpoint["config"]["K"] == 4 and checkpoint["config"]["UNLABELED_POOL_SIZE"] == 20
    OriginalSelector(8).load_state_dict(checkpoint["model_state_dict"])  # strict: same names and shapes
    best_val = max(float(r["val_auroc"]) for r in rows)
    assert float(rows[-1]["best_val_auroc"]) == pytest.approx(best_val)


def test_original_checkpoint_resumes_into_ours_and_back(tmp_path):
    from models.checkpoint import checkpoint_config, selector_from_checkpoint
    original = OriginalSelector(8)
    torch.save({"epoch": 3, "model_state_dict": original.state_dict(), "optimizer_state_dict": {}},
               tmp_path / "model_epoch3_iter30")
    checkpoint = torch.load(tmp_path / "model_epoch3_iter30", weights_only=False)
    ours = selector_from_checkpoint(checkpoint, 8, "ckpt")
    assert checkpoint_config(checkpoint)["K"] == 20  # the original's checkpoints carry no config: defaults
    x = torch.randn(2, 5, 8)
    features, _ = original.LSTM(x)
    torch.testing.assert_close(ours(x), original.linear(features).squeeze(-1))
    OriginalSelector(8).load_state_dict(ours.state_dict())


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_data, tmp_path):
    train(tiny_data, tmp_path / "a", *settings())
    train(tiny_data, tmp_path / "b", *settings())
    train(tiny_data, tmp_path / "c", *settings(), seed=1)
    a, b, c = (read_metrics(tmp_path / x) for x in "abc")
    assert [r["val_auroc"] for r in a] == [r["val_auroc"] for r in b]  # to the last digit
    assert [r["train_reward"] for r in a] == [r["train_reward"] for r in b]
    assert [r["train_reward"] for r in a] != [r["train_reward"] for r in c]


def test_short_run_still_validates_and_saves_once(tiny_data, tmp_path):
    train(tiny_data, tmp_path / "run", *settings())  # 2 epochs x 16 steps: never reaches iter 30
    rows = read_metrics(tmp_path / "run")
    assert [(r["epoch"], r["iter"], r["saved"]) for r in rows] == [("2", "16", "model_epoch2_iter16")]
    assert (tmp_path / "run" / "model_epoch2_iter16").exists()


def test_resume_equals_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    extra = settings("NUM_META_TRAIN_TASKS=160")  # 2 epochs x 40 steps, validation at iters 30, 30, 40
    train(tiny_data, tmp_path / "whole", *extra)

    real_step = run_selector.train_step
    calls = {"n": 0}

    def crashing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 65:  # in epoch 2, after the validation at its iter 30 (step 70 would be next)
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(run_selector, "train_step", crashing_step)
    with pytest.raises(SystemExit):
        train(tiny_data, tmp_path / "cut", *extra)
    assert len(read_metrics(tmp_path / "cut")) == 1  # only epoch 1's validation was reached
    monkeypatch.setattr(run_selector, "train_step", real_step)
    # A last.pt from before the random baseline and BEST_CHECKPOINT_BY existed: it resumes too.
    shutil.copytree(tmp_path / "cut", tmp_path / "older")
    older = torch.load(tmp_path / "older" / "last.pt", weights_only=False)
    del older["config"]["BEST_CHECKPOINT_BY"], older["progress"]["val_random_auroc"]
    for column in NEW_VALIDATION_COLUMNS:
        del older["progress"]["metrics"][0][column]
    torch.save(older, tmp_path / "older" / "last.pt")
    train(tiny_data, tmp_path / "older", "--resume", str(tmp_path / "older" / "last.pt"))
    # The random baseline's AUROC is kept in last.pt, not computed again.
    monkeypatch.setattr(run_selector, "evaluate_random_selection", None)
    train(tiny_data, tmp_path / "cut", "--resume", str(tmp_path / "cut" / "last.pt"))

    whole, cut = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "cut")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert strip(whole) == strip(cut)
    resumed_older = strip(read_metrics(tmp_path / "older"))
    assert resumed_older[1:] == strip(whole)[1:]
    assert [resumed_older[0][c] for c in NEW_VALIDATION_COLUMNS] == [""] * len(NEW_VALIDATION_COLUMNS)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["model_state_dict"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["model_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_use_asl_feeds_selector_only(tiny_data, tmp_path):
    train(tiny_data, tmp_path / "asl", *settings("USE_ASL=True"))
    checkpoint = torch.load(tmp_path / "asl" / "last.pt", weights_only=False)
    assert checkpoint["model_state_dict"]["LSTM.weight_ih_l0"].shape[1] == 8 + 3


def test_classifier_ignores_asl_in_validation(tmp_path):
    """With USE_ASL the AUROC of a selection equals the one computed from image embeddings alone."""
    from sklearn.metrics import roc_auc_score
    from data.tasks import FixedTaskSet, TaskSampler, TaskShape
    from data.xray_table import load_xray_table
    from engine import selection_auroc
    from models.classifier import MeanSimilarityClassifier

    pos_csv, norm_csv = write_tiny_split(tmp_path, "s")
    conditions = ["Edema"]
    table = load_xray_table(pos_csv, norm_csv, conditions, use_asl=True)
    tasks = next(FixedTaskSet(TaskSampler(table, conditions, TaskShape(20, 10, 10, 5), 0, 1), 3).batches(3))
    selection = torch.tensor([[0, 1, 2, 3, 4, 5]] * 3)
    ours = selection_auroc(table, tasks, selection, MeanSimilarityClassifier()).numpy()
    embeddings = table.embeddings.numpy()  # image embeddings only, no ASL columns
    for b in range(3):
        chosen = tasks.pool_rows[b, :6].numpy()
        labels = tasks.pool_labels[b, :6].numpy()
        unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
        sims = unit(embeddings[tasks.query_rows[b].numpy()]) @ unit(embeddings[chosen]).T
        scores = sims[:, labels == 1].mean(1) - sims[:, labels == 0].mean(1)
        assert ours[b] == pytest.approx(roc_auc_score(tasks.query_labels[b].numpy(), scores), abs=1e-6)


# --- bad input: one line, exit 2, nothing written ------------------------------------------------

def run_expecting_error(tiny_data, out, *extra, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(run_selector.main, [*tiny_data, "--out", str(out), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not os.path.exists(out), "nothing may be written for a bad input"
    return err


def replace_arg(args, flag, value):
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def test_bad_inputs(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    train_pos = tiny_data[1]
    folder = os.path.dirname(train_pos)

    err = run_expecting_error(replace_arg(tiny_data, "--train_pos_csv", "/nope/x.csv"), out, capsys=capsys)
    assert "/nope/x.csv: CSV file not found" in err

    csv_only = os.path.join(folder, "lonely.csv")
    pd.read_csv(train_pos).to_csv(csv_only, index=False)
    err = run_expecting_error(replace_arg(tiny_data, "--train_pos_csv", csv_only), out, capsys=capsys)
    assert "lonely.hdf5: HDF5 file of embeddings not found" in err

    no_path = os.path.join(folder, "nopath.csv")
    pd.read_csv(train_pos).drop(columns=["Path"]).to_csv(no_path, index=False)
    err = run_expecting_error(replace_arg(tiny_data, "--train_pos_csv", no_path), out, capsys=capsys)
    assert "nopath.csv: missing column(s) 'Path'" in err

    no_condition = os.path.join(folder, "nocond.csv")
    pd.read_csv(train_pos).drop(columns=["Cardiomegaly"]).to_csv(no_condition, index=False)
    os.link(train_pos.replace(".csv", ".hdf5"), no_condition.replace(".csv", ".hdf5"))
    err = run_expecting_error(replace_arg(tiny_data, "--train_pos_csv", no_condition), out, capsys=capsys)
    # The suggested settings name the columns the CSV does have: the eight without Cardiomegaly.
    assert ("nocond.csv: no column for condition(s) 'Cardiomegaly' (named by NON_HOLD_OUT / HOLD_OUT); its "
            "condition columns fit: --set 'NON_HOLD_OUT=Consolidation,Lung Opacity,Pleural Effusion,Pneumothorax,"
            "Enlarged Cardiomediastinum' --set HOLD_OUT=Atelectasis,Edema") in err

    short = os.path.join(folder, "short.csv")
    pd.read_csv(train_pos).iloc[:-3].to_csv(short, index=False)
    os.link(train_pos.replace(".csv", ".hdf5"), short.replace(".csv", ".hdf5"))
    err = run_expecting_error(replace_arg(tiny_data, "--train_pos_csv", short), out, capsys=capsys)
    assert "short.csv has 157 rows but" in err and "short.hdf5 has 160 embeddings" in err

    wrong_name = os.path.join(folder, "wrongname.csv")
    pd.read_csv(train_pos).to_csv(wrong_name, index=False)
    with h5py.File(wrong_name.replace(".csv", ".hdf5"), "w") as f:
        f.create_dataset("embeddings", data=np.zeros((160, 8), np.float32))
    err = run_expecting_error(replace_arg(tiny_data, "--train_pos_csv", wrong_name), out, capsys=capsys)
    assert "no dataset named 'dataset' (found: embeddings)" in err

    nan = os.path.join(folder, "nan.csv")
    pd.read_csv(train_pos).to_csv(nan, index=False)
    with h5py.File(train_pos.replace(".csv", ".hdf5")) as f:
        values = f["dataset"][:]
    values[42, 3] = np.nan
    with h5py.File(nan.replace(".csv", ".hdf5"), "w") as f:
        f.create_dataset("dataset", data=values)
    err = run_expecting_error(replace_arg(tiny_data, "--train_pos_csv", nan), out, capsys=capsys)
    assert "nan.hdf5: embedding of row 42" in err and "NaN or infinity" in err

    err = run_expecting_error(tiny_data, out, *settings("UNLABELED_POOL_SIZE=300"), capsys=capsys)
    assert "has" in err and "one task needs" in err
    err = run_expecting_error(tiny_data, out, *settings("K=0"), capsys=capsys)
    assert "K must be at least 1" in err
    err = run_expecting_error(tiny_data, out, *settings("QUERY_SET_SIZE=1"), capsys=capsys)
    assert "QUERY_SET_SIZE must be at least 2" in err
    err = run_expecting_error(tiny_data, out, "--set", "NOT_A_SETTING=1", capsys=capsys)
    assert "unknown name 'NOT_A_SETTING'" in err

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    err = run_expecting_error(tiny_data, a_file / "sub", *settings(), capsys=capsys)
    assert "cannot write there" in err


def test_resume_refuses_checkpoint_of_another_input_size(tiny_data, tmp_path, capsys):
    train(tiny_data, tmp_path / "run", *settings())
    last = tmp_path / "run" / "last.pt"
    checkpoint = torch.load(last, weights_only=False)
    del checkpoint["data"]  # a last.pt that does not record its data: the input size is still checked
    torch.save(checkpoint, last)
    args = list(tiny_data)
    for split in ("train", "val"):
        pos, norm = write_tiny_split(tmp_path / "d6", split, dim=6, seed={"train": 1, "val": 2}[split])
        args = replace_arg(replace_arg(args, f"--{split}_pos_csv", pos), f"--{split}_norm_csv", norm)
    with pytest.raises(SystemExit):
        run_cli(run_selector.main, [*args, "--out", str(tmp_path / "run"), "--resume", str(last)])
    err = capsys.readouterr().err
    assert "selector was trained on inputs of size 8, but the data gives 6" in err


def test_existing_run_is_not_overwritten(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_data, out, *settings())
    before = {p: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SystemExit):
        run_cli(run_selector.main, [*tiny_data, "--out", str(out), *settings()])
    assert "already holds a run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_non_finite_loss_stops_with_a_clear_message(tiny_data, tmp_path, monkeypatch, capsys):
    from models.lstm_selector import LSTMSelector
    diverged = lambda self, pool: self.linear(  # noqa: E731
        torch.zeros(*pool.shape[:2], 512, device=pool.device)).squeeze(-1) * float("nan")  # on the run's device
    monkeypatch.setattr(LSTMSelector, "forward", diverged)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(run_selector.main, [*tiny_data, "--out", str(tmp_path / "run"), *settings()])
    assert exit_info.value.code == 2
    assert "training stopped at epoch 1 iter 1: the loss is nan" in capsys.readouterr().err


def test_command_line_error_has_no_traceback(tiny_data, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "run_selector.py"),
                             *replace_arg(tiny_data, "--val_norm_csv", "missing.csv"), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: missing.csv: CSV file not found"


def test_resume_needs_last_pt_and_cuda_needs_a_gpu(tiny_data, tmp_path, capsys):
    train(tiny_data, tmp_path / "run", *settings())
    with pytest.raises(SystemExit):
        run_cli(run_selector.main, [*tiny_data, "--out", str(tmp_path / "run"), "--resume",
                                    str(tmp_path / "run" / "model_epoch2_iter16")])
    assert "holds weights but no training position; resume from the run's last.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(run_selector.main, [*tiny_data, "--out", str(tmp_path / "run"), "--resume",
                                    str(tmp_path / "run" / "last.pt"), "--set", "K=3"])
    assert "--set cannot be combined with --resume" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            run_cli(run_selector.main, [*tiny_data, "--out", str(tmp_path / "gpu"), "--device", "cuda"])
        assert "CUDA is not available on this machine" in capsys.readouterr().err
        assert not (tmp_path / "gpu").exists()


def test_best_checkpoint_choices_are_the_validation_modes_of_engine():
    """utils/config spells out BEST_CHECKPOINT_BY's modes (utils/ imports nothing above it): they must stay
    engine.py's modes that meta-validation computes, with training's 'sample' (draws with replacement)."""
    import engine
    from utils.config import BEST_CHECKPOINT_COLUMNS
    assert set(BEST_CHECKPOINT_COLUMNS) == set(run_selector.VALIDATION_MODES) == {engine.SAMPLE, engine.TOPK}
    assert set(BEST_CHECKPOINT_COLUMNS) <= set(engine.SELECTION_MODES)


def test_select_xrays_sample_is_engine_distinct_sampling():
    """select_xrays.py --selection sample never spends two labels on one X-ray: engine's SAMPLE_DISTINCT."""
    import engine
    from medselect.selection import SELECTION_MODE_OF, SELECTIONS
    assert SELECTIONS == ("sample", "topk")  # the CLI's choices are unchanged
    assert SELECTION_MODE_OF == {"sample": engine.SAMPLE_DISTINCT, "topk": engine.TOPK}
