"""Outputs of evaluate.py, xray_to_hdf5.py, select_xrays.py and classify_xrays.py: locked while written,
readable by colleagues, never replaced without --overwrite, refused before any work when unwritable;
and HDF5 files that hold no embeddings, or CSV rows without an image, are one line."""
import os
import stat

import h5py
import numpy as np
import pandas as pd
import pytest

import classify_xrays
import evaluate
import run_selector
import select_xrays
import xray_to_hdf5
from tests.conftest import run_main, write_tiny_split
from tests.embedding_fixtures import read_hdf5, write_checkpoint, write_csv, write_images
from tests.evaluate_helpers import SETTINGS, write_test_split
from tests.output_helpers import lock_held_by_other_process, plain_open_mode, umask
from tests.medselect_helpers import write_pool
from utils.run_lock import LockHeld


def one_line_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def snapshot(folder):
    return {name: open(os.path.join(folder, name), "rb").read()
            for name in sorted(os.listdir(folder)) if os.path.isfile(os.path.join(folder, name))}


def modes(folder):
    return {name: stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) for name in os.listdir(folder)}


# --- evaluate.py ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    positive_csv, normal_csv = write_test_split(str(tmp_path_factory.mktemp("evaluate") / "data"))
    return ["--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv, "--methods", "random",
            "--num_tasks", "4", "--bootstrap", "10", *[a for s in SETTINGS for a in ("--set", s)]]


