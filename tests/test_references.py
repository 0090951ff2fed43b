"""evaluate.py's reference rows (all-pool-labels, best-of-random), headroom shares, positive fractions and
medselect-untrained in every mode, each against a plain loop, scikit-learn or a hand-worked example."""
import os

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import constants
import evaluate
from data.tasks import TEST_STREAM, FixedTaskSet, TaskSampler, TaskShape
from data.xray_table import load_xray_table
from evaluation import meta_test, references
from evaluation.references import (ALL_POOL_LABELS, BEST_OF_RANDOM, BEST_OF_RANDOM_DRAWS, add_headroom_shares,
                                   evaluate_references, random_draws)
from models.baselines import select_baseline
from models.lstm_selector import initial_selector
from tests.evaluate_helpers import DIM, SETTINGS, write_checkpoint, write_test_split
from utils.config import apply_overrides, default_config

K = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("references")
    positive_csv, normal_csv = write_test_split(str(folder / "data"))
    config = apply_overrides(default_config(), SETTINGS)
    table = load_xray_table(positive_csv, normal_csv, constants.NON_HOLD_OUT)
    tasks = FixedTaskSet(TaskSampler(table, constants.NON_HOLD_OUT, TaskShape.from_config(config), 0, TEST_STREAM), 6)
    return {"folder": folder, "table": table, "tasks": tasks, "csvs": (positive_csv, normal_csv)}


def plain_cosine_auroc(embeddings, labels, query, query_labels):
    """The paper's classifier by hand: mean cosine to the labelled positives minus mean cosine to the normals."""
    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    scores = []
    for q in query:
        positive = [cosine(q, e) for e, y in zip(embeddings, labels) if y == 1]
        normal = [cosine(q, e) for e, y in zip(embeddings, labels) if y == 0]
        scores.append((np.mean(positive) if positive else 0.0) - (np.mean(normal) if normal else 0.0))
    return roc_auc_score(query_labels, scores)


def task_arrays(data):
    batch = next(data["tasks"].batches(len(data["tasks"])))
    return batch, data["table"].embeddings.numpy()


def test_all_pool_labels_is_the_classifier_of_every_pool_label(data):
    found = evaluate_references({"seen": data["tasks"]}, data["table"], [K], 4, 0, torch.device("cpu"))
    batch, embeddings = task_arrays(data)
    expected = [plain_cosine_auroc(embeddings[batch.pool_rows[t].numpy()], batch.pool_labels[t].numpy(),
                                   embeddings[batch.query_rows[t].numpy()], batch.query_labels[t].numpy())
                for t in range(len(batch))]
    np.testing.assert_allclose(found[K]["auroc"]["seen"][ALL_POOL_LABELS], expected, atol=1e-6)
    # its positive fraction is the pool's: 6 of 30 in these tasks
    np.testing.assert_allclose(found[K]["positive_fraction"]["seen"][ALL_POOL_LABELS], 0.2)


def test_best_of_random_is_the_best_of_its_twenty_draws(data):
    found = evaluate_references({"seen": data["tasks"]}, data["table"], [K], 4, 7, torch.device("cpu"))
    best = found[K]["auroc"]["seen"][BEST_OF_RANDOM]
    fraction = found[K]["positive_fraction"]["seen"][BEST_OF_RANDOM]
    batch, embeddings = task_arrays(data)
    for t in range(len(batch)):
        draws = random_draws(batch.pool_rows.shape[1], K, 7, [t])[0].numpy()  # (20, K): task t's draws alone
        assert draws.shape == (BEST_OF_RANDOM_DRAWS, K) and all(len(set(d)) == K for d in draws)
        assert len({tuple(sorted(d)) for d in draws}) > 1
        pool_rows, pool_labels = batch.pool_rows[t].numpy(), batch.pool_labels[t].numpy()
        aurocs = [plain_cosine_auroc(embeddings[pool_rows[d]], pool_labels[d], embeddings[batch.query_rows[t].numpy()],
                                     batch.query_labels[t].numpy()) for d in draws]
        assert all(best[t] >= a - 1e-6 for a in aurocs)
        assert best[t] == pytest.approx(max(aurocs), abs=1e-6)
        # the positive fraction is that of a draw reaching the maximum
        winners = [pool_labels[d].mean() for d, a in zip(draws, aurocs) if a >= max(aurocs) - 1e-6]
        assert any(fraction[t] == pytest.approx(w) for w in winners)


def test_best_of_random_draws_do_not_depend_on_the_batch(data):
    one = evaluate_references({"seen": data["tasks"]}, data["table"], [K], 1, 3, torch.device("cpu"))
    many = evaluate_references({"seen": data["tasks"]}, data["table"], [K, 2], 6, 3, torch.device("cpu"))
    np.testing.assert_array_equal(one[K]["auroc"]["seen"][BEST_OF_RANDOM], many[K]["auroc"]["seen"][BEST_OF_RANDOM])


