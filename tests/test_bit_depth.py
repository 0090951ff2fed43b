"""16-bit X-rays are read at their own bit depth, the same way by both decoders; an X-ray whose pixels all
have one value after decoding is named once in the log."""
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import xray_to_hdf5
from data.images import MocoDeviceDecodePipeline, XrayImages, decode, decode_torchvision
from data.synthetic_images import write_xray_image
from tests.conftest import run_main
from tests.embedding_fixtures import read_hdf5, write_checkpoint, write_csv


def write_png16(path, pixels):
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit RGB): (H, W) grey or (H, W, 3) RGB."""
    pixels = np.asarray(pixels, dtype=">u2")
    height, width = pixels.shape[:2]
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels.reshape(height, -1))  # filter 0 on every row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 16, 0 if pixels.ndim == 2 else 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                + chunk(b"IEND", b""))
    return str(path)


def test_decode_scales_16_bit_images_to_8_bits(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, size=(30, 40), dtype=np.uint16)
    grey[0, :4] = [0, 128, 129, 65535]  # the ends, and the two sides of the first rounding step
    write_png16(tmp_path / "grey16.png", grey)
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    expected = np.round(grey.astype(np.float64) * 255 / 65535).astype(np.uint8)
    for decoded in (decode(tmp_path / "grey16.png"), decode_torchvision(str(tmp_path / "grey16.png"))):
        assert decoded.mode == "L" and np.array_equal(np.asarray(decoded), expected)
    assert list(expected[0, :4]) == [0, 0, 1, 255]

    rgb = rng.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    decoded = decode(write_png16(tmp_path / "rgb16.png", rgb))  # Pillow keeps the high byte of each value
    assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), (rgb >> 8).astype(np.uint8))

    # 32-bit integer images (older Pillows open 16-bit PNGs so): read as 16-bit when they fit.
    Image.fromarray(grey.astype(np.int32), mode="I").save(tmp_path / "grey32.tif")
    assert np.array_equal(np.asarray(decode(tmp_path / "grey32.tif")), expected)
    Image.fromarray(np.full((4, 4), 70000, dtype=np.int32), mode="I").save(tmp_path / "big.tif")
    with pytest.raises(ValueError, match="outside 0..65535"):
        decode(tmp_path / "big.tif")
    Image.fromarray(np.ones((4, 4), dtype=np.float32), mode="F").save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="floating-point"):
        decode(tmp_path / "float.tif")


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
def test_16_bit_png_embeds_like_its_8_bit_version(tmp_path, capsys, decoder):
    rng = np.random.default_rng(1)
    write_xray_image(str(tmp_path / "xray.jpg"), 320, 390, [1, 4], rng)  # a CheXpert-like picture
    eight = np.asarray(Image.open(tmp_path / "xray.jpg")).astype(np.uint16)
    sixteen = eight * 256 + rng.integers(0, 256, size=eight.shape).astype(np.uint16)  # detail below 8 bits
    write_png16(tmp_path / "x16.png", sixteen)
    Image.fromarray((sixteen >> 8).astype(np.uint8), mode="L").save(tmp_path / "x8.png")  # its 8-bit version
    csv = write_csv(tmp_path / "x.csv", [str(tmp_path / "x16.png"), str(tmp_path / "x8.png")])
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "mlp", queue_length=16)
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", tmp_path / "x.hdf5", "-c", checkpoint,
                                                "--decoder", decoder, "--num_workers", 0], capsys)
    assert code == 0, err
    embeddings = read_hdf5(tmp_path / "x.hdf5")[0].astype(np.float64)
    cosine = embeddings[0] @ embeddings[1] / np.linalg.norm(embeddings[0]) / np.linalg.norm(embeddings[1])
    print(f"16-bit vs 8-bit version, --decoder {decoder}: cosine {cosine:.8f}")
    assert cosine >= 0.999  # clipping to 8 bits (the old behaviour) gives 0.99 here


@pytest.fixture
def mixed_images(tmp_path):
    """Two ordinary images and two that are one flat value once decoded (a 16-bit one, and a JPEG)."""
    rng = np.random.default_rng(2)
    paths = [str(tmp_path / name) for name in ("a.jpg", "flat16.png", "flat.jpg", "b.png")]
    write_xray_image(paths[0], 64, 80, [2], rng)
    write_png16(paths[1], np.full((50, 40), 1000, dtype=np.uint16))  # 1000 / 257 -> 4 everywhere
    Image.fromarray(np.full((60, 50), 128, dtype=np.uint8), mode="L").save(paths[2])
    Image.fromarray(rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8), mode="RGB").save(paths[3])
    return paths


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
def test_uniform_image_is_named_once(tmp_path, capsys, mixed_images, decoder):
    csv = write_csv(tmp_path / "x.csv", mixed_images)
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "linear", queue_length=16)
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", tmp_path / "x.hdf5", "-c", checkpoint,
                                                "--decoder", decoder, "--batch_size", 2, "--num_workers", 1], capsys)
    assert code == 0, err
    for row, path in enumerate(mixed_images):
        lines = [line for line in err.splitlines() if path in line]
        if "flat" in path:
            assert len(lines) == 1 and lines[0].startswith(f"row {row} of ") and "same value" in lines[0], err
        else:
            assert lines == [], err


def test_uniform_images_decoded_on_the_device_are_flagged(mixed_images, tmp_path):
    """--decoder torchvision on a GPU: JPEG bytes are decoded with the batch (here on the CPU); a file the
    workers could not read keeps its error."""
    paths = mixed_images + [str(tmp_path / "missing.png")]
    pipeline = MocoDeviceDecodePipeline()
    items = [XrayImages(paths, pipeline)[row] for row in range(len(paths))]
    _, images, errors, uniform = zip(*items)
    assert uniform == (None, True, None, False, False)  # JPEGs: unknown until decoded
    _, errors, uniform = pipeline.finish_batch(list(images), paths, list(errors), list(uniform), torch.device("cpu"))
    assert uniform == [False, True, True, False, False]
    assert errors == [""] * 4 + ["file not found"]


def test_many_uniform_images_are_counted(tmp_path, capsys, mixed_images, monkeypatch):
    monkeypatch.setattr(xray_to_hdf5, "UNIFORM_LINES", 1)
    csv = write_csv(tmp_path / "x.csv", mixed_images)
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "linear", queue_length=16)
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", tmp_path / "x.hdf5", "-c", checkpoint,
                                                "--num_workers", 0], capsys)
    assert code == 0, err
    assert sum(mixed_images[1] in line for line in err.splitlines()) == 1
    assert mixed_images[2] not in err and "2 images in all have every pixel the same value" in err
