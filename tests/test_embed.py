"""xray_to_hdf5.py: embeddings equal an independent torchvision pipeline; files are whole; runs resume."""
import os
import shutil
import signal

import numpy as np
import pytest
import torch
from torchvision import transforms

import xray_to_hdf5
from data.images import load_xray, normalize
from models.moco_encoder import load_moco_encoder
from tests.embedding_fixtures import (interrupt_after_writes, open_as_rgb, read_hdf5, reference_embeddings,
                                      relative_error, run_script, write_checkpoint, write_csv, write_images)
from utils.errors import run_cli


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    """Eight varied images, their CSV, a ResNet-18 MoCo v2 (MLP head) checkpoint, the independent
    reference embeddings, and the file of one uninterrupted run (batch size 2) to compare others with."""
    folder = tmp_path_factory.mktemp("r18")
    images = write_images(folder / "images", 8)
    csv = write_csv(folder / "xrays.csv", images)
    checkpoint = write_checkpoint(folder / "r8w-random.pth.tar", "resnet18", "mlp", queue_length=65536)
    whole = folder / "whole.hdf5"
    code, err = embed(["-d", csv, "-o", whole, "-c", checkpoint, "--batch_size", 2, "--num_workers", 0])
    assert code == 0, err
    return {"folder": folder, "images": images, "csv": str(csv), "checkpoint": str(checkpoint),
            "reference": reference_embeddings(images, checkpoint, "resnet18", "mlp"), "whole": read_hdf5(whole)[0]}


def embed(argv, capsys=None):
    """Run the CLI in this process as a user would; returns (exit code, stderr)."""
    try:
        code = run_cli(xray_to_hdf5.main, [str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def test_preprocessing_is_bit_identical_to_torchvision(tmp_path):
    reference = transforms.Compose([transforms.Resize(320), transforms.CenterCrop(320), transforms.ToTensor(),
                                    transforms.Normalize([0.5020] * 3, [0.085585] * 3)])
    for path in write_images(tmp_path, 8, seed=3) + write_images(tmp_path / "big", 2, specs=[(390, 320, "jpg", "L"),
                                                                                             (321, 999, "png", "RGB")]):
        expected = reference(open_as_rgb(path))
        assert torch.equal(normalize(load_xray(path)[None])[0], expected), path


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "densenet121"])
def test_embeddings_equal_independent_pipeline(tmp_path, capsys, arch):
    images = write_images(tmp_path / "images", 2, seed=1)
    csv = write_csv(tmp_path / "x.csv", images)
    checkpoint = write_checkpoint(tmp_path / "mlp.pth.tar", arch, "mlp", queue_length=65536, seed=2)
    out = tmp_path / "x.hdf5"
    code, err = embed(["-d", csv, "-o", out, "-c", checkpoint, "--batch_size", 2, "--num_workers", 0], capsys)
    assert code == 0, err
    embeddings, attrs = read_hdf5(out)
    expected = reference_embeddings(images, checkpoint, arch, "mlp")
    dim = {"resnet18": 512, "resnet50": 2048, "densenet121": 1024}[arch]
    assert embeddings.dtype == np.float32 and embeddings.shape == expected.shape == (2, dim)
    assert relative_error(embeddings, expected) < 1e-5
    assert attrs["arch"] == arch and attrs["head_removed"] == "mlp" and attrs["csv_rows"] == 2

    # The same body with a linear head and another queue length: the same encoder once the head is gone.
    linear = write_checkpoint(tmp_path / "linear.pth.tar", arch, "linear", queue_length=4096, seed=2)
    with_mlp, with_linear = load_moco_encoder(str(checkpoint)), load_moco_encoder(str(linear))
    assert (with_linear.arch, with_linear.head, with_linear.queue_length) == (arch, "linear", 4096)
    assert with_mlp.queue_length == 65536
    mlp_state, linear_state = with_mlp.model.state_dict(), with_linear.model.state_dict()
    assert mlp_state.keys() == linear_state.keys()
    assert all(torch.equal(mlp_state[k], linear_state[k]) for k in mlp_state)


