"""DICOM X-rays are read as the picture a radiologist sees (bit depth, MONOCHROME1, rescale, window, VOI LUT),
by every encoder and both decoders, and files that are not single-frame grey radiographs are refused.

Every file is written by pydicom (data/synthetic_dicom.py) from one 12-bit picture S. Its 8-bit export, computed
here independently as round(S * 255 / 4095) and saved as a PNG, is what each reading must give (within one
grey level); the wrong readings a hand conversion makes (the inverted picture; 12 bits read as 16) must embed
at least ten times further from it than the DICOM files do.
"""
import h5py
import numpy as np
import pytest
from PIL import Image

import xray_to_hdf5
from data.dicom import read_dicom
from data.embedding_writer import EmbeddingWriter, resume_position
from data.images import decode, decode_torchvision
from data.synthetic_dicom import write_dicom
from data.synthetic_images import write_xray_image
from tests.conftest import run_main
from tests.embedding_fixtures import read_hdf5, write_checkpoint, write_csv
from utils.errors import UserError

pydicom = pytest.importorskip("pydicom")
from pydicom.pixels import get_decoder  # noqa: E402
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless  # noqa: E402

MAX12 = 4095


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """(folder, S: a 12-bit CheXpert-like picture (96 x 80), E: its 8-bit export as the PNG export.png)."""
    folder = tmp_path_factory.mktemp("dicom")
    rng = np.random.default_rng(0)
    write_xray_image(str(folder / "source.jpg"), 80, 96, [1, 4], rng)
    eight = np.asarray(Image.open(folder / "source.jpg"), dtype=np.uint16)
    stored = eight * 16 + rng.integers(0, 16, size=eight.shape).astype(np.uint16)  # detail below 8 bits
    export = np.round(stored.astype(np.float64) * 255 / MAX12).astype(np.uint8)
    Image.fromarray(export, mode="L").save(folder / "export.png")
    return folder, stored, export


def full_window(low, high):
    """(WindowCenter, WindowWidth) whose LINEAR window (DICOM PS3.3 C.11.2.1.2) runs from ``low`` to ``high``."""
    return (low + high) / 2 + 0.5, high - low + 1


def readings(folder, stored, export):
    """{name: DICOM file} of the same picture, each a reading that must give ``export``."""
    rescaled = (-1024.0, 0.5 * MAX12 - 1024.0)  # stored 0..4095 with slope 0.5, intercept -1024
    files = {
        "12-bit MONOCHROME2": write_dicom(folder / "mono2.dcm", stored),
        "12-bit MONOCHROME1": write_dicom(folder / "mono1.dcm", MAX12 - stored, photometric="MONOCHROME1"),
        "rescale slope/intercept, window in rescaled units": write_dicom(
            folder / "rescale.dcm", stored, rescale=(0.5, -1024), window=full_window(*rescaled)),
        "window over the full range": write_dicom(folder / "window", stored, window=full_window(0, MAX12)),
        # A VOI LUT (16-bit entries) is preferred to the narrow window beside it.
        "VOI LUT sequence": write_dicom(folder / "voilut.dcm", stored, window=(1000, 200),
                                        voi_lut=(0, 16, np.round(np.arange(MAX12 + 1) * 65535 / MAX12))),
        # Declared 16 bits per entry, holding 12-bit values (as some CRs write): read as 12 bits.
        "VOI LUT, 12-bit entries declared 16": write_dicom(folder / "voilut12.dcm", stored,
                                                            voi_lut=(0, 16, np.arange(MAX12 + 1))),
        "8-bit": write_dicom(folder / "eight.dcm", export, bits_stored=8),
        "12-bit MONOCHROME2, RLE": write_dicom(folder / "rle.dcm", stored, transfer_syntax=RLELossless),
    }
    if get_decoder(JPEG2000Lossless).is_available:  # pylibjpeg-openjpeg encodes and decodes it
        files["12-bit JPEG 2000 lossless"] = write_dicom(folder / "j2k.dcm", stored, transfer_syntax=JPEG2000Lossless)
    return files


def test_every_reading_gives_the_8_bit_export(picture):
    folder, stored, export = picture
    files = readings(folder, stored, export)
    # One file has no suffix: DICOM files are recognised by 'DICM' at byte 128 too.
    assert not files["window over the full range"].endswith(".dcm")
    for name, path in files.items():
        for decoded in (decode(path), decode_torchvision(path)):
            assert decoded.mode == "L", name
            difference = np.abs(np.asarray(decoded, dtype=int) - export.astype(int))
            assert difference.max() <= 1, (name, difference.max())
    # --dicom_windowing full_range ignores the VOI LUT and reads the stored range: the export too.
    assert np.abs(np.asarray(decode(files["VOI LUT sequence"], "full_range"), dtype=int) - export).max() <= 1


