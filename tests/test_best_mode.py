"""The best checkpoint of each validation mode, the mode select_xrays.py takes by default, the verdict that the
selector learned nothing usable, and the warning about crowded validation data. The validation scores are
given (the validation functions are replaced), never the outcome of a training run."""
import csv
import os

import numpy as np
import pytest
import torch

import run_selector
from data.tasks import TaskShape
from data.validation_overlap import crowded_validation_warning
from medselect import select
from models.validation_record import preferred_mode, validation_record
from tests.conftest import TINY_SETTINGS, write_tiny_split
from tests.medselect_helpers import DIM, TRAINED_K, memoryless_selector, numpy_logits, write_checkpoint, write_pool
from utils.errors import run_cli
from utils.logs import setup_logging

NUM_TASKS = 12  # NUM_META_TEST_TASKS of TINY_SETTINGS
RANDOM_MEAN = 0.6
# 30 steps per epoch, 4 epochs: one validation at the end of each epoch (iter 30)
SETTINGS = [s for s in TINY_SETTINGS if not s.startswith(("NUM_META_TRAIN_TASKS", "NUM_EPOCHS"))] + [
    "NUM_META_TRAIN_TASKS=120", "NUM_EPOCHS=4"]


def per_task(mean, spread, seed):
    """NUM_TASKS values whose mean is exactly ``mean``."""
    noise = np.random.default_rng(seed).normal(size=NUM_TASKS)
    return mean + spread * (noise - noise.mean())


def give_validation_scores(monkeypatch, sample_means, topk_means, spread):
    """Replace meta-validation: the i-th validation scores the given means (random: RANDOM_MEAN)."""
    calls = []

    def scores(selector, classifier, table, task_set, k, batch_size, generator, modes):
        i = len(calls)
        calls.append(i)
        return {"sample": per_task(sample_means[i], spread, i), "topk": per_task(topk_means[i], spread, 100 + i)}

    monkeypatch.setattr(run_selector, "evaluate_selector", scores)
    monkeypatch.setattr(run_selector, "evaluate_random_selection", lambda *args: per_task(RANDOM_MEAN, 0.01, 999))
    return calls


def train(tmp_path, *extra, num_normal=60):
    train_pos, train_norm = write_tiny_split(tmp_path / "data", "train", seed=1)
    val_pos, val_norm = write_tiny_split(tmp_path / "data", "val", seed=2, num_normal=num_normal)
    out = tmp_path / "run"
    argv = ["--train_pos_csv", train_pos, "--train_norm_csv", train_norm, "--val_pos_csv", val_pos,
            "--val_norm_csv", val_norm, "--out", out, *[a for s in [*SETTINGS, *extra] for a in ("--set", s)]]
    assert run_cli(run_selector.main, [str(a) for a in argv]) == 0
    with open(out / "metrics.csv") as f:
        return out, list(csv.DictReader(f))


def same_file(a, b):
    return os.path.samefile(a, b) or open(a, "rb").read() == open(b, "rb").read()


def logged(capsys, function, *args, **kwargs):
    """(what ``function`` returns, what it logged): the log set up as a command line sets it up."""
    setup_logging()
    capsys.readouterr()
    result = function(*args, **kwargs)
    captured = capsys.readouterr()
    return result, captured.out + captured.err


def test_each_mode_keeps_its_best_checkpoint(tmp_path, monkeypatch, capsys):
    calls = give_validation_scores(monkeypatch, sample_means=[0.62, 0.70, 0.65, 0.68],
                                   topk_means=[0.63, 0.61, 0.75, 0.74], spread=0.001)
    out, rows = train(tmp_path)
    log = (out / "train.log").read_text()
    assert len(calls) == 4
    assert [r["saved"] for r in rows] == ["model_epoch1_iter30", "model_epoch2_iter30", "", ""]  # BEST_CHECKPOINT_BY
    assert [r["best_topk_checkpoint"] for r in rows] == ["model_epoch1_iter30", "model_epoch1_iter30",
                                                         "model_epoch3_iter30", "model_epoch3_iter30"]
    assert [r["best_sample_checkpoint"] for r in rows] == [r["best_checkpoint"] for r in rows]
    assert same_file(out / "best.pt", out / "model_epoch2_iter30")
    assert same_file(out / "best_sample.pt", out / "model_epoch2_iter30")
    assert same_file(out / "best_topk.pt", out / "model_epoch3_iter30")
    assert not (out / "model_epoch4_iter30").exists()  # neither mode improved at the last validation
    record = torch.load(out / "best_topk.pt", weights_only=False)["validation"]
    assert record["modes"]["topk"]["diff_vs_random"] == pytest.approx(0.15)
    assert record["modes"]["sample"]["diff_vs_random"] == pytest.approx(0.05)
    assert record["modes"]["topk"]["diff_ci_low"] > 0.1  # a clear gain: no verdict of failure
    assert "learned nothing usable" not in log
    # both curves in metrics.csv, with each mode's paired interval
    assert [float(r["val_topk_auroc"]) for r in rows] == pytest.approx([0.63, 0.61, 0.75, 0.74])
    assert all(float(r["val_topk_diff_ci_low"]) < float(r["val_topk_diff_vs_random"]) <
               float(r["val_topk_diff_ci_high"]) for r in rows)
    assert "each validation task's pool takes most" not in log  # 60 normals for pools of 10

    # select_xrays.py without --selection: the mode that validated better for the checkpoint used
    pool_csv, frame, embeddings = write_pool(tmp_path / "pool")
    selector = memoryless_selector(DIM)
    for name, expected in (("best_topk.pt", "topk"), ("best_sample.pt", "sample")):
        checkpoint = torch.load(out / name, weights_only=False)
        checkpoint["model_state_dict"] = selector.state_dict()  # a selector whose ranking is known
        checkpoint["config"].update(K=TRAINED_K, UNLABELED_POOL_SIZE=100)  # the pool of 70 is read as one sequence
        torch.save(checkpoint, tmp_path / name)
        chosen, text = logged(capsys, select, pool_csv, checkpoint=str(tmp_path / name), seed=3)
        assert f"selection {expected}: it validated better" in text
        explicit = select(pool_csv, checkpoint=str(tmp_path / name), seed=3, selection=expected)
        assert chosen["Path"].tolist() == explicit["Path"].tolist()
    top = frame["Path"].iloc[np.argsort(-numpy_logits(selector.state_dict(), embeddings))[:TRAINED_K]]
    topk_default = select(pool_csv, checkpoint=str(tmp_path / "best_topk.pt"), seed=3)
    assert sorted(topk_default["Path"]) == sorted(top)
    # an explicit --selection wins
    assert sorted(select(pool_csv, checkpoint=str(tmp_path / "best_topk.pt"), seed=3, selection="sample")["Path"]) \
        != sorted(top)


