"""xray_to_hdf5.py --encoder torchxrayvision | timm: embeddings equal the libraries' own forward pass on their own
preprocessing; the provenance is recorded; wrong options and missing libraries stop with one line.

Every model has random weights, written where the library reads them (nothing is downloaded):
torchxrayvision's files in a --weights_dir under the file names it downloads to, timm's as a
checkpoint file. The references follow the libraries' documentation and share no code with ours:
torchxrayvision's README (skimage.io.imread, xrv.datasets.normalize, XRayCenterCrop, XRayResizer,
then the model's ``features2``/``features``), timm's (resolve_data_config, create_transform, a model
made with num_classes=0).
"""
import hashlib
import math
import os
import sys

import numpy as np
import pytest
import skimage.io
import timm
import torch
import torchvision
import torchxrayvision as xrv
from PIL import Image
from safetensors.torch import save_file

import xray_to_hdf5
from models.encoders import OPTIONAL_LIBRARIES, timm_backbone
from models.encoders.trained_labels import TORCHXRAYVISION_WEIGHTS, canonical_weights_name
from tests.conftest import run_main
from tests.embedding_fixtures import (ROOT, interrupt_after_writes, read_hdf5, relative_error, write_checkpoint,
                                      write_csv, write_images)

# A portrait grey JPEG as in CheXpert and a landscape RGB PNG (torchxrayvision crops the long side).
SPECS = [(60, 74, "jpg", "L"), (80, 41, "png", "RGB")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoders")
    images = write_images(folder / "images", 2, seed=5, specs=SPECS)
    weights_dir = folder / "xrv_weights"
    weights_dir.mkdir()
    torch.manual_seed(0)
    # torchxrayvision's DenseNet files are whole pickled models; its ResNet files are state dicts.
    torch.save(xrv.models.DenseNet(weights=None), weights_dir / _xrv_file("densenet121-res224-all"))
    resnet = torchvision.models.resnet50(num_classes=18)
    resnet.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.save(resnet.state_dict(), weights_dir / _xrv_file("resnet50-res512-all"))
    return {"folder": folder, "images": images, "csv": str(write_csv(folder / "x.csv", images)),
            "weights_dir": str(weights_dir)}


def _xrv_file(name):
    return os.path.basename(xrv.models.model_urls[name]["weights_url"])


def embed(argv, capsys):
    code, _, err = run_main(xray_to_hdf5.main, argv, capsys)
    return code, err


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def xrv_reference(library_model, image_paths, size):
    """torchxrayvision's README, step by step, then the pooled features of the library's model."""
    transform = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(size)])
    features = library_model.features2 if hasattr(library_model, "features2") else library_model.features
    rows = []
    with torch.no_grad():
        for path in image_paths:
            img = xrv.datasets.normalize(skimage.io.imread(path), 255)  # 8-bit image to [-1024, 1024]
            if img.ndim == 3:
                img = img.mean(2)  # one colour channel
            img = torch.from_numpy(transform(img[None, ...]))  # (1, size, size)
            rows.append(features(img[None, ...])[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("weights, size, dim", [("densenet121-res224-all", 224, 1024),
                                                ("resnet50-res512-all", 512, 2048)])
def test_torchxrayvision_equals_library_forward(setup, tmp_path, capsys, weights, size, dim):
    out = tmp_path / "x.hdf5"
    code, err = embed(["-d", setup["csv"], "-o", out, "--encoder", "torchxrayvision", "--weights", weights,
                       "--weights_dir", setup["weights_dir"], "--batch_size", 2, "--num_workers", 1], capsys)
    assert code == 0, err
    embeddings, attrs = read_hdf5(out)
    library_model = xrv.models.get_model(weights, cache_dir=setup["weights_dir"]).eval()  # the library's loader
    expected = xrv_reference(library_model, setup["images"], size)
    assert embeddings.shape == expected.shape == (2, dim) and embeddings.dtype == np.float32
    assert relative_error(embeddings, expected) < 1e-5
    weights_file = os.path.join(setup["weights_dir"], _xrv_file(weights))
    assert (attrs["encoder"], attrs["model"], attrs["weights"]) == ("torchxrayvision", weights.split("-")[0], weights)
    assert attrs["weights_sha256"] == sha256(weights_file) and attrs["embedding_dim"] == dim
    assert f"XRayResizer({size})" in attrs["preprocessing"] and "[-1024, 1024]" in attrs["preprocessing"]
    assert "checkpoint_sha256" not in attrs  # a MoCo-only attribute


def test_torchxrayvision_short_name_and_resume(setup, tmp_path, capsys, monkeypatch):
    """'all' is the library's alias; an interrupted run resumes to the same bytes (shared writer)."""
    argv = ["-d", setup["csv"], "-o", tmp_path / "x.hdf5", "--encoder", "torchxrayvision", "--weights", "all",
            "--weights_dir", setup["weights_dir"], "--batch_size", 1, "--num_workers", 0]
    assert embed(argv + ["-o", tmp_path / "whole.hdf5"], capsys)[0] == 0
    interrupt_after_writes(monkeypatch)
    assert embed(argv, capsys)[0] == 130
    monkeypatch.undo()
    code, err = embed(argv, capsys)
    assert code == 0 and "resuming an unfinished run at row 1 of 2" in err, err
    whole, attrs = read_hdf5(tmp_path / "whole.hdf5")
    assert read_hdf5(tmp_path / "x.hdf5")[0].tobytes() == whole.tobytes()
    assert attrs["weights"] == "densenet121-res224-all"


def timm_reference(model_name, state, image_paths):
    """timm's documented inference: num_classes=0, resolve_data_config, create_transform(is_training=False)."""
    model = timm.create_model(model_name, pretrained=False, num_classes=0).eval()
    head = model.pretrained_cfg["classifier"]
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(head + ".")}, strict=True)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model), is_training=False)
    with torch.no_grad():
        return model(torch.stack([transform(Image.open(p).convert("RGB")) for p in image_paths])).numpy()


