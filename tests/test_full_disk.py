"""A full disk (simulated: writes fail with ENOSPC after N bytes, tests/disk_full.py) never leaves a wrong or
half-written result, never replaces a good one, and stops with one line naming the disk problem and the file.
Also the completion record that lets readers refuse an embedding file whose rows were lost."""
import csv
import os
import re

import h5py
import numpy as np
import pytest

import evaluate
import run_selector
import xray_to_hdf5
from data.csv_hdf5 import ROWS_SHA256, ROWS_WRITTEN, read_embeddings_into
from data.embedding_writer import write_embeddings
from tests.conftest import TINY_SETTINGS, run_main, write_tiny_split
from tests.disk_full import full_disk
from tests.embedding_fixtures import read_hdf5, write_checkpoint, write_csv, write_images
from tests.evaluate_helpers import write_checkpoint as write_selector_checkpoint, write_test_split

DISK_FULL = "No space left on device"


def one_line(code, err):
    """The error line: the last on stderr, the only one; no traceback (the log's lines may come before it)."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err, err
    return lines[-1]


def files_of(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if (folder / name).is_file()}


# --- xray_to_hdf5.py --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("disk_images")
    paths = write_images(folder / "images", 6, seed=5)
    return {"paths": paths, "checkpoint": str(write_checkpoint(folder / "r.pth.tar", "resnet18", "linear",
                                                               queue_length=16, seed=1))}


def embed(images, csv, out, capsys, *extra):
    return run_main(xray_to_hdf5.main, ["-d", csv, "-o", out, "-c", images["checkpoint"], "--batch_size", 2,
                                        "--num_workers", 0, *extra], capsys)


def test_embedding_on_a_full_disk_stops_and_keeps_the_earlier_file(images, tmp_path, capsys, monkeypatch):
    csv = write_csv(tmp_path / "x.csv", images["paths"])
    out = tmp_path / "x.hdf5"
    code, _, err = embed(images, csv, out, capsys)
    assert code == 0, err
    good = out.read_bytes()
    whole = read_hdf5(out)[0]
    # The disk fills after the file's header and its first rows: a later batch or flush fails.
    with full_disk(monkeypatch, 4096 * 2, paths_containing=".partial"):  # room for 2 of the 3 batches
        code, _, err = embed(images, csv, out, capsys, "--overwrite")
    line = one_line(code, err)
    assert DISK_FULL in line and "x.hdf5.partial" in line, line
    assert out.read_bytes() == good  # the earlier, whole file stays; the .partial was never renamed
    # Freed space: the same command finishes the job, resuming or starting over, and the result is whole.
    code, _, err = embed(images, csv, out, capsys, "--overwrite")
    assert code == 0, err
    embeddings, attrs = read_hdf5(out)
    assert embeddings.tobytes() == whole.tobytes() and attrs["complete"]
    assert not os.path.exists(str(out) + ".partial")


def test_new_file_is_not_published_when_the_disk_fills(images, tmp_path, capsys, monkeypatch):
    csv = write_csv(tmp_path / "x.csv", images["paths"])
    for limit in (0, 4096):  # rows of 512 float32: 2 KB each; batches of 2 rows (4 KB): the 1st or the 2nd fails
        out = tmp_path / f"x{limit}.hdf5"
        with full_disk(monkeypatch, limit, paths_containing=".partial"):
            code, _, err = embed(images, csv, out, capsys)
        line = one_line(code, err)
        assert DISK_FULL in line and f"x{limit}.hdf5.partial" in line, line
        assert not out.exists()


def test_rows_lost_without_an_error_are_caught_by_the_completion_record(images, tmp_path, capsys, monkeypatch):
    """The issue's case: h5py reported nothing, the file was renamed into place marked complete with rows of
    zeros. Now the file is read back against its completion record before the rename."""
    csv = write_csv(tmp_path / "x.csv", images["paths"])
    with full_disk(monkeypatch, 4096 * 2, paths_containing=".partial", lost_silently=True):
        code, _, err = embed(images, csv, tmp_path / "x.hdf5", capsys)
    line = one_line(code, err)
    assert "x.hdf5.partial: does not read back as written (row 4 is all zeros in a file marked complete" in line, line
    assert line.endswith("it was removed and " + str(tmp_path / "x.hdf5") + " left as it was; free space and rerun the "
                         "same command to start over"), line
    assert os.listdir(tmp_path) == ["x.csv"]


# --- the completion record --------------------------------------------------------------------------------------

def write_file(path, rows, attrs=None, record=True):
    if record:
        write_embeddings(str(path), rows, attrs or {})
    else:  # the original code's file: the dataset and nothing else
        with h5py.File(path, "w") as f:
            f.create_dataset("dataset", data=rows)


def read(path, rows, dim):
    out = np.empty((rows, dim), np.float32)
    read_embeddings_into(str(path), out, rows, "x.csv")
    return out


def test_completion_record_is_rows_and_their_sha256(tmp_path):
    import hashlib
    rows = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    write_file(tmp_path / "a.hdf5", rows)
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert f.attrs[ROWS_WRITTEN] == 5 and f.attrs[ROWS_SHA256] == hashlib.sha256(rows.tobytes()).hexdigest()
    assert read(tmp_path / "a.hdf5", 5, 3).tobytes() == rows.tobytes()


def test_reader_refuses_rows_that_do_not_match_the_record(tmp_path):
    from utils.errors import UserError
    rows = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    write_file(tmp_path / "a.hdf5", rows)
    with h5py.File(tmp_path / "a.hdf5", "a") as f:
        f["dataset"][3] = 0.5  # a row that is not what was written
    with pytest.raises(UserError, match="completion record .* does not match"):
        read(tmp_path / "a.hdf5", 5, 3)


def test_reader_refuses_zero_rows_in_a_file_marked_complete(tmp_path):
    from utils.errors import UserError
    rows = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with h5py.File(tmp_path / "a.hdf5", "w") as f:  # as a disk that swallowed rows 2-4 left it
        f.create_dataset("dataset", shape=(5, 3), dtype=np.float32)[:2] = rows[:2]
        f.attrs["complete"] = True
    with pytest.raises(UserError, match="row 2 is all zeros in a file marked complete"):
        read(tmp_path / "a.hdf5", 5, 3)


def test_the_original_codes_files_are_read_as_before(tmp_path):
    rows = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    rows[1] = 0  # no record, no mark: accepted as the original accepted it
    write_file(tmp_path / "a.hdf5", rows, record=False)
    assert read(tmp_path / "a.hdf5", 5, 3).tobytes() == rows.tobytes()


# --- run_selector.py --------------------------------------------------------------------------------------------

def train_argv(data, out, *extra):
    return [*data, "--out", out, "--seed", 0, *[a for s in [*TINY_SETTINGS, "NUM_META_TRAIN_TASKS=120",
                                                              "NUM_EPOCHS=2"] for a in ("--set", s)], *extra]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("disk_split")
    train_pos, train_norm = write_tiny_split(folder, "train", seed=1)
    val_pos, val_norm = write_tiny_split(folder, "val", seed=2)
    return ["--train_pos_csv", train_pos, "--train_norm_csv", train_norm, "--val_pos_csv", val_pos,
            "--val_norm_csv", val_norm]


def test_training_on_a_full_disk_names_the_file_and_resumes(split, tmp_path, capsys, monkeypatch):
    # Bytes written up to the end of the first validation's last.pt, measured on a disk with room to spare.
    with full_disk(monkeypatch, 10 ** 9, paths_containing=str(tmp_path / "measure")) as budget:
        code, _, err = run_main(run_selector.main, train_argv(split, tmp_path / "measure"), capsys)
    assert code == 0, err
    names = [name for name, _ in budget.written]
    first = next(i for i, name in enumerate(names) if name.startswith(".last.pt"))  # its temporary file
    end = first + next((n for n, name in enumerate(names[first:]) if name != names[first]), len(names) - first)
    room = sum(size for _, size in budget.written[:end]) + 200

    out = tmp_path / "run"
    with full_disk(monkeypatch, room, paths_containing=str(out)):
        code, _, err = run_main(run_selector.main, train_argv(split, out), capsys)
    line = one_line(code, err)
    assert DISK_FULL in line and str(out) in line and f"--resume {out / 'last.pt'}" in line, line
    import torch
    last = torch.load(out / "last.pt", weights_only=False)  # whole: the one of the first validation
    assert last["progress"]["step"] == 30
    code, _, err = run_main(run_selector.main, [*split, "--out", out, "--resume", out / "last.pt"], capsys)
    assert code == 0, err
    with open(out / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["30", "60"]


# --- evaluate.py ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def evaluation_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("disk_eval")
    pos, norm = write_test_split(folder)
    checkpoint = write_selector_checkpoint(str(folder / "model_epoch1_iter30"))
    return ["--checkpoint", checkpoint, "--test_pos_csv", pos, "--test_norm_csv", norm, "--methods",
            "medselect,random", "--num_tasks", "8", "--bootstrap", "50"]


def test_evaluation_results_appear_together_or_not_at_all(evaluation_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    code, _, err = run_main(evaluate.main, [*evaluation_data, "--out", out], capsys)
    assert code == 0, err
    earlier = files_of(out)
    assert {"results.md", "results.csv", "results.json", "per_task.csv"} <= set(earlier)
    for limit in (0, 3000):  # the first file fails, or a later one
        with full_disk(monkeypatch, limit, paths_containing=str(out)):
            code, _, err = run_main(evaluate.main, [*evaluation_data, "--out", out, "--overwrite", "--seed", "1"],
                                    capsys)
        line = one_line(code, err)
        assert re.fullmatch(rf"error: {re.escape(str(out))}/[a-z_]+\.(md|csv|json|png): {DISK_FULL} \(while writing "
                            r"it; nothing was replaced\)", line), line  # the file's name in --out, not in staging
        assert files_of(out) == earlier and sorted(os.listdir(out)) == sorted(earlier)  # no staging left
    new = tmp_path / "new"
    with full_disk(monkeypatch, 3000, paths_containing=str(new)):
        code, _, err = run_main(evaluate.main, [*evaluation_data, "--out", new], capsys)
    assert DISK_FULL in one_line(code, err)
    assert not new.exists() or os.listdir(new) == []