def test_jpeg_baseline_dicom_decodes_as_its_jpeg(picture, tmp_path):
    """An 8-bit lossy JPEG inside a DICOM file reads as Pillow reads that JPEG (decoders differ by one level)."""
    if not get_decoder(JPEGBaseline8Bit).is_available:
        pytest.skip("no JPEG decoder plugin for pydicom")
    from pydicom.encaps import encapsulate
    _, _, export = picture
    Image.fromarray(export, mode="L").save(tmp_path / "x.jpg", quality=90)
    path = write_dicom(tmp_path / "jpeg.dcm", export, bits_stored=8)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([(tmp_path / "x.jpg").read_bytes()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    expected = np.asarray(Image.open(tmp_path / "x.jpg"), dtype=int)
    assert np.abs(np.asarray(read_dicom(path), dtype=int) - expected).max() <= 1


def test_narrow_window_and_the_rules_that_ignore_it(picture, tmp_path):
    _, stored, export = picture
    center, width = 1500, 401
    path = write_dicom(tmp_path / "narrow.dcm", stored, window=(center, width))
    # PS3.3 C.11.2.1.2.1 by hand: ((x - (c - 0.5)) / (w - 1) + 0.5) clipped to [0, 1], onto 0..255.
    expected = np.clip((stored - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    windowed = np.asarray(decode(path), dtype=np.float64)
    assert np.abs(windowed - expected).max() <= 1
    assert np.abs(windowed - export).mean() > 20  # windowing changes the picture
    for rule in ("full_range",):
        assert np.abs(np.asarray(decode(path, rule), dtype=int) - export).max() <= 1
    lut = write_dicom(tmp_path / "lut.dcm", stored, window=(center, width), voi_lut=(0, 8, np.full(MAX12 + 1, 7)))
    assert np.asarray(decode(lut)).max() == np.asarray(decode(lut)).min() == 7  # the LUT, preferred
    assert np.abs(np.asarray(decode(lut, "window"), dtype=np.float64) - expected).max() <= 1  # the window


def cosine_distances(embeddings, row, others):
    vectors = embeddings.astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [1 - float(vectors[row] @ vectors[other]) for other in others]


@pytest.fixture(scope="module")
def embedding_inputs(picture):
    """A CSV: the export, the two wrong readings, then the DICOM files."""
    folder, stored, export = picture
    Image.fromarray(255 - export, mode="L").save(folder / "inverted.png")
    as_16_bits = np.round(stored.astype(np.float64) * 255 / 65535).astype(np.uint8)  # 12 bits read as 16: dark
    Image.fromarray(as_16_bits, mode="L").save(folder / "as16.png")
    files = readings(folder, stored, export)
    paths = [str(folder / "export.png"), str(folder / "inverted.png"), str(folder / "as16.png"), *files.values()]
    return folder, write_csv(folder / "x.csv", paths), list(files)


def check_closer_to_export(out, names):
    embeddings, attrs = read_hdf5(out)
    assert attrs["dicom_windowing"] == "voi_lut" and "MONOCHROME1" in attrs["dicom_preprocessing"]
    for i, name in enumerate(names):
        right, inverted, as16 = cosine_distances(embeddings, 3 + i, [0, 1, 2])
        print(f"{name}: 1 - cosine to the export {right:.2e}, to the inverted {inverted:.2e}, to 16-bit {as16:.2e}")
        assert min(inverted, as16) >= 10 * right, name


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
def test_dicom_embeds_like_its_export_moco(embedding_inputs, tmp_path, capsys, decoder):
    folder, csv, names = embedding_inputs
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "mlp", queue_length=16)
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", tmp_path / "x.hdf5", "-c", checkpoint,
                                                "--decoder", decoder, "--num_workers", 1, "--batch_size", 4], capsys)
    assert code == 0, err
    check_closer_to_export(tmp_path / "x.hdf5", names)


@pytest.mark.parametrize("encoder", ["torchxrayvision", "timm"])
def test_dicom_embeds_like_its_export_other_encoders(embedding_inputs, tmp_path, capsys, encoder):
    pytest.importorskip(encoder)
    from models.random_weights import write_timm_weights, write_torchxrayvision_weights
    folder, csv, names = embedding_inputs
    if encoder == "torchxrayvision":
        write_torchxrayvision_weights(str(tmp_path), "densenet121-res224-all")
        options = ["--weights", "densenet121-res224-all", "--weights_dir", tmp_path]
    else:
        options = ["--model", "resnet10t", "--weights", write_timm_weights(str(tmp_path / "w.pth"), "resnet10t")]
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", tmp_path / "x.hdf5", "--encoder", encoder, *options,
                                                "--num_workers", 0], capsys)
    assert code == 0, err
    check_closer_to_export(tmp_path / "x.hdf5", names)


