"""Shared fixtures: tiny generated datasets in the real CSV/HDF5 formats (never real X-rays), and the device the
tests run on.

MEDSELECT_TEST_DEVICE (default cpu) chooses it: with cpu, a machine's GPU is hidden from every test (commands
run without --device take the CPU, also in subprocesses); with cuda, commands run without --device take the
GPU, and tests that build tensors themselves put them on the ``test_device`` fixture's device.
"""
import os
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from data.synthetic import synthetic_centres, synthetic_split, write_pair  # noqa: E402

TEST_DEVICE = os.environ.get("MEDSELECT_TEST_DEVICE", "cpu")


def pytest_configure(config):
    if TEST_DEVICE not in ("cpu", "cuda"):
        pytest.exit(f"MEDSELECT_TEST_DEVICE={TEST_DEVICE}: use cpu (the default) or cuda", returncode=4)
    if TEST_DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.exit("MEDSELECT_TEST_DEVICE=cuda, but CUDA is not available on this machine", returncode=4)


@pytest.fixture(autouse=True)
def _only_the_test_device(monkeypatch):
    """With MEDSELECT_TEST_DEVICE=cpu no test picks a GPU by itself: torch reports none, here and in the
    commands a test starts as subprocesses."""
    if TEST_DEVICE == "cpu":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def test_device():
    """The torch.device the device-relevant tests run on (MEDSELECT_TEST_DEVICE)."""
    return torch.device(TEST_DEVICE)


# A task shape small enough for CPU tests: pool 20 (10 positive), query 10 (5 positive).
TINY_SETTINGS = ["UNLABELED_POOL_SIZE=20", "QUERY_SET_SIZE=10", "K=4", "BATCH_SIZE=4",
                 "NUM_META_TRAIN_TASKS=64", "NUM_META_TEST_TASKS=12", "NUM_EPOCHS=2"]


def write_tiny_split(folder, name, num_positive=160, num_normal=60, dim=8, seed=0):
    """Write {name}_pos.csv/.hdf5 and {name}_norm.csv/.hdf5; return the two CSV paths."""
    rng = np.random.default_rng(seed)
    pos, pos_emb, norm, norm_emb = synthetic_split(num_positive, num_normal, dim, rng,
                                                   centres=synthetic_centres(dim, np.random.default_rng(99)))
    os.makedirs(folder, exist_ok=True)
    pos_csv, norm_csv = os.path.join(folder, f"{name}_pos.csv"), os.path.join(folder, f"{name}_norm.csv")
    write_pair(pos, pos_emb, pos_csv)
    write_pair(norm, norm_emb, norm_csv)
    return pos_csv, norm_csv


@pytest.fixture
def tiny_data(tmp_path):
    """Train and val CSV/HDF5 pairs; returns the run_selector.py data arguments as a list."""
    train_pos, train_norm = write_tiny_split(tmp_path / "data", "train", seed=1)
    val_pos, val_norm = write_tiny_split(tmp_path / "data", "val", seed=2)
    return ["--train_pos_csv", train_pos, "--train_norm_csv", train_norm,
            "--val_pos_csv", val_pos, "--val_norm_csv", val_norm]


def run_main(main, argv, capsys):
    """A command line's ``main`` run in-process as its ``__main__`` runs it: (exit code, stdout, stderr)."""
    from utils.errors import run_cli
    try:
        code = run_cli(main, [str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
