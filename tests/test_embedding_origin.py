"""Embeddings of different encoders are never mixed; a held-out condition the encoder was trained on is flagged.

The HDF5 files here are tiny generated ones whose attributes say which encoder made them, as
xray_to_hdf5.py records it (tests/test_encoders.py checks that it does).
"""
import json
import os

import h5py
import pytest
import torch

import evaluate
import run_selector
import select_xrays
from data.embedding_origin import EmbeddingOrigin, check_same_encoder, origin_from_attributes
from data.xray_table import load_xray_table
from models.encoders.trained_labels import conditions_trained_on, label_leakage
from tests.conftest import TINY_SETTINGS, run_main, write_tiny_split
from tests.evaluate_helpers import SETTINGS, write_checkpoint, write_test_split
from tests.medselect_helpers import DIM, memoryless_selector, write_pool
from utils.errors import UserError

MOCO = {"encoder": "moco", "model": "resnet18", "weights": "r8w-00001.pth.tar", "weights_sha256": "a1" * 32,
        "checkpoint_sha256": "a1" * 32, "arch": "resnet18", "checkpoint_file": "r8w-00001.pth.tar"}
XRV_ALL = {"encoder": "torchxrayvision", "model": "densenet121", "weights": "densenet121-res224-all",
           "weights_sha256": "b2" * 32}
XRV_RSNA = {"encoder": "torchxrayvision", "model": "densenet121", "weights": "densenet121-res224-rsna",
            "weights_sha256": "c3" * 32}
TIMM = {"encoder": "timm", "model": "vit_small_patch16_224", "weights": "hf-hub:someone/cxr-vit",
        "weights_sha256": ""}


def record(csv_path, attrs):
    """Give the HDF5 beside ``csv_path`` the attributes xray_to_hdf5.py would have written."""
    with h5py.File(os.path.splitext(str(csv_path))[0] + ".hdf5", "a") as f:
        f.attrs.update(attrs)


def assert_refused(code, err, *fragments):
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_same_encoder_by_hash_then_name():
    """Hand-worked cases: the weights' hash decides when both files have one, else their name."""
    a = EmbeddingOrigin("moco", "resnet18", "r8w.pth.tar", "11" * 32)
    assert a.same_encoder(EmbeddingOrigin("moco", "resnet18", "renamed.pth.tar", "11" * 32))
    assert not a.same_encoder(EmbeddingOrigin("moco", "resnet18", "r8w.pth.tar", "22" * 32))
    assert not a.same_encoder(EmbeddingOrigin("moco", "resnet50", "r8w.pth.tar", "11" * 32))
    assert not a.same_encoder(EmbeddingOrigin("timm", "resnet18", "r8w.pth.tar", "11" * 32))
    hub = EmbeddingOrigin("timm", "vit", "hf-hub:a/b")
    assert hub.same_encoder(EmbeddingOrigin("timm", "vit", "hf-hub:a/b", "33" * 32))
    assert not hub.same_encoder(EmbeddingOrigin("timm", "vit", "hf-hub:a/c"))
    # MoCo files written before the encoder was recorded: the same checkpoint by its hash.
    legacy = origin_from_attributes({"checkpoint_sha256": "a1" * 32, "arch": "resnet18",
                                     "checkpoint_file": "old_name.pth.tar"}, "old.hdf5")
    assert legacy.same_encoder(origin_from_attributes(MOCO, "new.hdf5"))
    assert origin_from_attributes({"note": "synthetic"}, "original.hdf5") is None  # the original's files
    check_same_encoder(None, legacy)  # unknown origins are never refused
    with pytest.raises(UserError):
        check_same_encoder(legacy, origin_from_attributes(XRV_ALL, "x.hdf5"))


def test_run_selector_refuses_train_and_val_from_different_encoders(tmp_path, capsys):
    train_pos, train_norm = write_tiny_split(tmp_path / "data", "train", seed=1)
    val_pos, val_norm = write_tiny_split(tmp_path / "data", "val", seed=2)
    for csv_path in (train_pos, train_norm):
        record(csv_path, MOCO)
    for csv_path in (val_pos, val_norm):
        record(csv_path, XRV_ALL)
    out = tmp_path / "run"
    code, _, err = run_main(run_selector.main, ["--train_pos_csv", train_pos, "--train_norm_csv", train_norm,
                                                "--val_pos_csv", val_pos, "--val_norm_csv", val_norm,
                                                "--out", out, *sum((["--set", s] for s in TINY_SETTINGS), [])],
                            capsys)
    line = assert_refused(code, err, "train_pos.hdf5", "val_pos.hdf5", "moco resnet18", "r8w-00001.pth.tar",
                          "torchxrayvision densenet121", "densenet121-res224-all", "different encoders")
    assert line.count("\n") == 0 and not out.exists()


