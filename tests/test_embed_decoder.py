"""xray_to_hdf5.py --decoder torchvision: embeddings close to the reference PIL path; resume never mixes decoders."""
import os

import h5py
import numpy as np
import pytest
import torch

import xray_to_hdf5
from data.images import decode_batch, load_xray, load_xray_torchvision, read_or_load_xray
from data.synthetic_images import write_xray_image
from tests.embedding_fixtures import interrupt_after_writes, read_hdf5, write_checkpoint, write_csv, write_images
from tests.conftest import run_main

# (width, height) of CheXpert-like grey JPEGs: -small's usual shapes, an upscale, a larger downscale, a square.
GREY_SIZES = [(320, 390), (390, 320), (200, 260), (700, 850), (333, 333)]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Grey CheXpert-like JPEGs of several sizes, plus random RGB and grey JPEGs and PNGs (PIL fallback)."""
    folder = tmp_path_factory.mktemp("decoder")
    rng = np.random.default_rng(0)
    paths = []
    for i, (width, height) in enumerate(GREY_SIZES):
        paths.append(str(folder / f"xray{i}.jpg"))
        write_xray_image(paths[-1], width, height, [i, i + 3], rng)
    paths += write_images(folder / "varied", 4, seed=4)  # jpg L, png RGB, png L, jpg RGB
    checkpoint = write_checkpoint(folder / "r8w.pth.tar", "resnet18", "mlp", queue_length=1024, seed=1)
    return {"folder": folder, "paths": paths, "csv": str(write_csv(folder / "x.csv", paths)),
            "checkpoint": str(checkpoint)}


def embed(argv, capsys):
    code, _, err = run_main(xray_to_hdf5.main, argv, capsys)
    return code, err


def test_torchvision_decoder_keeps_cosine_similarity(images, tmp_path, capsys):
    common = ["-d", images["csv"], "-c", images["checkpoint"], "--batch_size", 4]
    code, err = embed(common + ["-o", tmp_path / "pil.hdf5", "--num_workers", 0], capsys)
    assert code == 0, err
    code, err = embed(common + ["-o", tmp_path / "tv.hdf5", "--num_workers", 1, "--decoder", "torchvision"], capsys)
    assert code == 0, err
    reference, pil_attrs = read_hdf5(tmp_path / "pil.hdf5")
    fast, attrs = read_hdf5(tmp_path / "tv.hdf5")
    fast, reference = fast.astype(np.float64), reference.astype(np.float64)
    cosine = (fast * reference).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(reference, axis=1)
    print(f"torchvision vs PIL decoder cosine similarity: min {cosine.min():.9f}")
    assert cosine.min() >= 0.999, cosine
    assert pil_attrs["decoder"] == "pil" and attrs["decoder"] == "torchvision"
    assert "decode_jpeg" in attrs["preprocessing"] and "decode_jpeg" not in pil_attrs["preprocessing"]


def test_batched_decode_equals_worker_decode_and_reports_bad_files(images, tmp_path):
    """decode_batch is what runs on the GPU; on the CPU it must give what the workers' path gives."""
    bogus = tmp_path / "bogus.jpg"  # JPEG markers around junk: the batched decoder fails, PIL names the problem
    bogus.write_bytes(b"\xff\xd8\xff" + b"not an image" + b"\xff\xd9")
    paths = images["paths"][:3] + [str(bogus)] + images["paths"][-3:]
    items = [read_or_load_xray(p) for p in paths[:3]] + [torch.frombuffer(bytearray(bogus.read_bytes()),
                                                                          dtype=torch.uint8)]
    items += [read_or_load_xray(p) for p in paths[4:]]
    assert [item.ndim for item in items] == [1, 1, 1, 1, 3, 3, 1]  # the PNGs were preprocessed by PIL
    batch, errors, _ = decode_batch(items, paths, torch.device("cpu"))
    assert errors[3] and not any(errors[:3] + errors[4:]), errors
    with pytest.raises(OSError):
        load_xray(str(bogus))
    expected = torch.stack([load_xray_torchvision(p) for p in paths[:3] + paths[4:]])
    assert torch.equal(torch.cat([batch[:3], batch[4:]]), expected)
    assert not batch[3].any()


def test_truncated_jpeg_is_reported_as_with_pil(images, tmp_path, capsys):
    good = open(images["paths"][0], "rb").read()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    csv = write_csv(tmp_path / "x.csv", images["paths"][:2] + [str(truncated)])
    code, err = embed(["-d", csv, "-o", tmp_path / "x.hdf5", "-c", images["checkpoint"], "--num_workers", 0,
                       "--decoder", "torchvision"], capsys)
    assert code == 2 and "row 2 of" in err and "truncated" in err, err


def test_resume_refuses_to_mix_decoders(images, tmp_path, capsys, monkeypatch):
    argv = ["-d", images["csv"], "-o", tmp_path / "x.hdf5", "-c", images["checkpoint"], "--batch_size", 3,
            "--num_workers", 0]
    interrupt_after_writes(monkeypatch)
    assert embed(argv, capsys)[0] == 130
    monkeypatch.undo()
    partial = tmp_path / "x.hdf5.partial"
    before = partial.read_bytes()
    code, err = embed(argv + ["--decoder", "torchvision"], capsys)
    assert code == 2 and "different decoder" in err and err.count("\n") == 1, err
    assert partial.read_bytes() == before

    # A .partial written before --decoder existed has no 'decoder' attribute: it was PIL, and resumes as such.
    with h5py.File(partial, "a") as f:
        del f.attrs["decoder"]
    code, err = embed(argv, capsys)
    assert code == 0 and "resuming an unfinished run at row 3" in err, err
    assert os.listdir(tmp_path) == ["x.hdf5"]


def test_resume_refuses_rows_decoded_on_a_gpu_after_the_cpu(images, tmp_path, capsys, monkeypatch):
    """--decoder torchvision resumed where the other device decoded the first rows: refused, one line. The GPU
    pipeline (nvjpeg, float resize) is stood in for by the batch-decoding pipeline, which runs on the CPU too."""
    import models.encoders.moco as moco
    from data.images import PREPROCESSING_TORCHVISION_GPU, MocoDeviceDecodePipeline
    argv = ["-d", images["csv"], "-o", tmp_path / "x.hdf5", "-c", images["checkpoint"], "--batch_size", 3,
            "--num_workers", 0, "--decoder", "torchvision", "--device", "cpu"]
    interrupt_after_writes(monkeypatch)
    assert embed(argv, capsys)[0] == 130
    monkeypatch.undo()
    partial = tmp_path / "x.hdf5.partial"
    with h5py.File(partial, "r") as f:
        assert f.attrs["decoded_on"] == "cpu" and "nvjpeg" not in f.attrs["preprocessing"]
    before = partial.read_bytes()
    monkeypatch.setattr(moco, "moco_pipeline", lambda decoder, device: MocoDeviceDecodePipeline())
    code, err = embed(argv, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "different preprocessing, decoding device (cpu there, cuda here" in err, err
    assert partial.read_bytes() == before
    assert "nvjpeg" in PREPROCESSING_TORCHVISION_GPU and "float32" in PREPROCESSING_TORCHVISION_GPU
