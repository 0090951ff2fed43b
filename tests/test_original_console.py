"""run_selector.py prints the original code's console lines on stdout, where users' scripts read them.

The regular expressions below are built from the original's format strings (its run_selector.py):
    print('epoch %d, iter %d, avg_reward %.3f, time_elapsed %.3f sec' % (epoch+1, i+1,
          report_reward/report_examples, time.time() - begin_time))
    print("Meta-val average AUROC: %.4f" % auroc)
    print("saving new best network!\\n")
Our own fields may follow the original's text, after " | ".
"""
import contextlib
import csv
import io
import os
import re

import pytest

import run_selector
from tests.conftest import TINY_SETTINGS, write_tiny_split

EXTRA = r"(?: \| .*)?$"  # nothing, or our own fields after the original's text
PROGRESS = re.compile(r"^epoch (\d+), iter (\d+), avg_reward (-?\d+\.\d{3}), time_elapsed (\d+\.\d{3}) sec" + EXTRA)
META_VAL = re.compile(r"^Meta-val average AUROC: (-?\d+\.\d{4})" + EXTRA)
SAVING = re.compile(r"^saving new best network!" + EXTRA)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One epoch of 40 steps: progress lines at iters 5 ... 40, meta-validations at iters 30 and 40."""
    folder = tmp_path_factory.mktemp("console")
    train_pos, train_norm = write_tiny_split(folder / "data", "train", seed=1)
    val_pos, val_norm = write_tiny_split(folder / "data", "val", seed=2)
    settings = [*TINY_SETTINGS, "NUM_META_TRAIN_TASKS=160", "NUM_EPOCHS=1"]
    out = folder / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run_selector.main(["--train_pos_csv", train_pos, "--train_norm_csv", train_norm, "--val_pos_csv",
                                  val_pos, "--val_norm_csv", val_norm, "--out", str(out),
                                  *[a for s in settings for a in ("--set", s)]])
    assert code == 0
    with open(out / "metrics.csv") as f:
        metrics = list(csv.DictReader(f))
    with open(out / "train.log") as f:
        train_log = f.read()
    return {"out": out, "stdout": stdout.getvalue().splitlines(), "stderr": stderr.getvalue(),
            "metrics": metrics, "train_log": train_log}


def test_stdout_holds_the_original_lines_in_the_original_order(run):
    lines = run["stdout"]
    kinds = []
    for line in lines:
        kind = [name for name, pattern in (("progress", PROGRESS), ("meta-val", META_VAL), ("saving", SAVING))
                if pattern.match(line)]
        assert kind, f"not one of the original's lines: {line!r}"
        kinds.append(kind[0])
    progress = [PROGRESS.match(line).groups() for line in lines if PROGRESS.match(line)]
    assert [(int(e), int(i)) for e, i, _, _ in progress] == [(1, i) for i in range(5, 45, 5)]
    # Every 5 steps a progress line; after iters 30 and 40 a meta-validation, each followed by its save
    # when it is the best so far (the first always is), as the original prints them.
    saved = [bool(row["saved"]) for row in run["metrics"]]
    expected = ["progress"] * 6 + ["meta-val"] + ["saving"] * saved[0] + ["progress"] * 2 + ["meta-val"] + \
        ["saving"] * saved[1]
    assert kinds == expected
    times = [float(t) for _, _, _, t in progress]
    assert times == sorted(times)


def test_the_numbers_are_those_of_the_run(run):
    """avg_reward is the mean query AUROC of the steps since the last line (the original's meaning), and the
    meta-val AUROC is metrics.csv's; the save line names the checkpoint that was written."""
    lines, metrics = run["stdout"], run["metrics"]
    avg_rewards = [float(PROGRESS.match(line).group(3)) for line in lines if PROGRESS.match(line)]
    # metrics.csv's train_auroc averages the 30 (then 10) steps since the previous validation: 6 (then 2)
    # progress windows of 5 steps each, printed to 3 decimals.
    assert sum(avg_rewards[:6]) / 6 == pytest.approx(float(metrics[0]["train_auroc"]), abs=6e-4)
    assert sum(avg_rewards[6:]) / 2 == pytest.approx(float(metrics[1]["train_auroc"]), abs=6e-4)
    assert sum(avg_rewards[:6]) / 6 != pytest.approx(float(metrics[0]["train_reward"]), abs=0.05)  # not the reward
    meta_val = [META_VAL.match(line).group(1) for line in lines if META_VAL.match(line)]
    assert meta_val == [f"{float(row['val_auroc']):.4f}" for row in metrics]
    # Our fields after the original's text: the topk and random-selection AUROC of the same validation.
    ours = [re.search(r"topk (\d\.\d{4}), random (\d\.\d{4})", line).groups() for line in lines
            if META_VAL.match(line)]
    assert ours == [(f"{float(row['val_topk_auroc']):.4f}", f"{float(row['val_random_auroc']):.4f}")
                    for row in metrics]
    saving = [line for line in lines if SAVING.match(line)]
    assert saving[0].endswith(os.path.join(str(run["out"]), "model_epoch1_iter30"))
    assert os.path.isfile(os.path.join(run["out"], "model_epoch1_iter30"))


def test_the_lines_also_go_to_train_log_but_not_twice_to_the_console(run):
    assert "Meta-val average AUROC" not in run["stderr"] and "avg_reward" not in run["stderr"]
    for line in run["stdout"]:
        assert line in run["train_log"]