def test_positives_and_normals_of_one_split_from_different_encoders(tmp_path, capsys):
    positive_csv, normal_csv = write_test_split(str(tmp_path / "data"))
    record(positive_csv, XRV_ALL)
    record(normal_csv, XRV_RSNA)
    out = tmp_path / "results"
    code, _, err = run_main(evaluate.main, ["--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv,
                                            "--methods", "random", "--out", out,
                                            *sum((["--set", s] for s in SETTINGS), [])], capsys)
    assert_refused(code, err, "test_pos.hdf5", "test_norm.hdf5", "densenet121-res224-all", "densenet121-res224-rsna")
    assert not out.exists()
    # A file without a recorded encoder (the original code's) goes with any other.
    with h5py.File(os.path.splitext(normal_csv)[0] + ".hdf5", "a") as f:
        for key in XRV_RSNA:
            del f.attrs[key]
    table = load_xray_table(positive_csv, normal_csv, ["Atelectasis"])
    assert table.origin.weights == "densenet121-res224-all" and table.origin.source.endswith("test_pos.hdf5")


def test_selector_is_used_only_on_embeddings_of_its_encoder(tmp_path, capsys):
    """run_selector.py records the encoder in config.json and checkpoints; evaluate and select_xrays check it."""
    train_pos, train_norm = write_tiny_split(tmp_path / "data", "train", seed=1)
    val_pos, val_norm = write_tiny_split(tmp_path / "data", "val", seed=2)
    for csv_path in (train_pos, train_norm, val_pos, val_norm):
        record(csv_path, MOCO)
    out = tmp_path / "run"
    code, _, err = run_main(run_selector.main, ["--train_pos_csv", train_pos, "--train_norm_csv", train_norm,
                                                "--val_pos_csv", val_pos, "--val_norm_csv", val_norm, "--out", out,
                                                *sum((["--set", s] for s in TINY_SETTINGS), [])], capsys)
    assert code == 0, err
    expected = {k: MOCO[k] for k in ("encoder", "model", "weights", "weights_sha256")}
    with open(out / "config.json") as f:
        assert json.load(f)["embedding_origin"] == expected
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["embedding_origin"] == expected
    best = [name for name in os.listdir(out) if name.startswith("model_epoch")]
    assert best and all(torch.load(out / name, weights_only=False)["embedding_origin"] == expected for name in best)

    # The same selector on a pool embedded with torchxrayvision: refused, naming both.
    pool_csv, _, _ = write_pool(tmp_path / "pool")
    record(pool_csv, XRV_ALL)
    chosen = tmp_path / "to_label.csv"
    code, _, err = run_main(select_xrays.main, ["--pool_csv", pool_csv, "--checkpoint", out / "last.pt", "-k", 3,
                                                "--out", chosen], capsys)
    assert_refused(code, err, "last.pt", "moco resnet18", "my_xrays.hdf5", "densenet121-res224-all")
    assert not chosen.exists()
    # ... and evaluated on test embeddings of torchxrayvision: refused too.
    positive_csv, normal_csv = write_test_split(str(tmp_path / "test"))
    for csv_path in (positive_csv, normal_csv):
        record(csv_path, XRV_ALL)
    code, _, err = run_main(evaluate.main, ["--checkpoint", out / "last.pt", "--test_pos_csv", positive_csv,
                                            "--test_norm_csv", normal_csv, "--out", tmp_path / "results"], capsys)
    assert_refused(code, err, "last.pt", "test_pos.hdf5", "different encoders")
    # On a pool of its own encoder it runs.
    record(pool_csv, MOCO)
    code, _, err = run_main(select_xrays.main, ["--pool_csv", pool_csv, "--checkpoint", out / "last.pt", "-k", 3,
                                                "--out", chosen], capsys)
    assert code == 0 and chosen.exists(), err


