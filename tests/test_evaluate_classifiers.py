"""evaluate.py --classifiers: every selection scored by every classifier on the same tasks, differences to cosine
recomputed from per_task.csv, cosine's numbers those of a plain run, and one-class tasks counted once per method."""
import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch

import evaluate
from evaluation.meta_test import evaluate_methods, meta_test_tasks
from data.tasks import TaskShape
from data.xray_table import load_xray_table
from tests.evaluate_helpers import SETTINGS, write_checkpoint, write_test_split
from tests.test_evaluate import run_evaluate
from utils.config import apply_overrides, default_config
from utils.logs import LOGGER_NAME
from utils.seeding import EVALUATION_BOOTSTRAP, derived_seed

METHODS = ["medselect-sample", "random", "kmedoids"]
OTHERS = ["logistic", "label-spreading", "self-training"]
BOOTSTRAP = 200


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate_classifiers")
    positive_csv, normal_csv = write_test_split(str(folder / "data"))
    checkpoint = write_checkpoint(str(folder / "model_epoch1_iter30"))
    return {"folder": folder, "args": ["--checkpoint", checkpoint, "--test_pos_csv", positive_csv,
                                       "--test_norm_csv", normal_csv, "--methods", ",".join(METHODS),
                                       "--num_tasks", "8", "--bootstrap", str(BOOTSTRAP), "--seed", "3"]}


def run(data, name, *extra):
    out = str(data["folder"] / name)
    assert evaluate.main([*data["args"], "--out", out, *extra]) == 0
    with open(os.path.join(out, "results.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "results.md")) as f:
        report = f.read()
    return {"out": out, "summary": summary, "report": report, "per_task": pd.read_csv(os.path.join(out, "per_task.csv")),
            "results": pd.read_csv(os.path.join(out, "results.csv"))}


@pytest.fixture(scope="module")
def both_runs(data):
    logger = logging.getLogger(LOGGER_NAME)
    records = []

    def keep(record):  # a filter, not a handler: setup_logging() replaces the handlers
        records.append(record)
        return True
    logger.addFilter(keep)
    try:
        compared = run(data, "compared", "--classifiers", ",".join(OTHERS))
    finally:
        logger.removeFilter(keep)
    compared["log"] = [r.getMessage() for r in records]
    return compared, run(data, "cosine_only")


def test_every_classifier_is_recorded_and_reported(both_runs):
    compared, plain = both_runs
    assert compared["summary"]["classifiers"] == ["cosine", *OTHERS]
    assert plain["summary"]["classifiers"] == ["cosine"] and plain["summary"]["classifier_differences"] is None
    assert set(compared["results"]["classifier"]) == {"cosine", *OTHERS}
    assert "classifier" not in plain["results"].columns  # without --classifiers, today's columns
    for name in ["cosine", *OTHERS]:
        assert f"## Classifier: {name}" in compared["report"]
    assert "## Classifiers compared" in compared["report"] and "| logistic − cosine |" in compared["report"]
    assert "## Classifier" not in plain["report"]
    assert set(compared["summary"]["classifier_seconds_per_task"]) == {"cosine", *OTHERS}


def test_cosine_numbers_equal_those_of_a_plain_run(both_runs):
    compared, plain = both_runs
    assert {f"{m}_auroc" for m in METHODS} <= set(plain["per_task"].columns)
    pd.testing.assert_frame_equal(compared["per_task"][plain["per_task"].columns], plain["per_task"])
    cosine = compared["results"][compared["results"]["classifier"] == "cosine"].drop(columns="classifier")
    pd.testing.assert_frame_equal(cosine.reset_index(drop=True), plain["results"])


def test_differences_recomputed_from_per_task_scores(both_runs):
    compared = both_runs[0]
    per_task = compared["per_task"]
    differences = pd.read_csv(os.path.join(compared["out"], "classifier_differences.csv"))
    rng_seed = derived_seed(3, EVALUATION_BOOTSTRAP)
    for group, condition, chosen in [("all", "overall", per_task.group.notna()), ("unseen", "overall",
                                                                                  per_task.group == "unseen")]:
        for method in METHODS:
            for name in OTHERS:
                d = (per_task.loc[chosen, f"{method}_{name}_auroc"] - per_task.loc[chosen, f"{method}_auroc"]).to_numpy()
                draws = np.random.default_rng(rng_seed).integers(0, len(d), size=(BOOTSTRAP, len(d)))
                low, high = np.percentile(d[draws].mean(1), [2.5, 97.5])
                row = differences[(differences.group == group) & (differences.condition == condition)
                                  & (differences.method == method) & (differences.classifier == name)].iloc[0]
                assert row["diff_vs_cosine"] == pytest.approx(d.mean(), abs=1e-12)
                assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((low, high), abs=1e-12)
                assert row["num_tasks"] == len(d)


def test_one_class_tasks_counted_over_all_tasks_and_reported_once_per_method(data, both_runs):
    """K = 4 from 20%-positive pools: random often draws no positive. The count of each method, over all 16 tasks,
    is the count of its selections (recomputed from their labels), logged once, after the results."""
    compared = both_runs[0]
    config = apply_overrides(default_config(), SETTINGS)
    args = data["args"]
    table = load_xray_table(args[3], args[5], list(config["ALL_COND"]))
    groups = {"seen": list(config["NON_HOLD_OUT"]), "unseen": list(config["HOLD_OUT"])}
    task_sets = meta_test_tasks(table, groups, TaskShape.from_config(config), 3, 8)
    outcome = evaluate_methods(["random", "kmedoids"], task_sets, table, {}, [4], 8, "sample", 3,
                               torch.device("cpu"), keep_selections=("random", "kmedoids"))[4]
    for method in ("random", "kmedoids"):
        labels = np.concatenate([outcome["selection"][g][method]["labels"] for g in task_sets])  # (16, 4)
        no_positive, no_negative = int((labels.max(1) == 0).sum()), int((labels.min(1) == 1).sum())
        assert compared["summary"]["one_class_tasks"][method] == [no_positive, no_negative]
        lines = [line for line in compared["log"] if line.startswith(f"{method}: of 16 task(s)")]
        if no_positive or no_negative:
            assert lines == [f"{method}: of 16 task(s), {no_positive} had no selected positive and {no_negative} no "
                             "selected negative; every classifier scores those as the paper's does (the missing "
                             "class's mean similarity counts as 0)"]
        else:
            assert not lines
    assert compared["summary"]["one_class_tasks"]["random"][0] > 0  # the premise: some task had no positive
    assert compared["log"].index(next(line for line in compared["log"] if line.startswith("random: of"))) > \
        compared["log"].index(next(line for line in compared["log"] if line.startswith("results in")))


@pytest.mark.parametrize("extra, message", [
    (["--classifiers", "logistic,svm"], "--classifiers: unknown classifier(s) svm; valid: cosine, logistic, "
                                        "label-spreading, self-training"),
    (["--classifiers", "logistic", "--k", "3,4"], "--classifiers compares classifiers at one K and prevalence"),
])
def test_bad_classifiers_are_refused(data, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert message in run_evaluate([*data["args"], "--out", str(out), *extra], capsys)
    assert not out.exists()
