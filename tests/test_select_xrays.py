"""select_xrays.py: the chosen rows are real pool rows, the top K by a score recomputed independently."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import select_xrays
from models.baselines import select_baseline
from tests.medselect_helpers import (DIM, TRAINED_K, memoryless_selector, numpy_logits, softmax, write_checkpoint,
                                     write_pool)
from tests.conftest import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, capsys):
    """select_xrays.py in-process: (exit code, stderr)."""
    code, _, err = run_main(select_xrays.main, argv, capsys)
    return code, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and not last.endswith(":"), err
    for fragment in fragments:
        assert fragment in last, last


@pytest.fixture
def pool(tmp_path):
    return write_pool(tmp_path / "data")  # 70 X-rays


@pytest.fixture
def selector():
    return memoryless_selector(DIM)


def check_rows_come_from_pool(chosen, frame):
    """Every chosen row is a distinct pool row with all its original values."""
    assert chosen["Path"].is_unique
    assert list(chosen.columns) == list(frame.columns) + ["score", "rank"]
    original = frame.set_index("Path").loc[chosen["Path"]].reset_index()
    pd.testing.assert_frame_equal(chosen[frame.columns], original[frame.columns])


def test_topk_writes_the_k_best_pool_rows_in_rank_order(tmp_path, pool, selector, capsys):
    csv_path, frame, embeddings = pool
    checkpoint = write_checkpoint(tmp_path / "sel.pt", selector, {"UNLABELED_POOL_SIZE": 100})  # pool fits
    out = tmp_path / "to_label.csv"
    code, err = run(["--checkpoint", checkpoint, "--pool_csv", csv_path, "-k", 7, "--selection", "topk",
                     "--out", out], capsys)
    assert code == 0, err
    chosen = pd.read_csv(out)
    check_rows_come_from_pool(chosen, frame)
    logits = numpy_logits(selector.state_dict(), embeddings)
    best = np.argsort(-logits)[:7]
    assert chosen["Path"].tolist() == frame["Path"].iloc[best].tolist()
    np.testing.assert_allclose(chosen["score"], softmax(logits)[best], rtol=1e-4)
    assert chosen["rank"].tolist() == list(range(1, 8))


@pytest.mark.parametrize("strategy", ["chunks", "whole"])
def test_pool_larger_than_the_trained_pool(tmp_path, pool, selector, strategy, capsys):
    csv_path, frame, embeddings = pool  # 70 X-rays; the checkpoint was trained on pools of 20
    checkpoint = write_checkpoint(tmp_path / "sel.pt", selector)
    out = tmp_path / "to_label.csv"
    code, err = run(["--checkpoint", checkpoint, "--pool_csv", csv_path, "--large_pool", strategy,
                     "--selection", "topk", "--out", out], capsys)
    assert code == 0, err
    chosen = pd.read_csv(out)
    assert len(chosen) == TRAINED_K  # the checkpoint's K by default
    check_rows_come_from_pool(chosen, frame)
    assert (np.diff(chosen["score"]) <= 0).all() and chosen["rank"].tolist() == list(range(1, TRAINED_K + 1))
    logits = numpy_logits(selector.state_dict(), embeddings)
    if strategy == "whole":  # one sequence: the global top K
        assert chosen["Path"].tolist() == frame["Path"].iloc[np.argsort(-logits)[:TRAINED_K]].tolist()
    else:  # 4 chunks of 17-18: the picks are spread over the pool, not the global top K only
        rows = frame.reset_index().set_index("Path").loc[chosen["Path"], "index"].to_numpy()
        assert not set(rows) <= set(np.argsort(-logits)[:2])


def test_exclude_skips_labelled_xrays(tmp_path, pool, selector, capsys):
    csv_path, frame, embeddings = pool
    checkpoint = write_checkpoint(tmp_path / "sel.pt", selector, {"UNLABELED_POOL_SIZE": 100})
    ranking = np.argsort(-numpy_logits(selector.state_dict(), embeddings))
    labelled = pd.DataFrame({"Path": list(frame["Path"].iloc[ranking[:3]]) + ["not/in/the/pool.jpg"]})
    labelled.to_csv(tmp_path / "labeled.csv", index=False)
    out = tmp_path / "to_label.csv"
    code, err = run(["--checkpoint", checkpoint, "--pool_csv", csv_path, "-k", 4, "--selection", "topk", "--exclude",
                     tmp_path / "labeled.csv", "--out", out], capsys)
    assert code == 0, err
    chosen = pd.read_csv(out)
    assert chosen["Path"].tolist() == frame["Path"].iloc[ranking[3:7]].tolist()
    assert "excluding 3 already-labelled" in err and "1 of its Paths are not in the pool" in err


def test_sample_draws_k_distinct_rows_reproducibly(tmp_path, pool, selector, capsys):
    csv_path, frame, _ = pool
    checkpoint = write_checkpoint(tmp_path / "sel.pt", selector)
    selections = []
    for seed in (0, 0, 1, 2, 3):
        out = tmp_path / f"sample{len(selections)}.csv"
        code, err = run(["--checkpoint", checkpoint, "--pool_csv", csv_path, "--selection", "sample", "-k", 10,
                         "--seed", seed, "--out", out], capsys)
        assert code == 0, err
        chosen = pd.read_csv(out)
        assert len(chosen) == 10
        check_rows_come_from_pool(chosen, frame)
        selections.append(chosen["Path"].tolist())
    assert selections[0] == selections[1]  # same seed, same draw
    assert len({tuple(s) for s in selections}) > 2  # other seeds, other draws


def test_original_checkpoint_uses_the_defaults_of_constants(tmp_path, pool, selector, capsys):
    csv_path, frame, embeddings = pool
    checkpoint = write_checkpoint(tmp_path / "original.pt", selector, original_format=True)  # K=20, pools of 1000
    out = tmp_path / "to_label.csv"
    code, err = run(["--checkpoint", checkpoint, "--pool_csv", csv_path, "--selection", "topk", "--out", out], capsys)
    assert code == 0, err
    best = np.argsort(-numpy_logits(selector.state_dict(), embeddings))[:20]
    assert pd.read_csv(out)["Path"].tolist() == frame["Path"].iloc[best].tolist()


def test_asl_checkpoint_reads_age_sex_laterality(tmp_path, pool, capsys):
    csv_path, frame, embeddings = pool
    selector = memoryless_selector(DIM + 3)
    checkpoint = write_checkpoint(tmp_path / "asl.pt", selector, {"USE_ASL": True, "UNLABELED_POOL_SIZE": 100})
    asl = np.stack([(frame["Sex"] == "Female").astype(float), (frame["Age"] - 60.33) / 17.92,
                    (frame["Frontal/Lateral"] == "Frontal").astype(float)], axis=1)
    out = tmp_path / "to_label.csv"
    code, err = run(["--checkpoint", checkpoint, "--pool_csv", csv_path, "-k", 6, "--selection", "topk",
                     "--out", out], capsys)
    assert code == 0, err
    best = np.argsort(-numpy_logits(selector.state_dict(), np.concatenate([embeddings, asl], axis=1)))[:6]
    assert pd.read_csv(out)["Path"].tolist() == frame["Path"].iloc[best].tolist()


@pytest.mark.parametrize("method", ["random", "kmedoids", "kmedoids-fasterpam", "coreset"])
def test_baselines_choose_among_the_rows_not_excluded(tmp_path, pool, method, capsys):
    csv_path, frame, embeddings = pool
    frame.iloc[:10][["Path"]].to_csv(tmp_path / "labeled.csv", index=False)
    out = tmp_path / "to_label.csv"
    code, err = run(["--method", method, "--pool_csv", csv_path, "-k", 6, "--seed", 3, "--exclude",
                     tmp_path / "labeled.csv", "--out", out], capsys)
    assert code == 0, err
    chosen = pd.read_csv(out)
    check_rows_come_from_pool(chosen, frame)
    expected = select_baseline(method, torch.from_numpy(embeddings[10:])[None], 6, 3)[0].numpy() + 10
    assert chosen["Path"].tolist() == frame["Path"].iloc[expected].tolist()
    assert chosen["score"].isna().all()


def _write_hdf5(csv_path, embeddings):
    with h5py.File(os.path.splitext(csv_path)[0] + ".hdf5", "w") as f:
        f.create_dataset("dataset", data=embeddings)


BAD_INPUTS = {
    "missing hdf5": (lambda d: os.remove(d["hdf5"]), [],
                     lambda d: [f"python3 xray_to_hdf5.py -d {d['csv']} -o {d['hdf5']} -c moco.pth.tar"]),
    "missing csv": (lambda d: os.remove(d["csv"]), [], lambda d: [d["csv"], "not found"]),
    "no Path column": (lambda d: d["frame"].drop(columns="Path").to_csv(d["csv"], index=False), [],
                       lambda d: ["'Path'"]),
    "hdf5 too short": (lambda d: _write_hdf5(d["csv"], d["embeddings"][:-1]), [], lambda d: ["70 rows", "69"]),
    "repeated Path": (lambda d: d["frame"].assign(Path=["same.jpg"] * 70).to_csv(d["csv"], index=False), [],
                      lambda d: ["more than once", "same.jpg"]),
    "score column taken": (lambda d: d["frame"].assign(score=1).to_csv(d["csv"], index=False), [],
                           lambda d: ["'score'"]),
    "k too large": (None, ["-k", 71], lambda d: ["K=71", "only 70"]),
    "k zero": (None, ["-k", 0], lambda d: ["at least 1"]),
    "no checkpoint": (None, ["--checkpoint", None], lambda d: ["--checkpoint"]),
    "not a checkpoint": (lambda d: open(d["ckpt"], "w").write("hello"), [], lambda d: [d["ckpt"], "checkpoint"]),
    "wrong input size": (lambda d: write_checkpoint(d["ckpt"], memoryless_selector(DIM + 1)), [],
                         lambda d: [f"size {DIM + 1}", f"{DIM}"]),
    "asl columns missing": (lambda d: (write_checkpoint(d["ckpt"], memoryless_selector(DIM + 3), {"USE_ASL": True}),
                                       d["frame"].drop(columns="Sex").to_csv(d["csv"], index=False)), [],
                            lambda d: ["USE_ASL", "'Sex'"]),
    "out is the pool": (None, ["--out", "POOL"], lambda d: ["pool input"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_keeps_the_old_output(tmp_path, pool, selector, case, capsys):
    csv_path, frame, embeddings = pool
    paths = {"csv": csv_path, "hdf5": os.path.splitext(csv_path)[0] + ".hdf5", "frame": frame,
             "embeddings": embeddings, "ckpt": str(tmp_path / "sel.pt")}
    write_checkpoint(paths["ckpt"], selector)
    corrupt, extra, fragments = BAD_INPUTS[case]
    if corrupt is not None:
        corrupt(paths)
    out = tmp_path / "to_label.csv"
    out.write_text("an earlier result\n")
    args = {"--checkpoint": paths["ckpt"], "--pool_csv": csv_path, "--out": out}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = csv_path if value == "POOL" else value
    argv = [part for flag, value in args.items() if value is not None for part in (flag, value)] + ["--overwrite"]
    pool_before = open(csv_path).read() if os.path.exists(csv_path) else None
    code, err = run(argv, capsys)
    assert_one_line_error(code, err, *fragments(paths))
    assert out.read_text() == "an earlier result\n"
    if pool_before is not None:
        assert open(csv_path).read() == pool_before
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_command_line_exit_code_and_message(tmp_path, pool):
    csv_path, _, _ = pool
    os.remove(os.path.splitext(csv_path)[0] + ".hdf5")
    result = subprocess.run([sys.executable, "select_xrays.py", "--method", "random", "--pool_csv", csv_path,
                             "--out", str(tmp_path / "out.csv")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {os.path.splitext(csv_path)[0]}.hdf5: embeddings of {csv_path} not found; make them first with: "
        f"python3 xray_to_hdf5.py -d {csv_path} -o {os.path.splitext(csv_path)[0]}.hdf5 -c moco.pth.tar"]
