"""evaluate.py's MedSelect variants: medselect-sample and medselect-topk are the two selection modes,
plain medselect keeps the mode of --selection, and medselect-untrained is the selector a training
run with the checkpoint's seed started from."""
import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import roc_auc_score

import evaluate
from evaluation import meta_test
import run_selector
from data.tasks import TEST_STREAM, FixedTaskSet, TaskSampler, TaskShape
from data.xray_table import load_xray_table
from models.lstm_selector import initial_selector
from tests.conftest import TINY_SETTINGS, run_main
from tests.evaluate_helpers import SETTINGS, positive_favouring_selector, write_checkpoint, write_test_split
from utils.config import apply_overrides, default_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    positive_csv, normal_csv = write_test_split(str(folder / "data"))
    return {"folder": folder, "checkpoint": write_checkpoint(str(folder / "model_epoch1_iter30")),
            "args": ["--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv]}


def evaluate_per_task(data, out, *extra):
    argv = [*data["args"], "--out", out, "--bootstrap", 20, "--num_tasks", 12, *extra]
    assert evaluate.main([str(a) for a in argv]) == 0
    return pd.read_csv(os.path.join(out, "per_task.csv"))


def test_variants_are_the_selection_modes_and_plain_medselect_follows_selection(data, tmp_path):
    both = evaluate_per_task(data, tmp_path / "both", "--checkpoint", data["checkpoint"], "--selection", "topk",
                             "--methods", "medselect,medselect-sample,medselect-topk")
    np.testing.assert_array_equal(both["medselect_auroc"], both["medselect-topk_auroc"])
    assert not np.array_equal(both["medselect-sample_auroc"], both["medselect-topk_auroc"])
    # Plain medselect with --selection sample (the default) gives medselect-sample's numbers: the same draws.
    plain = evaluate_per_task(data, tmp_path / "plain", "--checkpoint", data["checkpoint"], "--methods", "medselect")
    np.testing.assert_array_equal(plain["medselect_auroc"], both["medselect-sample_auroc"])


def test_sample_distinct_draws_k_different_x_rays(data, tmp_path, monkeypatch):
    """medselect-sample-distinct (select_xrays.py's 'sample') never repeats an X-ray; medselect-sample may."""
    chosen = {}
    real_select = meta_test.select_from_logits

    def recording_select(logits, k, mode, generator):
        selection = real_select(logits, k, mode, generator)
        chosen.setdefault(mode, []).append(selection)
        return selection

    monkeypatch.setattr(meta_test, "select_from_logits", recording_select)
    evaluate_per_task(data, tmp_path / "out", "--checkpoint", data["checkpoint"],
                      "--methods", "medselect-sample,medselect-sample-distinct")
    distinct = torch.cat(chosen["sample-distinct"])
    assert len(distinct) == 24 and all(len(set(row)) == len(row) for row in distinct.tolist())
    assert any(len(set(row)) < len(row) for row in torch.cat(chosen["sample"]).tolist())


def test_topk_is_the_k_highest_logits(data, tmp_path):
    """medselect-topk's AUROC of each seen task, from the selector's K best X-rays and scikit-learn."""
    per_task = evaluate_per_task(data, tmp_path / "out", "--checkpoint", data["checkpoint"], "--conditions", "seen",
                                 "--methods", "medselect-topk")
    config = apply_overrides(default_config(), SETTINGS)
    table = load_xray_table(data["args"][1], data["args"][3], config["NON_HOLD_OUT"], False)
    batch = next(FixedTaskSet(TaskSampler(table, config["NON_HOLD_OUT"], TaskShape.from_config(config), 0,
                                          TEST_STREAM), 12).batches(12))
    embeddings = table.embeddings.numpy().astype(np.float64)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    with torch.no_grad():
        logits = positive_favouring_selector()(table.embeddings[batch.pool_rows]).numpy()  # (12, 30)
    for task in range(12):
        best = np.argsort(-logits[task], kind="stable")[:config["K"]]
        rows, labels = batch.pool_rows[task].numpy()[best], batch.pool_labels[task].numpy()[best]
        similarity = unit[batch.query_rows[task].numpy()] @ unit[rows].T  # (Q, K)
        score = (similarity[:, labels == 1].mean(1) if (labels == 1).any() else 0) - \
            (similarity[:, labels == 0].mean(1) if (labels == 0).any() else 0)
        expected = roc_auc_score(batch.query_labels[task].numpy(), score * np.ones(len(similarity)))
        assert per_task["medselect-topk_auroc"].iloc[task] == pytest.approx(expected, abs=1e-6)


def test_initial_selector_is_pytorchs_initialisation_after_manual_seed():
    torch.manual_seed(3)
    lstm = nn.LSTM(input_size=8, hidden_size=256, num_layers=1, batch_first=True, bidirectional=True)
    linear = nn.Linear(512, 1)
    expected = {**{f"LSTM.{k}": v for k, v in lstm.state_dict().items()},
                **{f"linear.{k}": v for k, v in linear.state_dict().items()}}
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    ours = initial_selector(8, 3).state_dict()
    assert torch.equal(torch.rand(3), before)  # the global random state is left alone
    assert set(ours) == set(expected) and all(torch.equal(ours[k], expected[k]) for k in ours)
    assert not torch.equal(initial_selector(8, 4).state_dict()["linear.weight"], ours["linear.weight"])


def test_untrained_is_where_the_run_of_the_checkpoints_seed_started(data, tiny_data, tmp_path, capsys):
    """A run whose weights cannot move (learning rate 1e-30, one step) saves its initial weights; evaluating
    its checkpoint as medselect-untrained must then give exactly medselect's numbers, and another seed must not."""
    settings = [*TINY_SETTINGS, "NUM_META_TRAIN_TASKS=4", "NUM_EPOCHS=1", "LEARNING_RATE=1e-30"]
    run = tmp_path / "run"
    code, _, err = run_main(run_selector.main, [*tiny_data, "--out", run, "--seed", 5,
                                                *[a for s in settings for a in ("--set", s)]], capsys)
    assert code == 0, err
    checkpoint = torch.load(run / "model_epoch1_iter1", weights_only=False)
    initial = initial_selector(8, 5).state_dict()
    assert all(torch.equal(checkpoint["model_state_dict"][k], initial[k]) for k in initial)

    # topk: an untrained selector's softmax is nearly uniform, so sampled draws hardly depend on its weights.
    methods = ["--methods", "medselect-topk,medselect-untrained,random", "--selection", "topk"]
    same = evaluate_per_task(data, tmp_path / "same", "--checkpoint", run / "model_epoch1_iter1", *methods)
    np.testing.assert_array_equal(same["medselect-untrained_auroc"], same["medselect-topk_auroc"])
    results = pd.read_csv(tmp_path / "same" / "results.csv")
    untrained = results[(results.method == "medselect-untrained") & (results.reference == "medselect-topk")]
    assert len(untrained) and (untrained.diff_vs_medselect == 0).all()
    assert set(results[results.method == "random"].reference) == {"medselect-topk", "medselect-untrained"}

    # The original's checkpoints record no seed: --seed names it.
    original = {k: checkpoint[k] for k in ("epoch", "model_state_dict", "optimizer_state_dict")}
    torch.save(original, tmp_path / "original")
    overrides = [a for s in TINY_SETTINGS for a in ("--set", s)]
    other = evaluate_per_task(data, tmp_path / "other", "--checkpoint", tmp_path / "original", *methods, *overrides)
    assert not np.array_equal(other["medselect-untrained_auroc"], other["medselect-topk_auroc"])  # seed 0
    named = evaluate_per_task(data, tmp_path / "named", "--checkpoint", tmp_path / "original", *methods, *overrides,
                              "--seed", "5")
    np.testing.assert_array_equal(named["medselect-untrained_auroc"], named["medselect-topk_auroc"])