def test_positive_fraction_counts_the_selected_positives(data):
    outcome = meta_test.evaluate_methods(["random", "kmedoids"], {"seen": data["tasks"]}, data["table"], {}, [K], 4,
                                         "sample", 5, torch.device("cpu"))[K]
    batch, _ = task_arrays(data)
    for method in ("random", "kmedoids"):
        chosen = select_baseline(method, data["table"].classifier_input(batch.pool_rows), K, 5).numpy()
        by_hand = []
        for t in range(len(batch)):
            count = 0
            for position in chosen[t]:
                count += int(batch.pool_labels[t, position]) == 1
            by_hand.append(count / K)
        np.testing.assert_allclose(outcome["positive_fraction"]["seen"][method], by_hand)
    rows = meta_test.summarize(outcome, {"seen": data["tasks"]}, ["random", "kmedoids"], 20, 0)
    overall = next(r for r in rows if r["method"] == "random" and r["condition"] == "overall")
    values = outcome["positive_fraction"]["seen"]["random"]
    assert (overall["positive_fraction"], overall["positive_fraction_min"], overall["positive_fraction_max"]) == \
        pytest.approx((sum(values) / len(values), min(values), max(values)))


def test_headroom_share_arithmetic():
    def row(method, auroc, condition="overall"):
        return {"group": "seen", "condition": condition, "method": method, "mean_auroc": auroc}
    rows = add_headroom_shares([row("random", 0.6), row(ALL_POOL_LABELS, 0.9), row("medselect-topk", 0.75),
                                row("kmedoids", 0.54), row(BEST_OF_RANDOM, 0.96),
                                row("random", 0.8, "Edema"), row(ALL_POOL_LABELS, 0.8, "Edema"), row("kmedoids", 0.9, "Edema"),
                                row("kmedoids", 0.7, "Cardiomegaly")])
    shares = {(r["condition"], r["method"]): r["headroom_share"] for r in rows}
    assert shares[("overall", "medselect-topk")] == pytest.approx(0.15 / 0.3)  # half the headroom
    assert shares[("overall", "kmedoids")] == pytest.approx(-0.06 / 0.3)  # worse than random: negative
    assert shares[("overall", BEST_OF_RANDOM)] == pytest.approx(1.2)  # an oracle may pass all-pool-labels
    assert shares[("overall", "random")] == 0 and shares[("overall", ALL_POOL_LABELS)] == pytest.approx(1)
    assert shares[("Edema", "kmedoids")] is None  # no headroom: nothing to share
    assert shares[("Cardiomegaly", "kmedoids")] is None  # no random in that cell
    assert references.headroom(0.6, 0.9) == pytest.approx(0.3)


def test_untrained_follows_every_mode_of_the_trained_variants():
    methods = ["medselect-sample", "medselect-topk", "medselect-untrained", "random"]
    assert meta_test.with_untrained_modes(methods, "sample") == [
        "medselect-sample", "medselect-topk", "medselect-untrained", "medselect-untrained-topk", "random"]
    assert meta_test.with_untrained_modes(methods, "topk") == [
        "medselect-sample", "medselect-topk", "medselect-untrained", "medselect-untrained-sample", "random"]
    assert meta_test.with_untrained_modes(["medselect-topk", "random"], "sample") == ["medselect-topk", "random"]


def test_evaluation_reports_references_and_untrained_modes(data, tmp_path):
    """A checkpoint holding the initial weights of its seed: each untrained mode must repeat its trained mode."""
    checkpoint = write_checkpoint(str(tmp_path / "ckpt"), initial_selector(DIM, 0, hidden_size=4))
    out = tmp_path / "out"
    positive_csv, normal_csv = data["csvs"]
    assert evaluate.main(["--checkpoint", checkpoint, "--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv,
                          "--out", str(out), "--bootstrap", "20", "--num_tasks", "8", "--conditions", "seen",
                          "--methods", "medselect-sample,medselect-topk,medselect-untrained,random"]) == 0
    per_task = pd.read_csv(out / "per_task.csv")
    np.testing.assert_array_equal(per_task["medselect-untrained-topk_auroc"], per_task["medselect-topk_auroc"])
    np.testing.assert_array_equal(per_task["medselect-untrained_auroc"], per_task["medselect-sample_auroc"])
    results = pd.read_csv(out / "results.csv")
    reference_rows = results[results.kind == "reference"]
    assert set(reference_rows.method) == {ALL_POOL_LABELS, BEST_OF_RANDOM}
    assert reference_rows.reference.isna().all()  # no paired differences for references
    overall = results[(results.condition == "overall")].drop_duplicates("method").set_index("method")
    expected = ((overall.mean_auroc - overall.mean_auroc["random"])
                / (overall.mean_auroc[ALL_POOL_LABELS] - overall.mean_auroc["random"]))
    np.testing.assert_allclose(overall.headroom_share, expected)
    assert overall.positive_fraction[ALL_POOL_LABELS] == pytest.approx(0.2)
    report = (out / "results.md").read_text()
    assert "Headroom = all-pool-labels − random" in report and "best-of-random (reference)" in report
    assert os.path.isfile(out / "results.json")