def test_resnet18_mlp_with_workers_and_attributes(r18, tmp_path, capsys):
    out = tmp_path / "x.hdf5"
    code, err = embed(["--data", r18["csv"], "--output_path", out, "--checkpoint_path", r18["checkpoint"],
                       "--batch_size", 2, "--num_workers", 2], capsys)
    assert code == 0, err
    embeddings, attrs = read_hdf5(out)
    assert relative_error(embeddings, r18["reference"]) < 1e-5
    assert embeddings.tobytes() == r18["whole"].tobytes()
    assert attrs["checkpoint_file"] == "r8w-random.pth.tar" and attrs["precision"] == "fp32"
    assert attrs["complete"] and attrs["rows_done"] == 8 and len(attrs["csv_path_sha256"]) == 64
    assert "centre crop 320x320" in attrs["preprocessing"]
    assert os.listdir(tmp_path) == ["x.hdf5"]  # no temporary file left


def test_relative_paths_resolve_against_root(r18, tmp_path, capsys):
    images = tmp_path / "root" / "CheXpert-v1.0-small"
    shutil.copytree(os.path.dirname(r18["images"][0]), images)
    relative = [f"CheXpert-v1.0-small/{os.path.basename(p)}" for p in r18["images"][:2]]
    csv = write_csv(tmp_path / "x.csv", relative)
    code, err = embed(["-d", csv, "-o", tmp_path / "x.hdf5", "-c", r18["checkpoint"], "--root", tmp_path / "root",
                       "--num_workers", 0], capsys)
    assert code == 0, err
    assert relative_error(read_hdf5(tmp_path / "x.hdf5")[0], r18["reference"][:2]) < 1e-5


def test_bf16_keeps_cosine_similarity(r18, tmp_path, capsys):
    code, err = embed(["-d", r18["csv"], "-o", tmp_path / "bf16.hdf5", "-c", r18["checkpoint"], "--precision", "bf16",
                       "--num_workers", 0], capsys)
    assert code == 0, err
    bf16, attrs = read_hdf5(tmp_path / "bf16.hdf5")
    fp32 = r18["reference"]
    cosine = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    print(f"bf16 vs fp32 cosine similarity: min {cosine.min():.6f}")
    assert cosine.min() >= 0.999 and attrs["precision"] == "bf16"


def test_ctrl_c_then_resume_equals_uninterrupted_run(r18, tmp_path, capsys, monkeypatch):
    argv = ["-d", r18["csv"], "-o", tmp_path / "x.hdf5", "-c", r18["checkpoint"], "--batch_size", 2,
            "--num_workers", 0]
    interrupt_after_writes(monkeypatch, 2)
    code, err = embed(argv, capsys)
    assert code == 130 and "rerun the same command to resume" in err
    assert os.listdir(tmp_path) == ["x.hdf5.partial"]
    assert read_hdf5(tmp_path / "x.hdf5.partial")[1]["rows_done"] == 4
    monkeypatch.undo()
    code, err = embed(argv, capsys)
    assert code == 0 and "resuming an unfinished run at row 4 of 8" in err
    assert read_hdf5(tmp_path / "x.hdf5")[0].tobytes() == r18["whole"].tobytes()
    assert os.listdir(tmp_path) == ["x.hdf5"]


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, os.getcwd())
import xray_to_hdf5
from data.embedding_writer import EmbeddingWriter
from utils.errors import run_cli
original = EmbeddingWriter.write
def write(self, lo, embeddings):
    original(self, lo, embeddings)
    if self.rows_done >= 4:
        if sys.argv[1] == "SIGKILL":
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind
        os.killpg(0, signal.SIGTERM)  # a scheduler stopping the job: DataLoader workers included