def test_original_checkpoints_and_files_are_not_refused(tmp_path, capsys):
    selector_path = tmp_path / "original.pt"
    torch.save({"epoch": 1, "model_state_dict": memoryless_selector(DIM).state_dict(),
                "optimizer_state_dict": {}}, selector_path)
    pool_csv, _, _ = write_pool(tmp_path / "pool")
    record(pool_csv, XRV_ALL)
    code, _, err = run_main(select_xrays.main, ["--pool_csv", pool_csv, "--checkpoint", selector_path, "-k", 3,
                                                "--out", tmp_path / "chosen.csv"], capsys)
    assert code == 0, err


def test_leaked_conditions_in_either_naming():
    """Hand-checked against torchxrayvision's label lists: NIH's 'Effusion' is CheXpert's 'Pleural Effusion'."""
    conditions = ["Effusion", "Pleural Effusion", "Mass", "Lung Lesion", "Enlarged Cardiomediastinum", "Fracture"]
    for attrs, leaked in ((XRV_ALL, conditions),
                          ({**XRV_ALL, "weights": "chex"}, ["Effusion", "Pleural Effusion", "Lung Lesion",
                                                             "Enlarged Cardiomediastinum", "Fracture"]),
                          ({**XRV_ALL, "weights": "densenet121-res224-nih"}, ["Effusion", "Pleural Effusion", "Mass"]),
                          (XRV_RSNA, []), (MOCO, []), (TIMM, [])):
        assert label_leakage(origin_from_attributes(attrs, "x.hdf5"), conditions) == leaked, attrs["weights"]
    assert conditions_trained_on(origin_from_attributes(TIMM, "x.hdf5")) is None


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("leakage")
    return folder, write_test_split(str(folder / "data")), write_checkpoint(str(folder / "model_epoch1_iter30"))


@pytest.mark.parametrize("attrs, conditions, leaked", [
    (XRV_ALL, "all", ["Atelectasis", "Edema"]),         # trained on every NIH/CheXpert label
    ({**XRV_ALL, "weights": "resnet50-res512-all", "model": "resnet50"}, "unseen", ["Atelectasis", "Edema"]),
    (XRV_ALL, "seen", []),                              # no held-out condition evaluated
    (XRV_RSNA, "all", []),                              # trained on Pneumonia and Lung Opacity only
    (MOCO, "all", []),                                  # self-supervised: no labels
    ({}, "all", []),                                    # unknown origin: nothing to say
])
def test_leakage_warning_in_log_and_results(test_split, capsys, attrs, conditions, leaked):
    folder, (positive_csv, normal_csv), checkpoint = test_split
    for csv_path in (positive_csv, normal_csv):
        with h5py.File(os.path.splitext(csv_path)[0] + ".hdf5", "a") as f:
            for key in list(f.attrs):
                del f.attrs[key]
            f.attrs.update(attrs)
    out = folder / f"results_{attrs.get('weights', 'none')}_{conditions}"
    code, _, err = run_main(evaluate.main, ["--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv,
                                            "--methods", "random", "--conditions", conditions, "--out", out,
                                            "--bootstrap", 20, *sum((["--set", s] for s in SETTINGS), [])], capsys)
    assert code == 0, err
    report = (out / "results.md").read_text()
    with open(out / "results.json") as f:
        warnings = json.load(f)["warnings"]
    if leaked:
        warning_lines = [line for line in err.splitlines() if "LABEL LEAKAGE" in line]
        assert len(warning_lines) == 2, err  # before the long part, and again after the tables
        assert all(f"held-out condition(s) {', '.join(leaked)};" in line for line in warning_lines)
        assert report.startswith("**WARNING: LABEL LEAKAGE") and attrs["weights"] in report.splitlines()[0]
        assert len(warnings) == 1 and ", ".join(leaked) in warnings[0]
    else:
        assert "LABEL LEAKAGE" not in err and "LABEL LEAKAGE" not in report and warnings == []


def test_unknown_labels_of_timm_weights_are_noted(test_split, capsys):
    folder, (positive_csv, normal_csv), _ = test_split
    for csv_path in (positive_csv, normal_csv):
        record(csv_path, TIMM)
    code, _, err = run_main(evaluate.main, ["--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv,
                                            "--methods", "random", "--out", folder / "timm", "--bootstrap", 20,
                                            *sum((["--set", s] for s in SETTINGS), [])], capsys)
    assert code == 0, err
    assert "labels timm vit_small_patch16_224 (weights hf-hub:someone/cxr-vit) was trained with are unknown" in err
    assert "LABEL LEAKAGE" not in err