def test_evaluate_results_are_readable_and_the_folder_locked_meanwhile(test_split, tmp_path, monkeypatch, capsys):
    out = tmp_path / "results"
    real, seen = evaluate.evaluate_methods, {}

    def evaluate_and_look(*args, **kwargs):
        seen["files"] = sorted(os.listdir(out))
        with pytest.raises(LockHeld):  # a second evaluation into the same folder now
            evaluate.check_output_folder(str(out), overwrite=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_methods", evaluate_and_look)
    with umask(0o022):
        code, _, err = run_main(evaluate.main, [*test_split, "--out", out], capsys)
    assert code == 0, err
    assert seen["files"] == [".lock"]
    files = modes(out)
    assert ".lock" not in files and {"results.csv", "results.json", "results.md", "per_task.csv"} <= set(files)
    assert files == dict.fromkeys(files, plain_open_mode(tmp_path, 0o022))


def test_evaluate_refuses_a_folder_in_use_and_an_out_under_a_file(test_split, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    with lock_held_by_other_process(out / ".lock") as pid:
        before = snapshot(out)
        line = one_line_error(*run_main(evaluate.main, [*test_split, "--out", out, "--overwrite"], capsys)[::2])
        assert line.startswith(f"error: --out {out}: in use by process {pid} on ")
        assert snapshot(out) == before

    (tmp_path / "a_file").write_text("x")
    line = one_line_error(*run_main(evaluate.main, [*test_split, "--out", tmp_path / "a_file" / "r"], capsys)[::2])
    assert line == f"error: --out {tmp_path / 'a_file' / 'r'}: cannot write there ({tmp_path / 'a_file'} is a file, " \
                   "not a folder)"


def test_evaluate_interrupted_leaves_no_folder_behind(test_split, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "evaluate_methods", interrupted)
    code, _, _ = run_main(evaluate.main, [*test_split, "--out", tmp_path / "results"], capsys)
    assert code == 130 and os.listdir(tmp_path) == []


# --- select_xrays.py / classify_xrays.py ------------------------------------------------------------------

@pytest.fixture
def pool(tmp_path):
    csv_path, frame, _ = write_pool(tmp_path / "data")
    labeled = tmp_path / "labeled.csv"
    frame.iloc[:6][["Path"]].assign(Edema=[1, 0, 1, 0, 1, 0]).to_csv(labeled, index=False)
    return {"csv": csv_path, "labeled": str(labeled)}


def select_args(pool, out):
    return ["--method", "random", "--pool_csv", pool["csv"], "-k", 3, "--out", out]


def classify_args(pool, out):
    return ["--labeled", pool["labeled"], "--label_column", "Edema", "--unlabeled", pool["csv"], "--out", out]


COMMANDS = {"select": (select_xrays, select_args), "classify": (classify_xrays, classify_args)}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_existing_out_is_kept_without_overwrite(pool, tmp_path, command, capsys):
    module, args = COMMANDS[command]
    out = tmp_path / "to_label.csv"
    out.write_text("Path,Edema\nfirst.jpg,1\n")  # labels a radiologist has started entering
    line = one_line_error(*run_main(module.main, args(pool, out), capsys)[::2])
    assert line == f"error: --out {out}: already exists; pass --overwrite to replace it, or choose another name"
    assert out.read_text() == "Path,Edema\nfirst.jpg,1\n"
    with umask(0o022):
        code, _, err = run_main(module.main, [*args(pool, out), "--overwrite"], capsys)
    assert code == 0, err
    assert "Path" in pd.read_csv(out).columns and len(pd.read_csv(out)) > 1
    (tmp_path / "new").mkdir()
    with umask(0o022):
        assert run_main(module.main, args(pool, tmp_path / "new" / "out.csv"), capsys)[0] == 0
    written = ["out.csv"] + (["out.csv.json"] if command == "classify" else [])  # classify's record of its classifier
    assert modes(tmp_path / "new") == dict.fromkeys(written, plain_open_mode(tmp_path, 0o022))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_out_under_a_file_is_refused_before_any_work(pool, tmp_path, command, monkeypatch, capsys):
    module, args = COMMANDS[command]

    def no_work(*args, **kwargs):
        raise AssertionError("the output path must be checked before the computation")

    monkeypatch.setattr(module, "select" if command == "select" else "classify", no_work)
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "sub" / "out.csv"
    line = one_line_error(*run_main(module.main, args(pool, out), capsys)[::2])
    assert line == f"error: --out {out}: cannot write there ({tmp_path / 'a_file'} is a file, not a folder)"


# --- HDF5 files that do not hold (rows, D) float embeddings -------------------------------------------------

NOT_EMBEDDINGS = {
    "text": (np.array([[b"abc"] * 8] * 160), "(160, 8)", "dtype |S3 (text)"),
    "1-D": (np.zeros(160, np.float32), "(160,)", "dtype float32"),
    "3-D": (np.zeros((160, 8, 3), np.float32), "(160, 8, 3)", "dtype float32"),
}


def _replace_dataset(hdf5_path, values):
    rows = len(values)
    with h5py.File(hdf5_path, "w") as f:
        f.create_dataset("dataset", data=values)
    return rows


def _data_for(command, tmp_path, pool_rows=160):
    """(module, argv, the HDF5 to break) for ``command`` on fresh tiny data."""
    if command == "run_selector":
        train_pos, train_norm = write_tiny_split(tmp_path / "data", "train", seed=1)
        val_pos, val_norm = write_tiny_split(tmp_path / "data", "val", seed=2)
        return run_selector, ["--train_pos_csv", train_pos, "--train_norm_csv", train_norm, "--val_pos_csv", val_pos,
                              "--val_norm_csv", val_norm, "--out", tmp_path / "out"], train_pos
    if command == "evaluate":
        positive_csv, normal_csv = write_test_split(str(tmp_path / "data"))
        return evaluate, ["--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv, "--methods", "random",
                          "--out", tmp_path / "out"], positive_csv
    csv_path, _, _ = write_pool(tmp_path / "data", num_positive=pool_rows - 30, num_normal=30)
    if command == "select_xrays":
        return select_xrays, ["--method", "random", "--pool_csv", csv_path, "--out", tmp_path / "out.csv"], csv_path
    labeled = tmp_path / "labeled.csv"
    pd.read_csv(csv_path).iloc[:2][["Path"]].assign(Edema=[1, 0]).to_csv(labeled, index=False)
    return classify_xrays, ["--labeled", labeled, "--label_column", "Edema", "--unlabeled", csv_path,
                            "--out", tmp_path / "out.csv"], csv_path


@pytest.mark.parametrize("kind", sorted(NOT_EMBEDDINGS))
@pytest.mark.parametrize("command", ["run_selector", "evaluate", "select_xrays", "classify_xrays"])
def test_an_hdf5_without_embeddings_is_one_line(tmp_path, command, kind, capsys):
    module, argv, csv_path = _data_for(command, tmp_path)
    values, shape, dtype = NOT_EMBEDDINGS[kind]
    hdf5_path = os.path.splitext(csv_path)[0] + ".hdf5"
    rows = len(pd.read_csv(csv_path))
    _replace_dataset(hdf5_path, np.resize(values, (rows,) + values.shape[1:]))
    shape = shape.replace("160", str(rows))
    before = sorted(os.listdir(tmp_path))
    line = one_line_error(*run_main(module.main, argv, capsys)[::2])
    assert line == (f"error: {hdf5_path}: 'dataset' has shape {shape} and {dtype}; expected a 2-D float array "
                    "(rows, D), one embedding per CSV row, as xray_to_hdf5.py writes")
    assert sorted(os.listdir(tmp_path)) == before


# --- xray_to_hdf5.py ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def xrays(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xrays")
    images = write_images(folder / "images", 3, seed=5)
    checkpoint = write_checkpoint(folder / "r8w.pth.tar", "resnet18", "linear", queue_length=1024, seed=2)
    return {"images": images, "checkpoint": str(checkpoint), "folder": folder}


def embed_args(xrays, csv, out):
    return ["-d", csv, "-o", out, "-c", xrays["checkpoint"], "--batch_size", 2, "--num_workers", 0]


def test_embeddings_are_readable_and_the_output_locked(xrays, tmp_path, capsys):
    csv = write_csv(tmp_path / "x.csv", xrays["images"])
    out = tmp_path / "x.hdf5"
    with lock_held_by_other_process(tmp_path / "x.hdf5.lock") as pid:
        line = one_line_error(*run_main(xray_to_hdf5.main, embed_args(xrays, csv, out), capsys)[::2])
        assert line.startswith(f"error: --output_path {out}: in use by process {pid} on ")
        assert sorted(os.listdir(tmp_path)) == ["x.csv", "x.hdf5.lock"]
    with umask(0o022):
        code, _, err = run_main(xray_to_hdf5.main, embed_args(xrays, csv, out), capsys)
    assert code == 0, err
    assert modes(tmp_path) == dict.fromkeys(["x.csv", "x.hdf5"], plain_open_mode(tmp_path, 0o022))
    assert read_hdf5(out)[0].shape == (3, 512)


@pytest.mark.parametrize("check", [False, True])
@pytest.mark.parametrize("bad", ["folder", "blank"])
def test_a_row_without_an_image_is_one_line_naming_it(xrays, tmp_path, bad, check, capsys):
    paths = list(xrays["images"])
    paths[1] = str(xrays["folder"] / "images") if bad == "folder" else "   "
    csv = write_csv(tmp_path / "x.csv", paths, Sex=["Female", "Male", "Female"])  # the blank row is not blank
    code, _, err = run_main(xray_to_hdf5.main, [*embed_args(xrays, csv, tmp_path / "x.hdf5"),
                                                *(["--check"] if check else [])], capsys)
    if bad == "folder":  # found when the image is opened (by --check before embedding): after progress lines
        assert code == 2 and "Traceback" not in err and err.count("error: ") == 1, err
        line = err.strip().splitlines()[-1]
        assert line.startswith(f"error: row 1 of {csv}: cannot read image {paths[1]} (is a folder, not an image)")
    else:  # found when the CSV is read, before anything else
        line = one_line_error(code, err)
        assert line == f"error: {csv}: row 1 has no image path in column 'Path' (found '   ')"
    assert os.listdir(tmp_path) == ["x.csv"]