EmbeddingWriter.write = write
run_cli(xray_to_hdf5.main, sys.argv[2:])
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_byte_for_byte(r18, tmp_path, capsys, how):
    argv = ["-d", r18["csv"], "-o", str(tmp_path / "x.hdf5"), "-c", r18["checkpoint"], "--batch_size", "2",
            "--num_workers", "2"]
    killed = run_script(["-c", KILL_SCRIPT, how, *argv])
    if how == "SIGKILL":  # no chance to remove the lock file: the next run takes it over, saying so
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert sorted(os.listdir(tmp_path)) == ["x.hdf5.lock", "x.hdf5.partial"]
    else:  # stopped cleanly: one line, no traceback
        assert killed.returncode == 130 and killed.stderr.endswith("interrupted\n"), killed.stderr
        assert "Traceback" not in killed.stderr and "rows are kept in" in killed.stderr
        assert os.listdir(tmp_path) == ["x.hdf5.partial"]
    code, err = embed(argv, capsys)
    assert code == 0, err
    assert "resuming an unfinished run at row 4 of 8" in err
    assert ("took over the lock left by process" in err) == (how == "SIGKILL")
    assert os.listdir(tmp_path) == ["x.hdf5"]
    assert read_hdf5(tmp_path / "x.hdf5")[0].tobytes() == r18["whole"].tobytes()


def test_resume_refuses_a_different_csv_or_checkpoint(r18, tmp_path, capsys, monkeypatch):
    argv = ["-d", r18["csv"], "-o", tmp_path / "x.hdf5", "-c", r18["checkpoint"], "--batch_size", 2,
            "--num_workers", 0]
    interrupt_after_writes(monkeypatch, 1)
    assert embed(argv, capsys)[0] == 130
    monkeypatch.undo()
    partial = (tmp_path / "x.hdf5.partial").read_bytes()
    other_csv = write_csv(tmp_path / "other.csv", list(reversed(r18["images"])))
    other_checkpoint = write_checkpoint(tmp_path / "other.pth.tar", "resnet18", "mlp", 4096, seed=5)
    for changed, message in (({"-d": other_csv}, "csv_path_sha256"), ({"-c": other_checkpoint}, "weights_sha256"),
                             ({"--precision": "bf16"}, "precision")):
        args = list(argv) + ["--precision", "fp32"]
        for flag, value in changed.items():
            args[args.index(flag) + 1] = value
        code, err = embed(args, capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
        assert (tmp_path / "x.hdf5.partial").read_bytes() == partial
    code, err = embed(argv + ["-d", other_csv, "--overwrite"], capsys)
    assert code == 0 and "starting over" in err
    assert read_hdf5(tmp_path / "x.hdf5")[0].tobytes() == r18["whole"][::-1].tobytes()


def test_two_processes_gloo_equal_one_process(r18, tmp_path):
    out = tmp_path / "two.hdf5"
    two = run_script(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "xray_to_hdf5.py",
                      "-d", r18["csv"], "-c", r18["checkpoint"], "-o", str(out), "--batch_size", "2",
                      "--num_workers", "0", "--device", "cpu"], env={"OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    embeddings, attrs = read_hdf5(out)
    assert embeddings.tobytes() == r18["whole"].tobytes()
    assert attrs["rows_done"] == 8 and os.listdir(tmp_path) == ["two.hdf5"]


def test_damaged_partial_is_started_over(r18, tmp_path, capsys):
    """A kill in the middle of an HDF5 write can leave an unreadable .partial: it is not trusted. It is reported
    as damaged (not as in use: h5py's 'truncated file ... sblock' message holds 'lock'), and --overwrite starts
    over."""
    (tmp_path / "x.hdf5.partial").write_bytes(b"half-written HDF5 header")
    argv = ["-d", r18["csv"], "-o", tmp_path / "x.hdf5", "-c", r18["checkpoint"], "--batch_size", 2, "--num_workers", 0]
    code, err = embed(argv, capsys)
    assert code == 2 and "unfinished file is damaged" in err and "pass --overwrite to start over" in err, err
    assert "in use" not in err
    code, err = embed([*argv, "--overwrite"], capsys)
    assert code == 0 and "damaged (unreadable); starting over" in err, err
    assert read_hdf5(tmp_path / "x.hdf5")[0].tobytes() == r18["whole"].tobytes()
    assert os.listdir(tmp_path) == ["x.hdf5"]