@pytest.mark.parametrize("model_name, file_format, dim", [("resnet18", "checkpoint", 512),
                                                          ("vit_tiny_patch16_224", "safetensors", 192)])
def test_timm_equals_library_forward(setup, tmp_path, capsys, model_name, file_format, dim):
    torch.manual_seed(1)
    state = timm.create_model(model_name, pretrained=False).state_dict()  # with its 1000-class head
    if file_format == "checkpoint":  # what timm's train.py saves
        weights = tmp_path / f"{model_name}.pth.tar"
        torch.save({"epoch": 3, "arch": model_name, "state_dict": state}, weights)
    else:
        weights = tmp_path / f"{model_name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    out = tmp_path / "x.hdf5"
    code, err = embed(["-d", setup["csv"], "-o", out, "--encoder", "timm", "--model", model_name,
                       "--weights", weights, "--batch_size", 2, "--num_workers", 1], capsys)
    assert code == 0, err
    embeddings, attrs = read_hdf5(out)
    expected = timm_reference(model_name, state, setup["images"])
    assert embeddings.shape == expected.shape == (2, dim)
    assert relative_error(embeddings, expected) < 1e-5
    assert (attrs["encoder"], attrs["model"], attrs["weights"]) == ("timm", model_name, weights.name)
    assert attrs["weights_sha256"] == sha256(weights) and attrs["embedding_dim"] == dim
    assert "input_size (3, 224, 224)" in attrs["preprocessing"]


def test_timm_hub_weights(setup, tmp_path, capsys, monkeypatch):
    """--weights hf-hub:ORG/NAME asks timm's hub loader (replaced here: no download in tests)."""
    torch.manual_seed(1)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    asked = []
    monkeypatch.setattr(timm.models, "load_state_dict_from_hf", lambda hub_id: asked.append(hub_id) or state)
    monkeypatch.setattr(timm_backbone, "check_hub_reachable", lambda weights: None)  # as if online
    out = tmp_path / "x.hdf5"
    code, err = embed(["-d", setup["csv"], "-o", out, "--encoder", "timm", "--model", "resnet18",
                       "--weights", "hf-hub:someone/resnet18-cxr", "--num_workers", 0], capsys)
    assert code == 0 and asked == ["someone/resnet18-cxr"], err
    embeddings, attrs = read_hdf5(out)
    assert relative_error(embeddings, timm_reference("resnet18", state, setup["images"])) < 1e-5
    assert attrs["weights"] == "hf-hub:someone/resnet18-cxr" and attrs["weights_sha256"] == ""