@pytest.fixture
def refused(tmp_path):
    """{file: the reason it must be refused with}."""
    grey = np.random.default_rng(3).integers(0, MAX12, size=(16, 12))
    no_pixels = write_dicom(tmp_path / "nopixels.dcm", grey)
    ds = pydicom.dcmread(no_pixels)
    del ds.PixelData
    ds.save_as(no_pixels, enforce_file_format=True)
    return {
        write_dicom(tmp_path / "ct.dcm", grey, modality="CT"): "DICOM Modality CT (computed tomography) is not a radiograph",
        write_dicom(tmp_path / "rgb.dcm", np.stack([grey % 256] * 3, axis=-1), bits_stored=8):
            "colour DICOM (SamplesPerPixel 3, RGB)",
        write_dicom(tmp_path / "frames.dcm", np.stack([grey, grey]), frames=2): "multi-frame DICOM (2 frames)",
        no_pixels: "DICOM file without an image (no PixelData)",
    }


def test_refused_files_stop_with_one_line(refused, tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "linear", queue_length=16)
    for path, reason in refused.items():
        with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            decode(path)
    first = next(iter(refused))
    csv = write_csv(tmp_path / "one.csv", [first])
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", tmp_path / "x.hdf5", "-c", checkpoint,
                                                "--num_workers", 0], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1] == f"error: row 0 of {csv}: cannot read image {first} ({refused[first]}; only " \
        "CR, DX, IO, MG, OT, PX, RG (or none) are embedded); nothing was written", err
    assert "Traceback" not in err and not (tmp_path / "x.hdf5").exists()
    # --check lists every refused file, each with its reason, before embedding anything.
    csv = write_csv(tmp_path / "all.csv", list(refused))
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", tmp_path / "x.hdf5", "-c", checkpoint, "--check",
                                                "--num_workers", 0], capsys)
    assert code == 2 and f"4 of 4 images listed in {csv} cannot be read" in err
    for path, reason in refused.items():
        assert sum(path in line and reason in line for line in err.splitlines()) == 1, (path, err)


def test_missing_decoder_plugin_names_the_syntax_and_the_install(picture, tmp_path, monkeypatch):
    _, stored, _ = picture
    path = write_dicom(tmp_path / "rle.dcm", stored, transfer_syntax=RLELossless)
    monkeypatch.setattr(type(get_decoder(RLELossless)), "is_available", property(lambda self: False))
    with pytest.raises(ValueError) as caught:
        decode(path)
    assert str(caught.value) == (f"DICOM transfer syntax RLE Lossless ({RLELossless}) needs a decoder plugin that is "
                                 "not installed: pip install pylibjpeg pylibjpeg-rle")


def test_windowing_rule_is_recorded_and_a_resume_with_another_is_refused(picture, tmp_path, capsys):
    _, stored, _ = picture
    csv = write_csv(tmp_path / "x.csv", [write_dicom(tmp_path / "mono1.dcm", MAX12 - stored, photometric="MONOCHROME1")])
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "linear", queue_length=16)
    out = tmp_path / "x.hdf5"
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", out, "-c", checkpoint, "--num_workers", 0,
                                                "--dicom_windowing", "full_range"], capsys)
    assert code == 0, err
    attrs = dict(h5py.File(out, "r").attrs)
    assert attrs["dicom_windowing"] == "full_range" and "ignored" in attrs["dicom_preprocessing"]
    attrs["dicom_windowing"] = "voi_lut"
    partial = EmbeddingWriter.open(str(out) + ".partial", 1, int(attrs["embedding_dim"]), attrs, 0)
    partial.file.close()
    with pytest.raises(UserError, match="different dicom_windowing"):
        resume_position(str(out), {**attrs, "dicom_windowing": "window"}, overwrite=False)
    # A .partial written before DICOM input existed (no such attribute) resumes under the default rule.
    del partial
    with h5py.File(str(out) + ".partial", "a") as f:
        del f.attrs["dicom_windowing"]
    assert resume_position(str(out), attrs, overwrite=False) == 0
    with pytest.raises(UserError, match="different dicom_windowing"):
        resume_position(str(out), {**attrs, "dicom_windowing": "full_range"}, overwrite=False)
