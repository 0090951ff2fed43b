"""evaluate.py --k and --pos_frac: one table with the value as a column whose numbers are those of runs at
each value alone, paired tasks across K, curves that draw the table's numbers, and bad values."""
import os

import numpy as np
import pandas as pd
import pytest
import torch

import evaluate
from evaluation import meta_test
from data.tasks import TEST_STREAM, TaskSampler, TaskShape
from data.xray_table import load_xray_table
from tests.conftest import run_main
from tests.evaluate_helpers import SETTINGS, write_checkpoint, write_test_split
from utils import plots
from utils.config import apply_overrides, default_config

METHODS = "medselect-sample,medselect-topk,medselect-sample-distinct,random,kmedoids,kmedoids-fasterpam,typiclust," \
          "probcover,coreset"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("curves")
    positive_csv, normal_csv = write_test_split(str(folder / "data"))
    return {"folder": folder, "args": ["--checkpoint", write_checkpoint(str(folder / "model_epoch1_iter30")),
                                       "--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv,
                                       "--methods", METHODS, "--num_tasks", "10", "--bootstrap", "50",
                                       "--batch_size", "4", "--seed", "2"]}


def run(data, out, *extra, monkeypatch=None):
    """evaluate.main into ``out``; returns (results.csv, per_task.csv, {file name: figure drawn})."""
    figures = {}
    if monkeypatch is not None:
        real_save = plots.save_png

        def keeping_figure(figure, path):
            figures[os.path.basename(path)] = figure
            real_save(figure, path)

        monkeypatch.setattr(plots, "save_png", keeping_figure)
    assert evaluate.main([*data["args"], "--out", str(out), *extra]) == 0
    return pd.read_csv(out / "results.csv"), pd.read_csv(out / "per_task.csv"), figures


@pytest.fixture(scope="module")
def budget(data):
    out = data["folder"] / "budget"
    with pytest.MonkeyPatch.context() as monkeypatch:
        results, per_task, figures = run(data, out, "--k", "2,4,8", monkeypatch=monkeypatch)
    return {"out": out, "results": results, "per_task": per_task, "figures": figures}


