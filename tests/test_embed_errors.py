"""xray_to_hdf5.py on bad input: one line, exit code 2, no traceback, nothing left behind, old output untouched."""
import os
import shutil

import pytest
import torch
import torchvision

import xray_to_hdf5
from models.random_weights import moco_checkpoint
from tests.embedding_fixtures import (read_hdf5, reference_embeddings, relative_error, run_script, write_checkpoint,
                                      write_csv, write_images)
from tests.conftest import run_main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("errors")
    images = write_images(folder / "images", 4, seed=7)
    checkpoint = write_checkpoint(folder / "r8w.pth.tar", "resnet18", "linear", queue_length=1024, seed=3)
    return {"folder": folder, "images": images, "checkpoint": str(checkpoint)}


def run(argv, capsys):
    code, _, err = run_main(xray_to_hdf5.main, argv, capsys)
    return code, err


def listing(folder):
    return sorted(os.listdir(folder))


def assert_refused(argv, capsys, work, *expected):
    """The run fails with one 'error:' line naming ``expected``, and ``work`` is as it was."""
    before = {name: (work / name).read_bytes() for name in listing(work) if (work / name).is_file()}
    code, err = run(argv, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    assert {name: (work / name).read_bytes() for name in listing(work) if (work / name).is_file()} == before
    return err


def test_bad_csv(setup, tmp_path, capsys):
    out = tmp_path / "x.hdf5"
    common = ["-o", out, "-c", setup["checkpoint"]]
    assert_refused(["-d", tmp_path / "missing.csv", *common], capsys, tmp_path, "missing.csv", "not found")
    (tmp_path / "nopath.csv").write_text("Image,Age\na.jpg,3\n")
    assert_refused(["-d", tmp_path / "nopath.csv", *common], capsys, tmp_path, "missing column(s) 'Path'", "'Image'")
    (tmp_path / "empty.csv").write_text("Path\n")
    assert_refused(["-d", tmp_path / "empty.csv", *common], capsys, tmp_path, "empty.csv", "no rows")
    write_csv(tmp_path / "blank.csv", [setup["images"][0], ""])
    assert_refused(["-d", tmp_path / "blank.csv", *common], capsys, tmp_path, "row 1", "no image path")


def test_bad_checkpoint(setup, tmp_path, capsys):
    csv = write_csv(tmp_path / "x.csv", setup["images"])
    common = ["-d", csv, "-o", tmp_path / "x.hdf5"]
    assert_refused([*common, "-c", tmp_path / "none.pth.tar"], capsys, tmp_path, "none.pth.tar", "not found")
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint at all")
    assert_refused([*common, "-c", tmp_path / "junk.pth.tar"], capsys, tmp_path, "not a readable PyTorch checkpoint")
    torch.save({"model": {}}, tmp_path / "nodict.pth.tar")
    assert_refused([*common, "-c", tmp_path / "nodict.pth.tar"], capsys, tmp_path, "expected a MoCo checkpoint",
                   "'model'")
    torch.save({"state_dict": torchvision.models.resnet18().state_dict()}, tmp_path / "plain.pth.tar")
    assert_refused([*common, "-c", tmp_path / "plain.pth.tar"], capsys, tmp_path, "module.encoder_q.*",
                   "conv1.*", "layer1.*", "fc.*")
    resnet34 = {f"module.encoder_q.{k}": v for k, v in torchvision.models.resnet34(num_classes=128).state_dict().items()}
    torch.save({"state_dict": resnet34}, tmp_path / "r34.pth.tar")
    assert_refused([*common, "-c", tmp_path / "r34.pth.tar"], capsys, tmp_path, "resnet-basic", "(3, 4, 6, 3)",
                   "not a supported architecture")
    odd_head = moco_checkpoint("resnet18", "linear", 128, seed=1)
    odd_head["state_dict"]["module.encoder_q.fc.5.weight"] = torch.zeros(1)
    torch.save(odd_head, tmp_path / "odd_head.pth.tar")
    assert_refused([*common, "-c", tmp_path / "odd_head.pth.tar"], capsys, tmp_path, "expected the head 'fc'",
                   "fc.5.weight")
    assert_refused([*common, "-c", setup["checkpoint"], "--arch", "resnet50"], capsys, tmp_path,
                   "does not fit resnet50")


def test_bad_options_and_output(setup, tmp_path, capsys):
    csv = write_csv(tmp_path / "x.csv", setup["images"])
    common = ["-d", csv, "-c", setup["checkpoint"]]
    out = tmp_path / "x.hdf5"
    assert_refused([*common, "-o", out, "--batch_size", 0], capsys, tmp_path, "--batch_size")
    assert_refused([*common, "-o", out, "--num_workers", -1], capsys, tmp_path, "--num_workers")
    if not torch.cuda.is_available():
        assert_refused([*common, "-o", out, "--device", "cuda"], capsys, tmp_path, "CUDA is not available")
    assert_refused([*common, "-o", tmp_path / "no_such_folder" / "x.hdf5"], capsys, tmp_path, "does not exist")
    assert_refused([*common, "-o", csv], capsys, tmp_path, "same file as --data")
    out.write_bytes(b"an earlier result")
    assert_refused([*common, "-o", out], capsys, tmp_path, "already exists", "--overwrite")


def test_missing_image_stops_with_row_and_path(setup, tmp_path, capsys):
    images = list(setup["images"])
    images[1] = str(tmp_path / "gone.jpg")
    csv = write_csv(tmp_path / "x.csv", images)
    out = tmp_path / "x.hdf5"
    out.write_bytes(b"an earlier result")
    code, err = run(["-d", csv, "-o", out, "-c", setup["checkpoint"], "--overwrite", "--batch_size", 2,
                     "--num_workers", 0], capsys)
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: row 1 of") and "gone.jpg" in last and "file not found" in last
    assert "nothing was written" in last
    assert listing(tmp_path) == ["x.csv", "x.hdf5"] and out.read_bytes() == b"an earlier result"


def test_corrupt_image_mid_run_keeps_finished_rows_and_resumes(setup, tmp_path, capsys):
    folder = tmp_path / "images"
    shutil.copytree(os.path.dirname(setup["images"][0]), folder)
    images = [str(folder / os.path.basename(p)) for p in setup["images"]]
    good = open(images[3], "rb").read()
    open(images[3], "wb").write(good[: len(good) // 2])  # truncated
    csv = write_csv(tmp_path / "x.csv", images)
    argv = ["-d", csv, "-o", tmp_path / "x.hdf5", "-c", setup["checkpoint"], "--batch_size", 2, "--num_workers", 1]
    code, err = run(argv, capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err and last.startswith("error: row 3 of"), err
    assert os.path.basename(images[3]) in last and "2 finished rows are kept" in last
    assert "x.hdf5" not in listing(tmp_path) and read_hdf5(tmp_path / "x.hdf5.partial")[1]["rows_done"] == 2
    open(images[3], "wb").write(good)
    code, err = run(argv, capsys)
    assert code == 0 and "resuming an unfinished run at row 2 of 4" in err
    expected = reference_embeddings(images, setup["checkpoint"], "resnet18", "linear")
    assert relative_error(read_hdf5(tmp_path / "x.hdf5")[0], expected) < 1e-5


def test_check_lists_every_bad_image_at_once(setup, tmp_path, capsys):
    truncated = tmp_path / "truncated.jpg"
    jpeg = open(setup["images"][0], "rb").read()
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "text.png").write_text("not an image")
    images = [setup["images"][1], str(tmp_path / "missing.jpg"), str(truncated), setup["images"][2],
              str(tmp_path / "text.png"), str(tmp_path)]
    csv = write_csv(tmp_path / "x.csv", images)
    before = listing(tmp_path)
    code, err = run(["-d", csv, "-o", tmp_path / "x.hdf5", "-c", setup["checkpoint"], "--check"], capsys)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: 4 of 6 images") and "fix them" in lines[-1]
    for row, reason in ((1, "file not found"), (2, "truncated"), (4, "cannot identify image"), (5, "folder")):
        assert any(line.startswith(f"row {row}: ") and reason in line for line in lines), (row, err)
    assert listing(tmp_path) == before


def test_command_line_error_is_one_line(setup, tmp_path):
    """The real entry point: exit status 2 and a single line, no traceback."""
    result = run_script(["xray_to_hdf5.py", "-d", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "x.hdf5"),
                         "-c", setup["checkpoint"]])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "missing.csv" in result.stderr
    assert listing(tmp_path) == []
