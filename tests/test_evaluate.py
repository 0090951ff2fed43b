"""evaluate.py end to end on small generated data: outputs, numbers recomputed independently,
identical tasks across methods, a positive-favouring selector beating random, MedSelect's
variants (sample, topk, untrained), and bad inputs."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import evaluate
from evaluation import meta_test
from data.tasks import HELD_OUT_TEST_STREAM, TEST_STREAM, FixedTaskSet, TaskSampler, TaskShape
from data.xray_table import load_xray_table
from evaluation import curves
from evaluation.classifier_comparison import CLASSIFIER_FILES
from models.baselines import select_baseline
from tests.evaluate_helpers import DIM, SETTINGS, write_checkpoint, write_test_split
from utils.config import apply_overrides, default_config
from utils.errors import run_cli
from utils.seeding import EVALUATION_BOOTSTRAP, derived_seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOTSTRAP = 200


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    positive_csv, normal_csv = write_test_split(str(folder / "data"))
    checkpoint = write_checkpoint(str(folder / "model_epoch1_iter30"))
    return {"folder": folder, "checkpoint": checkpoint, "args": ["--test_pos_csv", positive_csv,
                                                                 "--test_norm_csv", normal_csv]}


@pytest.fixture(scope="module")
def full_run(data):
    """The default methods, --analysis, the task shape and K from the checkpoint (16 tasks per group)."""
    out = str(data["folder"] / "results")
    assert evaluate.main(["--checkpoint", data["checkpoint"], *data["args"], "--out", out,
                          "--bootstrap", str(BOOTSTRAP), "--analysis", "--seed", "3"]) == 0
    with open(os.path.join(out, "results.json")) as f:
        summary = json.load(f)
    return {"out": out, "summary": summary, "results": pd.read_csv(os.path.join(out, "results.csv")),
            "per_task": pd.read_csv(os.path.join(out, "per_task.csv"))}


def test_outputs_and_configuration_from_checkpoint(full_run):
    out, summary = full_run["out"], full_run["summary"]
    for name in evaluate.RESULT_FILES:
        assert os.path.isfile(os.path.join(out, name)) == (name not in curves.CURVE_FILES + CLASSIFIER_FILES), name
    for name in ("auroc_by_condition.png", "selection_analysis.png"):
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert summary["config"]["K"] == 4 and summary["config"]["UNLABELED_POOL_SIZE"] == 30
    assert summary["num_tasks_per_group"] == 16
    assert summary["methods"] == list(evaluate.DEFAULT_METHODS)
    assert summary["methods"][:2] == ["medselect-sample", "medselect-topk"]
    assert {"random", "kmedoids", "kmedoids-fasterpam"} <= set(summary["methods"])
    assert set(summary["seconds_per_task"]) == set(evaluate.DEFAULT_METHODS)
    assert summary["selection_modes"] == {"medselect-sample": "sample", "medselect-topk": "topk"}
    per_task = full_run["per_task"]
    assert (per_task.groupby("group").size() == 16).all()
    assert set(per_task.loc[per_task.group == "unseen", "condition"]) <= {"Atelectasis", "Edema"}
    with open(os.path.join(out, "results.md")) as f:
        report = f.read()
    assert "| all | overall | 32 |" in report and "− kmedoids" in report
    assert "medselect-sample minus each method" in report and "medselect-topk minus each method" in report


def test_summary_rows_recomputed_from_per_task_scores(full_run):
    """Means, bootstrap CIs and paired differences of both MedSelect modes against every baseline (and
    sample against topk), recomputed with NumPy from per_task.csv."""
    results, per_task = full_run["results"], full_run["per_task"]
    seed = derived_seed(3, EVALUATION_BOOTSTRAP)
    cells = [("seen", "overall", per_task.group == "seen"), ("unseen", "Edema", per_task.condition == "Edema"),
             ("all", "overall", per_task.group.notna())]
    for group, condition, chosen in cells:
        scores = per_task[chosen]
        rng = np.random.default_rng(seed)
        resamples = rng.integers(0, len(scores), size=(BOOTSTRAP, len(scores)))
        cell = results[(results.group == group) & (results.condition == condition)]
        # medselect-sample is compared with everything else, so it has one row, without a reference.
        assert cell[cell.method == "medselect-sample"].reference.isna().all()
        pairs = [("medselect-sample", m) for m in ("medselect-topk", "random", "kmedoids", "kmedoids-fasterpam",
                                                    "coreset")] + [("medselect-topk", m) for m in ("random", "kmedoids")]
        for reference, method in pairs:
            row = cell[(cell.method == method) & (cell.reference == reference)]
            assert len(row) == 1, (reference, method)
            row = row.iloc[0]
            values = scores[f"{method}_auroc"].to_numpy()
            assert row.num_tasks == len(values)
            assert row.mean_auroc == pytest.approx(values.mean())
            means = values[resamples].mean(1)
            assert (row.ci_low, row.ci_high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
            difference = scores[f"{reference}_auroc"].to_numpy() - values
            assert row.diff_vs_medselect == pytest.approx(difference.mean())
            assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx(
                tuple(np.percentile(difference[resamples].mean(1), [2.5, 97.5])))
        assert len(cell[cell.method == "random"]) == 2  # against each MedSelect mode


def test_per_task_auroc_recomputed_with_scikit_learn(data, full_run):
    """The random and coreset AUROCs of per_task.csv, from our own tasks, selections and classifier."""
    config = apply_overrides(default_config(), SETTINGS)
    table = load_xray_table(data["args"][1], data["args"][3], config["NON_HOLD_OUT"], False)
    tasks = FixedTaskSet(TaskSampler(table, config["NON_HOLD_OUT"], TaskShape.from_config(config), 3, TEST_STREAM),
                         16)
    batch = next(tasks.batches(16))
    per_task = full_run["per_task"][full_run["per_task"].group == "seen"]
    embeddings = table.embeddings.numpy().astype(np.float64)
    for method in ("random", "coreset"):
        selection = select_baseline(method, table.embeddings[batch.pool_rows], 4, 3).numpy()
        for task in range(16):
            rows = batch.pool_rows[task].numpy()[selection[task]]
            labels = batch.pool_labels[task].numpy()[selection[task]]
            unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
            query = unit[batch.query_rows[task].numpy()]
            similarity = query @ unit[rows].T  # (Q, K)
            score = (similarity[:, labels == 1].mean(1) if (labels == 1).any() else 0) - \
                (similarity[:, labels == 0].mean(1) if (labels == 0).any() else 0)
            expected = roc_auc_score(batch.query_labels[task].numpy(), score * np.ones(len(query)))
            assert per_task[f"{method}_auroc"].iloc[task] == pytest.approx(expected, abs=1e-6)


def test_every_method_sees_identical_tasks(data, tmp_path, monkeypatch):
    seen_pools, modes = {}, set()
    real_logits, real_select, real_prepare = meta_test.selector_logits, meta_test.select_from_logits, meta_test.prepare_pools

    def recording_logits(selector, table, tasks):
        seen_pools.setdefault("medselect", []).append(table.classifier_input(tasks.pool_rows).clone())
        return real_logits(selector, table, tasks)

    def recording_select(logits, k, mode, generator):
        modes.add(mode)
        return real_select(logits, k, mode, generator)

    def recording_prepare(method, pool_embeddings):
        seen_pools.setdefault(method, []).append(pool_embeddings.clone())
        return real_prepare(method, pool_embeddings)

    monkeypatch.setattr(meta_test, "selector_logits", recording_logits)
    monkeypatch.setattr(meta_test, "select_from_logits", recording_select)
    monkeypatch.setattr(meta_test, "prepare_pools", recording_prepare)
    assert evaluate.main(["--checkpoint", data["checkpoint"], *data["args"], "--out", str(tmp_path / "out"),
                          "--bootstrap", "10", "--conditions", "unseen", "--num_tasks", "10"]) == 0
    assert modes == {"sample", "topk"}  # both MedSelect variants select from the one selector's logits
    pools = {method: torch.cat(batches) for method, batches in seen_pools.items()}
    assert set(pools) == {"medselect"} | set(evaluate.BASELINE_METHODS)
    for method, pool in pools.items():
        assert torch.equal(pool, pools["random"]), method
    # ... and they are the deterministic meta-test tasks of the seed.
    config = apply_overrides(default_config(), SETTINGS)
    table = load_xray_table(data["args"][1], data["args"][3], config["HOLD_OUT"], False)
    expected = FixedTaskSet(TaskSampler(table, config["HOLD_OUT"], TaskShape.from_config(config), 0,
                                        HELD_OUT_TEST_STREAM), 10)
    assert torch.equal(pools["random"], table.embeddings[next(expected.batches(10)).pool_rows])


def test_selector_favouring_positives_beats_random(data, tmp_path):
    out = str(tmp_path / "out")
    assert evaluate.main(["--checkpoint", data["checkpoint"], *data["args"], "--out", out, "--selection", "topk",
                          "--methods", "medselect,random", "--num_tasks", "40", "--bootstrap", "500"]) == 0
    results = pd.read_csv(os.path.join(out, "results.csv"))
    overall = results[(results.group == "all") & (results.method == "random")]
    assert len(overall) == 1  # plain medselect and one baseline: one row each, as before the variants existed
    overall = overall.iloc[0]
    assert overall.reference == "medselect"
    assert overall.diff_vs_medselect > 0.05
    assert overall.diff_ci_low > 0 and overall.p_value < 0.01


def test_selection_analysis_file(full_run):
    analysis = pd.read_csv(os.path.join(full_run["out"], "selection_analysis.csv"))
    assert set(analysis.method) == {"medselect-sample", "kmedoids"}
    assert set(analysis.group) == {"seen", "unseen", "all"}
    assert {"distance_L2", "distance_cosine", "positive_fraction", "age", "female_fraction",
            "frontal_fraction"} <= set(analysis.quantity)
    pairs = analysis[(analysis.group == "all") & (analysis.quantity == "distance_L1")]
    assert list(pairs.n) == [32 * 6, 32 * 6]  # 32 tasks x K(K-1)/2 pairs
    positives = analysis[(analysis.group == "all") & (analysis.quantity == "positive_fraction")]
    assert (positives.n == 32).all()
    # The positive-favouring selector picks more positives than the medoids do.
    assert positives.set_index("method")["mean"]["medselect-sample"] > \
        positives.set_index("method")["mean"]["kmedoids"]


# Bad input: one line on stderr, exit status 2, nothing written.

def run_evaluate(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(evaluate.main, argv)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: ")
    return stderr


@pytest.mark.parametrize("extra, message", [
    (["--methods", "medselect,kmeans"], "unknown method(s) kmeans; valid: medselect, medselect-sample, "
                                        "medselect-sample-distinct, medselect-topk, medselect-untrained, random, "
                                        "kmedoids, kmedoids-fasterpam"),
    (["--conditions", "Edema,Fracture"], "unknown condition(s) 'Fracture'; valid: seen, unseen, all"),
    (["--set", "USE_ASL=True"], f"trained on inputs of size {DIM}, but the data gives {DIM + 3}"),
    (["--set", "UNLABELED_POOL_SIZE=300"], "'Consolidation' has 30 positive X-ray(s)"),
    (["--analysis", "--methods", "medselect,random"], "--analysis compares a trained MedSelect variant"),
    (["--analysis", "--methods", "medselect-untrained,kmedoids"], "--analysis compares a trained MedSelect variant"),
    (["--num_tasks", "0"], "--num_tasks must be at least 1"),
])
def test_bad_input_is_one_line_and_writes_nothing(data, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    stderr = run_evaluate(["--checkpoint", data["checkpoint"], *data["args"], "--out", str(out), *extra], capsys)
    assert message in stderr
    assert not out.exists()


def test_condition_with_too_few_positives_is_named(tmp_path, capsys):
    positive_csv, normal_csv = write_test_split(str(tmp_path / "data"), few={"Edema": 5})
    checkpoint = write_checkpoint(str(tmp_path / "ckpt"))
    stderr = run_evaluate(["--checkpoint", checkpoint, "--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv,
                           "--out", str(tmp_path / "out"), "--conditions", "unseen"], capsys)
    assert "'Edema' has 5 positive X-ray(s)" in stderr and "needs 11" in stderr
    assert not (tmp_path / "out").exists()


def test_existing_results_are_refused_without_overwrite(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}\n")
    (out / "selection_analysis.png").write_text("stale")
    argv = ["--checkpoint", data["checkpoint"], *data["args"], "--out", str(out), "--methods", "random",
            "--num_tasks", "4", "--bootstrap", "10"]
    stderr = run_evaluate(argv, capsys)
    assert "already holds results (results.json, selection_analysis.png)" in stderr and "--overwrite" in stderr
    assert (out / "results.json").read_text() == "{}\n"
    assert evaluate.main(argv + ["--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())["methods"] == ["random"]
    assert not (out / "selection_analysis.png").exists()  # stale results of the earlier run are removed


def test_medselect_needs_a_checkpoint_but_baselines_do_not(data, tmp_path, capsys):
    stderr = run_evaluate([*data["args"], "--out", str(tmp_path / "a")], capsys)
    assert "--checkpoint is required" in stderr
    assert evaluate.main([*data["args"], "--out", str(tmp_path / "b"), "--methods", "random,coreset",
                          *[a for setting in SETTINGS for a in ("--set", setting)], "--num_tasks", "4",
                          "--bootstrap", "10", "--conditions", "Edema"]) == 0
    results = pd.read_csv(tmp_path / "b" / "results.csv")
    assert set(results.condition) == {"Edema", "overall"} and results.diff_vs_medselect.isna().all()


def test_command_line_script(data, tmp_path):
    """``python3 evaluate.py`` as a user runs it: a bad method is one line, exit 2, no traceback."""
    result = subprocess.run([sys.executable, "evaluate.py", *data["args"], "--out", str(tmp_path / "out"),
                             "--methods", "best"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --methods: unknown method(s) best; valid: medselect, medselect-sample, medselect-sample-distinct, "
        "medselect-topk, medselect-untrained, random, kmedoids, kmedoids-fasterpam, typiclust, probcover, coreset"]


def test_a_group_gives_the_same_numbers_alone_or_with_the_other(data, tmp_path):
    """Tasks, MedSelect's seeded draws and the baselines' random choices belong to the group and the task."""
    common = ["--checkpoint", data["checkpoint"], *data["args"], "--methods", "medselect,random,coreset",
              "--num_tasks", "8", "--bootstrap", "10"]
    assert evaluate.main(common + ["--out", str(tmp_path / "both")]) == 0
    assert evaluate.main(common + ["--out", str(tmp_path / "alone"), "--conditions", "unseen", "--batch_size", "3"]) == 0
    both = pd.read_csv(tmp_path / "both" / "per_task.csv")
    alone = pd.read_csv(tmp_path / "alone" / "per_task.csv")
    both = both[both.group == "unseen"].reset_index(drop=True)
    pd.testing.assert_frame_equal(both[["task", "condition", "random_auroc", "coreset_auroc"]],
                                  alone[["task", "condition", "random_auroc", "coreset_auroc"]])
    # MedSelect's multinomial draws follow one generator per group, in task order (same batch size here).
    assert evaluate.main(common + ["--out", str(tmp_path / "alone8"), "--conditions", "unseen"]) == 0
    alone8 = pd.read_csv(tmp_path / "alone8" / "per_task.csv")
    np.testing.assert_array_equal(both["medselect_auroc"], alone8["medselect_auroc"])