def test_a_selector_that_never_beats_random_is_called_so(tmp_path, monkeypatch, capsys):
    give_validation_scores(monkeypatch, sample_means=[0.61, 0.58, 0.60, 0.59], topk_means=[0.59, 0.60, 0.61, 0.6],
                           spread=0.1)  # within noise of random in both modes
    out, _ = train(tmp_path, num_normal=16)
    log = (out / "train.log").read_text()
    assert "did not beat random selection on its 12 meta-validation tasks in either mode" in log
    assert "learned nothing usable" in log
    # pools of 10 normals from 16: the warning comes before the first validation, with what would be enough
    warning = log.index("each validation task's pool takes most of the X-rays available (10 of 16 normals)")
    assert warning < log.index("Meta-val average AUROC")
    assert "needs at least 20 positives of each condition and 20 normals" in log
    pool_csv, _, _ = write_pool(tmp_path / "pool")
    _, text = logged(capsys, select, pool_csv, checkpoint=str(out / "best.pt"), k=3)
    assert "learned nothing usable" in text


def test_checkpoints_without_the_record_keep_the_default(tmp_path, capsys):
    pool_csv, _, _ = write_pool(tmp_path / "pool")
    selector = memoryless_selector(DIM)
    original = write_checkpoint(tmp_path / "original", selector, original_format=True)
    chosen, text = logged(capsys, select, pool_csv, checkpoint=original, k=4, seed=1)
    assert "selection sample: the checkpoint records no meta-validation of both selection modes" in text
    assert chosen["Path"].tolist() == select(pool_csv, checkpoint=original, k=4, seed=1, selection="sample")[
        "Path"].tolist()
    # ours from before the record: the flat scores are enough to choose the mode, not to judge it
    assert preferred_mode({"val_auroc": 0.70, "val_topk_auroc": 0.72, "val_random_auroc": 0.65})[0] == "topk"
    assert preferred_mode({"val_auroc": 0.70, "val_topk_auroc": 0.70, "val_random_auroc": 0.65})[0] == "sample"


def test_validation_record_is_the_mean_paired_difference():
    sample, topk, random = np.array([0.7, 0.8, 0.6]), np.array([0.9, 0.5, 0.7]), np.array([0.5, 0.6, 0.7])
    record = validation_record({"sample": sample, "topk": topk}, random, seed=0, num_resamples=500)
    assert record["random_auroc"] == pytest.approx(0.6) and record["num_tasks"] == 3
    assert record["modes"]["sample"]["diff_vs_random"] == pytest.approx((0.2 + 0.2 - 0.1) / 3)
    assert record["modes"]["topk"]["auroc"] == pytest.approx(0.7)
    # the bootstrap interval of a mean of three differences lies within their range
    assert -0.1 - 1e-12 <= record["modes"]["sample"]["diff_ci_low"] <= record["modes"]["sample"]["diff_ci_high"] <= 0.2 + 1e-12


def test_crowded_validation_is_named_with_what_would_be_enough():
    shape = TaskShape(pool_size=200, pool_positives=100, query_size=60, query_positives=30)  # the shape
    message = crowded_validation_warning({"Edema": 135, "Effusion": 400}, 135, shape, "val_pos.csv")
    assert "'Edema' 100 of 135 positives" in message and "100 of 135 normals" in message
    assert "Effusion" not in message
    assert "needs at least 200 positives of each condition and 200 normals" in message  # a pool takes at most half
    assert crowded_validation_warning({"Edema": 200}, 200, shape, "val_pos.csv") is None  # exactly half: fine
    small_query = TaskShape(pool_size=20, pool_positives=2, query_size=40, query_positives=20)
    assert "needs at least 22 positives" in crowded_validation_warning({"Edema": 3}, 100, small_query, "v.csv")