def test_task_drawing_does_not_depend_on_k(data):
    """The same seed, stream and index give the same pool and query set whatever K is."""
    table = load_xray_table(data["args"][3], data["args"][5], ["Edema", "Cardiomegaly"])
    drawn = []
    for k in (1, 4, 30):
        config = apply_overrides(default_config(), [*SETTINGS, f"K={k}"])
        drawn.append(TaskSampler(table, ["Edema", "Cardiomegaly"], TaskShape.from_config(config), 2,
                                 TEST_STREAM).draw_arrays(range(7)))
    for other in drawn[1:]:
        for a, b in zip(drawn[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("k", [2, 8])
def test_budget_rows_are_those_of_a_run_at_that_k_alone(data, budget, tmp_path, k):
    alone, alone_per_task, _ = run(data, tmp_path / "alone", "--set", f"K={k}")
    rows = budget["results"]
    assert list(rows.columns) == ["k", *meta_test.RESULT_COLUMNS]
    assert sorted(rows.k.unique()) == [2, 4, 8]
    pd.testing.assert_frame_equal(rows[rows.k == k].drop(columns="k").reset_index(drop=True), alone)
    per_task = budget["per_task"]
    pd.testing.assert_frame_equal(per_task[per_task.k == k].drop(columns="k").reset_index(drop=True), alone_per_task)


def test_every_k_selects_from_the_same_pools(data, tmp_path, monkeypatch):
    """Each method at each K is scored on the same tasks: pools and query sets recorded where AUROC is taken."""
    seen = {}
    real_auroc = meta_test.selection_auroc

    def recording_auroc(table, tasks, selection, classifier, query):
        seen.setdefault(selection.shape[1], []).append((tasks.pool_rows.clone(), tasks.query_rows.clone()))
        return real_auroc(table, tasks, selection, classifier, query)

    monkeypatch.setattr(meta_test, "selection_auroc", recording_auroc)
    run(data, tmp_path / "out", "--k", "3,6", "--methods", "medselect-topk,random,kmedoids")
    assert set(seen) == {3, 6}
    pools = {k: (torch.cat([p for p, _ in calls]), torch.cat([q for _, q in calls])) for k, calls in seen.items()}
    assert len(pools[3][0]) == 2 * 10 * 3  # two groups x 10 tasks x three methods
    assert torch.equal(pools[3][0], pools[6][0]) and torch.equal(pools[3][1], pools[6][1])


def test_budget_curve_draws_the_table(budget):
    """Lines and bands of budget_curve.png, read back from the figure, against results.csv."""
    assert (budget["out"] / "budget_curve.png").read_bytes()[:8] == PNG_MAGIC
    assert not (budget["out"] / "prevalence_curve.png").exists()
    assert not (budget["out"] / "auroc_by_condition.png").exists()
    figure = budget["figures"]["budget_curve.png"]
    rows = budget["results"]
    overall = rows[rows.condition == "overall"].drop_duplicates(["k", "group", "method"])
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == ["seen", "unseen"]
    for axis in axes:
        assert [line.get_label() for line in axis.lines] == METHODS.split(",")
        for line, band in zip(axis.lines, axis.collections):
            expected = overall[(overall.group == axis.get_title()) & (overall.method == line.get_label())]
            expected = expected.sort_values("k")
            np.testing.assert_allclose(line.get_xydata(), expected[["k", "mean_auroc"]].to_numpy())
            outline = band.get_paths()[0].vertices  # the band's outline: (x, ci_high) and (x, ci_low) points
            for _, row in expected.iterrows():
                at_k = outline[np.isclose(outline[:, 0], row.k), 1]
                assert at_k.min() == pytest.approx(row.ci_low) and at_k.max() == pytest.approx(row.ci_high)


def test_budget_report_shows_every_k(budget):
    report = (budget["out"] / "results.md").read_text()
    assert "| group | method | K=2 | K=4 | K=8 |" in report
    for k in (2, 4, 8):
        assert f"## K = {k}\n" in report
    rows = budget["results"]
    random_seen = rows[(rows.group == "seen") & (rows.condition == "overall") & (rows.method == "random")]
    cells = " | ".join(f"{r.mean_auroc:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                       for r in random_seen.drop_duplicates("k").sort_values("k").itertuples())
    assert f"| seen | random | {cells} |" in report


def test_prevalence_rows_are_those_of_a_run_at_that_fraction_alone(data, tmp_path, monkeypatch):
    pools = {}
    real_auroc = meta_test.selection_auroc

    def recording_auroc(table, tasks, selection, classifier, query):
        pools.setdefault(tasks.pool_labels.shape, []).append((tasks.pool_labels.sum(1), tasks.query_labels.sum(1)))
        return real_auroc(table, tasks, selection, classifier, query)

    monkeypatch.setattr(meta_test, "selection_auroc", recording_auroc)
    results, per_task, figures = run(data, tmp_path / "curve", "--pos_frac", "0.5,0.1", monkeypatch=monkeypatch)
    # pool 30: 15 and 3 positives; the query set stays 5 of 10 at every fraction
    positives = sorted({int(p) for calls in pools.values() for pool, _ in calls for p in pool})
    assert positives == [3, 15]
    assert {int(q) for calls in pools.values() for _, query in calls for q in query} == {5}
    assert list(results.columns) == ["pos_frac", *meta_test.RESULT_COLUMNS]
    alone, alone_per_task, _ = run(data, tmp_path / "alone", "--set", "UNLABELED_POS_FRAC=0.1")
    pd.testing.assert_frame_equal(results[results.pos_frac == 0.1].drop(columns="pos_frac").reset_index(drop=True),
                                  alone)
    pd.testing.assert_frame_equal(per_task[per_task.pos_frac == 0.1].drop(columns="pos_frac").reset_index(drop=True),
                                  alone_per_task)
    # The same seed and task index: task i is about the same condition at every fraction.
    conditions = per_task.pivot_table(index=["group", "task"], columns="pos_frac", values="condition", aggfunc="first")
    assert (conditions[0.5] == conditions[0.1]).all()
    figure = figures["prevalence_curve.png"]
    seen = figure.axes[0]
    random_line = [line for line in seen.lines if line.get_label() == "random"][0]
    expected = results[(results.group == "seen") & (results.condition == "overall") & (results.method == "random")]
    expected = expected.drop_duplicates("pos_frac").sort_values("pos_frac")
    np.testing.assert_allclose(random_line.get_xydata(), expected[["pos_frac", "mean_auroc"]].to_numpy())
    assert (tmp_path / "curve" / "prevalence_curve.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("extra, message", [
    (["--k", "2,x"], "--k: expected comma-separated int values, e.g. 5,10,20,50; got 'x'"),
    (["--k", "0,4"], "--k 0: K must be at least 1, got 0"),
    (["--k", "4,40"], "--k 40: K=40 is larger than UNLABELED_POOL_SIZE=30"),
    (["--pos_frac", "0.5,1.5"], "--pos_frac 1.5: UNLABELED_POS_FRAC must be between 0 and 1, got 1.5"),
    (["--k", "2,4", "--pos_frac", "0.5"], "--k and --pos_frac: give one of them"),
    (["--k", "2,4", "--analysis"], "--analysis compares the selections of one evaluation; run it without --k"),
    (["--pos_frac", "0.5,0.9"], "'Consolidation' has 30 positive X-ray(s) (1 or -1), but one task needs 32"),
])
def test_bad_curve_values_are_one_line_and_write_nothing(data, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code, _, err = run_main(evaluate.main, [*data["args"], "--out", out, *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()
