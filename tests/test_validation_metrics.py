"""Meta-validation reports the selector's topk AUROC and random selection's beside the sample AUROC.

One short run on tiny generated data, with BEST_CHECKPOINT_BY=topk; its metrics.csv rows are checked
against evaluate.py's numbers for the same checkpoints on the same (validation) tasks, and against a
plain per-task loop: numpy cosine classifier, scikit-learn's roc_auc_score.
"""
import csv
import os

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import evaluate
import run_selector
from data.tasks import VALIDATION_STREAM, FixedTaskSet, TaskSampler, TaskShape
from data.xray_table import load_xray_table
from models.baselines import RANDOM_STREAMS
from models.checkpoint import checkpoint_config, load_checkpoint, selector_from_checkpoint
from tests.conftest import TINY_SETTINGS, write_tiny_split
from utils.seeding import BASELINE_SELECTION

SEED = 0
# 30 steps per epoch, one validation at the end of each of 4 epochs; a learning rate high enough that the
# selections change between validations; 40 validation tasks so that the modes' best rows differ.
SETTINGS = [*TINY_SETTINGS, "NUM_META_TRAIN_TASKS=120", "NUM_EPOCHS=4", "LEARNING_RATE=1e-2",
            "NUM_META_TEST_TASKS=40", "BEST_CHECKPOINT_BY=topk"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("validation")
    train_pos, train_norm = write_tiny_split(folder / "data", "train", seed=1)
    val_pos, val_norm = write_tiny_split(folder / "data", "val", seed=2)
    out = folder / "run"
    code = run_selector.main(["--train_pos_csv", train_pos, "--train_norm_csv", train_norm, "--val_pos_csv", val_pos,
                              "--val_norm_csv", val_norm, "--out", str(out), "--seed", str(SEED),
                              *[a for s in SETTINGS for a in ("--set", s)]])
    assert code == 0
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {"out": out, "rows": rows, "val_pos": val_pos, "val_norm": val_norm}


def checkpoints_with_rows(run):
    """(checkpoint path, the metrics row of the validation whose weights it holds): the saved ones and last.pt."""
    pairs = [(run["out"] / row["saved"], row) for row in run["rows"] if row["saved"]]
    return pairs + [(run["out"] / "last.pt", run["rows"][-1])]


def validation_tasks(run, config):
    """The validation tasks of run_selector.py: the validation stream of the run's seed."""
    table = load_xray_table(run["val_pos"], run["val_norm"], config["NON_HOLD_OUT"], config["USE_ASL"],
                            config["HOLD_OUT"])
    sampler = TaskSampler(table, config["NON_HOLD_OUT"], TaskShape.from_config(config), SEED, VALIDATION_STREAM)
    return table, sampler, FixedTaskSet(sampler, config["NUM_META_TEST_TASKS"])


def plain_loop_aurocs(run, selector, sampler, config):
    """Mean query AUROC of topk and of the random draws, one task at a time in numpy and scikit-learn."""
    with h5py.File(run["val_pos"].replace(".csv", ".hdf5")) as f, h5py.File(run["val_norm"].replace(".csv", ".hdf5")) as g:
        embeddings = np.concatenate([f["dataset"][:], g["dataset"][:]]).astype(np.float64)  # positives, then normals
    k, pool_size = config["K"], config["UNLABELED_POOL_SIZE"]

    def auroc(pool_rows, pool_labels, query_rows, query_labels, chosen):
        unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        similarity = unit[query_rows] @ unit[pool_rows[chosen]].T  # (Q, K)
        labels = pool_labels[chosen]
        positive = similarity[:, labels == 1].mean(1) if (labels == 1).any() else 0.0
        negative = similarity[:, labels == 0].mean(1) if (labels == 0).any() else 0.0
        return roc_auc_score(query_labels, positive - negative)

    topk, random = [], []
    for task in range(config["NUM_META_TEST_TASKS"]):
        _, pool_rows, pool_labels, query_rows, query_labels = sampler.task_arrays(task)
        with torch.no_grad():
            logits = selector(torch.from_numpy(embeddings[pool_rows]).float()[None])[0].numpy()
        topk.append(auroc(pool_rows, pool_labels, query_rows, query_labels, np.argsort(-logits)[:k]))
        noise = np.random.default_rng([SEED, BASELINE_SELECTION, RANDOM_STREAMS["random"], task]).random(pool_size)
        random.append(auroc(pool_rows, pool_labels, query_rows, query_labels, np.argsort(-noise)[:k]))
    return np.mean(topk), np.mean(random)


def test_new_columns_are_evaluate_pys_numbers_and_a_plain_loops(run):
    checked = checkpoints_with_rows(run)
    assert len(checked) >= 3
    for path, row in checked:
        checkpoint = load_checkpoint(str(path))
        config = checkpoint_config(checkpoint)
        table, sampler, task_set = validation_tasks(run, config)
        selector = selector_from_checkpoint(checkpoint, table.selector_input_size, str(path)).eval()
        outcome = evaluate.evaluate_methods(["medselect-topk", "random"], {"seen": task_set}, table,
                                            {"medselect-topk": selector}, [config["K"]], config["BATCH_SIZE"],
                                            "sample", SEED, torch.device("cpu"))[config["K"]]
        evaluated = {m: outcome["auroc"]["seen"][m].mean() for m in ("medselect-topk", "random")}
        loop_topk, loop_random = plain_loop_aurocs(run, selector, sampler, config)
        assert float(row["val_topk_auroc"]) == pytest.approx(evaluated["medselect-topk"], abs=1e-9), path
        assert float(row["val_random_auroc"]) == pytest.approx(evaluated["random"], abs=1e-9), path
        assert float(row["val_topk_auroc"]) == pytest.approx(loop_topk, abs=1e-9), path
        assert float(row["val_random_auroc"]) == pytest.approx(loop_random, abs=1e-9), path
        assert float(row["val_diff_vs_random"]) == pytest.approx(float(row["val_auroc"]) - loop_random, abs=1e-9)
        assert float(row["val_topk_diff_vs_random"]) == pytest.approx(loop_topk - loop_random, abs=1e-9)
        if path.name != "last.pt":  # the best checkpoints also carry their scores
            assert checkpoint["val_topk_auroc"] == pytest.approx(loop_topk, abs=1e-9)
            assert checkpoint["val_auroc"] == float(row["val_auroc"])


def test_random_baseline_is_the_same_at_every_validation(run):
    assert len({row["val_random_auroc"] for row in run["rows"]}) == 1


def test_topk_setting_picks_the_checkpoint_with_the_best_topk_auroc(run):
    rows, out = run["rows"], run["out"]
    topk = [float(r["val_topk_auroc"]) for r in rows]
    sample = [float(r["val_auroc"]) for r in rows]
    best = int(np.argmax(topk))
    assert best != int(np.argmax(sample)), "the test needs a run whose two modes' best rows differ"
    best_name = f"model_epoch{rows[best]['epoch']}_iter{rows[best]['iter']}"
    assert rows[-1]["best_checkpoint"] == best_name
    assert float(rows[-1]["best_val_auroc"]) == max(topk)
    # A checkpoint is saved exactly when the topk AUROC beats every earlier one.
    records = [i for i in range(len(rows)) if all(topk[i] > t for t in topk[:i])]
    assert [i for i, r in enumerate(rows) if r["saved"]] == records
    best_pt, named = torch.load(out / "best.pt", weights_only=False), torch.load(out / best_name, weights_only=False)
    assert all(torch.equal(best_pt["model_state_dict"][k], v) for k, v in named["model_state_dict"].items())
    assert named["config"]["BEST_CHECKPOINT_BY"] == "topk"
    with open(out / "config.json") as f:
        assert '"BEST_CHECKPOINT_BY": "topk"' in f.read()


def test_metrics_columns_keep_the_originals_order_and_append_the_new_ones(run):
    with open(run["out"] / "metrics.csv") as f:
        header = f.readline().strip().split(",")
    assert header == ["epoch", "iter", "step", "train_auroc", "train_baseline_auroc", "train_reward", "val_auroc",
                      "best_val_auroc", "learning_rate", "elapsed_s", "saved", "best_checkpoint", "val_random_auroc",
                      "val_topk_auroc", "val_diff_vs_random", "val_topk_diff_vs_random", "val_diff_ci_low",
                      "val_diff_ci_high", "val_topk_diff_ci_low", "val_topk_diff_ci_high", "best_sample_checkpoint",
                      "best_topk_checkpoint"]


def test_best_checkpoint_setting_is_checked_and_old_checkpoints_default_to_sample(tmp_path, capsys):
    from tests.conftest import run_main
    from utils.config import apply_overrides, default_config
    assert default_config()["BEST_CHECKPOINT_BY"] == "sample"  # the original's choice
    assert apply_overrides(default_config(), ["BEST_CHECKPOINT_BY=topk"])["BEST_CHECKPOINT_BY"] == "topk"
    assert apply_overrides(default_config(), ["BEST_CHECKPOINT_BY='topk'"])["BEST_CHECKPOINT_BY"] == "topk"
    stored = default_config()
    del stored["BEST_CHECKPOINT_BY"]
    assert checkpoint_config({"config": stored})["BEST_CHECKPOINT_BY"] == "sample"  # ours from before the setting
    assert checkpoint_config({})["BEST_CHECKPOINT_BY"] == "sample"  # the original's: no config at all
    pos, norm = write_tiny_split(tmp_path / "data", "val")
    out = tmp_path / "run"
    code, _, err = run_main(run_selector.main, ["--train_pos_csv", pos, "--train_norm_csv", norm, "--val_pos_csv",
                                                pos, "--val_norm_csv", norm, "--out", out, "--set",
                                                "BEST_CHECKPOINT_BY=best"], capsys)
    assert code == 2
    assert err.strip() == "error: BEST_CHECKPOINT_BY must be one of sample, topk, got 'best'"
    assert not os.path.exists(out)
