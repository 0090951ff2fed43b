"""--overwrite keeps the earlier result until the new one is whole (utils/staging.py): run_selector.py replaces an
earlier run only at the new run's first saved checkpoint; a new run that fails before that leaves it as it was."""
import csv
import os

import pytest

import run_selector
from engine import NonFiniteLoss
from tests.conftest import TINY_SETTINGS, run_main, write_tiny_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("staging_split")
    train_pos, train_norm = write_tiny_split(folder, "train", seed=1)
    val_pos, val_norm = write_tiny_split(folder, "val", seed=2)
    return ["--train_pos_csv", train_pos, "--train_norm_csv", train_norm, "--val_pos_csv", val_pos,
            "--val_norm_csv", val_norm]


def train(split, out, capsys, *extra, seed=0):
    return run_main(run_selector.main, [*split, "--out", out, "--seed", seed,
                                        *[a for s in [*TINY_SETTINGS, "NUM_META_TRAIN_TASKS=16", "NUM_EPOCHS=1"]
                                          for a in ("--set", s)], *extra], capsys)


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_a_failed_overwrite_keeps_the_earlier_run(split, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    code, _, err = train(split, out, capsys)
    assert code == 0, err
    before = snapshot(out)
    assert {"best.pt", "last.pt", "metrics.csv", "config.json", "model_epoch1_iter4"} <= set(before)
    real_step, steps = run_selector.train_step, []

    def fails_at_step_2(*args, **kwargs):
        steps.append(1)
        if len(steps) == 2:
            raise NonFiniteLoss("loss is nan")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(run_selector, "train_step", fails_at_step_2)
    code, _, err = train(split, out, capsys, "--overwrite", seed=1)
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: training stopped at epoch 1 iter 2"), err
    assert line.endswith(f"the last good state is not saved yet; the earlier run in {out} is kept as it was"), line
    assert snapshot(out) == before  # every file of the earlier run as it was, no staging folder left


def test_overwrite_replaces_the_earlier_run_at_its_first_checkpoint(split, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    code, _, err = train(split, out, capsys)
    assert code == 0, err
    os.mkdir(out / ".staging-0000dead")  # left by a run killed before its first checkpoint
    (out / ".staging-0000dead" / "last.pt").write_bytes(b"half")
    seen = {}
    real_publish = run_selector.publish

    def publish_and_look(staging, folder, earlier):
        seen["before"] = sorted(os.listdir(folder))  # the earlier run is still whole when the new one publishes
        seen["staged"] = sorted(os.listdir(staging))
        real_publish(staging, folder, earlier)

    monkeypatch.setattr(run_selector, "publish", publish_and_look)
    code, _, err = train(split, out, capsys, "--overwrite", seed=1)
    assert code == 0, err
    assert {"best.pt", "last.pt", "model_epoch1_iter4", "metrics.csv"} <= set(seen["before"])
    assert {"best.pt", "last.pt", "model_epoch1_iter4", "metrics.csv", "config.json", "train.log"} <= \
        set(seen["staged"])
    assert sorted(os.listdir(out)) == seen["staged"]  # the new run's files only; the stale staging folder removed
    with open(out / "config.json") as f:
        assert '"seed": 1' in f.read()
    with open(out / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 1
    assert "the new run replaced the earlier one" in (out / "train.log").read_text()
    assert "meta-training on cpu" in (out / "train.log").read_text()  # the log from the start, in its place