def test_bad_options_are_one_line_and_write_nothing(setup, tmp_path, capsys, monkeypatch):
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "linear", queue_length=16)
    resnet18 = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), resnet18)
    common = ["-d", setup["csv"], "-o", tmp_path / "x.hdf5"]
    xrv_args = ["--encoder", "torchxrayvision", "--weights_dir", setup["weights_dir"]]
    cases = [
        ([], "--encoder moco needs -c/--checkpoint_path"),
        (["-c", checkpoint, "--model", "resnet18"], "--model is an option of --encoder timm, not of --encoder moco"),
        ([*xrv_args, "--weights", "all", "-c", checkpoint], "-c/--checkpoint_path is an option of --encoder moco"),
        ([*xrv_args], "--encoder torchxrayvision needs --weights"),
        ([*xrv_args, "--weights", "densenet121-res224-everything"], "not a torchxrayvision weights name"),
        (["--encoder", "torchxrayvision", "--weights", "all", "--weights_dir", tmp_path / "nowhere"],
         "folder not found"),
        (["--encoder", "timm", "--weights", resnet18], "--encoder timm needs --model"),
        (["--encoder", "timm", "--model", "resnet18", "--weights", tmp_path / "none.pth"], "file not found"),
        (["--encoder", "timm", "--model", "resnet18", "--weights", resnet18, "--decoder", "torchvision"],
         "--decoder torchvision is an option of --encoder moco"),
        (["--encoder", "timm", "--model", "no_such_net", "--weights", resnet18], "--model no_such_net"),
        (["--encoder", "timm", "--model", "resnet34", "--weights", resnet18], "does not fit timm model resnet34"),
        (["--encoder", "timm", "--model", "vit_tiny_patch16_224", "--weights", resnet18],
         "does not fit timm model vit_tiny_patch16_224"),
    ]
    before = sorted(os.listdir(tmp_path))
    for extra, message in cases:
        code, err = embed(common + extra, capsys)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (extra, err)
        assert message in err, (extra, err)
        assert sorted(os.listdir(tmp_path)) == before
    # torchxrayvision's weights missing and no internet: the file to fetch and where to put it.
    monkeypatch.setattr(xrv.utils, "download", lambda url, filename: (_ for _ in ()).throw(ConnectionError("offline")))
    empty = tmp_path / "empty_weights"
    empty.mkdir()
    code, err = embed(common + ["--encoder", "torchxrayvision", "--weights", "nih", "--weights_dir", empty], capsys)
    assert code == 2 and err.count("\n") == 1 and "offline" in err, err
    assert xrv.models.model_urls["nih"]["weights_url"] in err and str(empty) in err


@pytest.mark.parametrize("library", sorted(OPTIONAL_LIBRARIES))
def test_missing_optional_library_names_the_install_command(setup, tmp_path, capsys, monkeypatch, library):
    monkeypatch.setitem(sys.modules, library, None)  # makes "import <library>" fail as if not installed
    options = {"torchxrayvision": ["--weights", "all"], "timm": ["--model", "resnet18", "--weights", setup["csv"]]}
    code, err = embed(["-d", setup["csv"], "-o", tmp_path / "x.hdf5", "--encoder", library, *options[library]],
                      capsys)
    with open(os.path.join(ROOT, "requirements-encoders.txt")) as f:
        pinned = next(line.strip() for line in f if line.startswith(library + "=="))
    assert code == 2 and err == f"error: --encoder {library} needs the {library} package, which is not " \
                                f"installed: pip install {pinned}\n"
    assert os.listdir(tmp_path) == []


def test_resume_refuses_another_encoder(setup, tmp_path, capsys, monkeypatch):
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "linear", queue_length=16)
    out = tmp_path / "x.hdf5"
    interrupt_after_writes(monkeypatch)
    assert embed(["-d", setup["csv"], "-o", out, "-c", checkpoint, "--batch_size", 1, "--num_workers", 0],
                 capsys)[0] == 130
    monkeypatch.undo()
    partial = (tmp_path / "x.hdf5.partial").read_bytes()
    xrv_argv = ["-d", setup["csv"], "-o", out, "--encoder", "torchxrayvision", "--weights", "all",
                "--weights_dir", setup["weights_dir"], "--num_workers", 0]
    code, err = embed(xrv_argv, capsys)
    assert code == 2 and "different encoder, model, weights, weights_sha256, preprocessing" in err, err
    assert (tmp_path / "x.hdf5.partial").read_bytes() == partial
    code, err = embed(xrv_argv + ["--overwrite"], capsys)
    assert code == 0 and "starting over" in err and read_hdf5(out)[1]["encoder"] == "torchxrayvision"


def test_label_table_matches_the_library():
    """Our table of trained labels against torchxrayvision's own metadata: an output was trained when it has
    a label and an operating-point threshold (NaN marks the outputs that predict nothing)."""
    for name, (_, labels) in TORCHXRAYVISION_WEIGHTS.items():
        meta = xrv.models.model_urls[name]
        trained = {label for label, threshold in zip(meta["labels"], meta["op_threshs"])
                   if label and not math.isnan(threshold)}
        assert set(labels) == trained, name
    assert set(TORCHXRAYVISION_WEIGHTS) == {n for n in xrv.models.model_urls if "-res" in n}  # every weights file
    for alias in ("all", "nih", "pc", "chex", "rsna", "mimic_nb", "mimic_ch"):
        assert xrv.models.model_urls[alias] is xrv.models.model_urls[canonical_weights_name(alias)]
