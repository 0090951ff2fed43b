"""End to end with no hand conversion: a folder of DICOM files -> prepare_data.py --pool_only -> xray_to_hdf5.py ->
select_xrays.py -> classify_xrays.py; and the folders and MURA layouts -> prepare_data.py -> xray_to_hdf5.py."""
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import classify_xrays
import prepare_data
import select_xrays
import xray_to_hdf5
from data.synthetic_images import write_xray_image
from tests.conftest import run_main
from tests.embedding_fixtures import read_hdf5, reference_embeddings, relative_error, write_checkpoint
from tests.medselect_helpers import memoryless_selector
from tests.medselect_helpers import write_checkpoint as write_selector_checkpoint

pydicom = pytest.importorskip("pydicom")
from pydicom.uid import RLELossless  # noqa: E402

from data.synthetic_dicom import write_dicom  # noqa: E402

SMALL_TASK = ["--set", "UNLABELED_POOL_SIZE=2", "--set", "QUERY_SET_SIZE=2", "--set", "K=1"]


def twelve_bit_picture(folder, name, rng, findings):
    """A CheXpert-like picture (NOT an X-ray) as 12-bit stored values."""
    write_xray_image(str(folder / f"{name}.jpg"), 48, 56, findings, rng)
    return np.asarray(Image.open(folder / f"{name}.jpg"), dtype=np.uint16) * 16


def test_dicom_folder_to_predictions(tmp_path, capsys):
    export, out, scratch = tmp_path / "pacs_export", tmp_path / "work", tmp_path / "scratch"
    scratch.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        stored = twelve_bit_picture(scratch, f"p{i}", rng, [1, 4] if i % 2 else [])
        write_dicom(export / f"patient{i}" / "study1" / "im1.dcm", stored, header={
            "PatientID": f"P{i}", "PatientSex": "FM"[i % 2], "PatientAge": f"0{40 + i}Y", "ViewPosition": "PA"},
            transfer_syntax=RLELossless if i % 3 == 0 else None)
        if i == 0:  # the same picture as MONOCHROME1 (bone black in the stored values)
            write_dicom(export / "patient0" / "study1" / "im2.dcm", 4095 - stored, photometric="MONOCHROME1",
                        header={"PatientID": "P0", "ViewPosition": "AP"})
    write_dicom(export / "ct" / "slice.dcm", stored, modality="CT")  # skipped by prepare_data.py, counted
    code, _, err = run_main(prepare_data.main, ["--format", "dicom", "--root", export, "--pool_only", "--out", out],
                            capsys)
    assert code == 0, err
    pool_csv = str(out / "pool.csv")
    pool = pd.read_csv(pool_csv)
    assert len(pool) == 11 and "1 DICOM file(s) skipped" in err

    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "mlp", queue_length=16)
    code, _, err = run_main(xray_to_hdf5.main, ["-d", pool_csv, "-o", out / "pool.hdf5", "--root", export, "-c",
                                                checkpoint, "--num_workers", 0, "--batch_size", 4], capsys)
    assert code == 0, err
    embeddings, _ = read_hdf5(out / "pool.hdf5")
    rows = {path: row for row, path in enumerate(pool["Path"])}
    mono2, mono1 = rows["patient0/study1/im1.dcm"], rows["patient0/study1/im2.dcm"]
    assert relative_error(embeddings[[mono1]], embeddings[[mono2]]) < 1e-6  # the same picture

    selector = write_selector_checkpoint(tmp_path / "selector.pt", memoryless_selector(embeddings.shape[1]))
    code, _, err = run_main(select_xrays.main, ["--checkpoint", selector, "--pool_csv", pool_csv, "-k", 4,
                                                "--out", out / "to_label.csv"], capsys)
    assert code == 0, err
    to_label = pd.read_csv(out / "to_label.csv")
    assert len(to_label) == 4 and set(to_label["Path"]) <= set(pool["Path"])
    labeled = to_label.assign(Edema=[1, 0, 1, 0])
    labeled.to_csv(out / "labeled.csv", index=False)
    code, _, err = run_main(classify_xrays.main, ["--labeled", out / "labeled.csv", "--label_column", "Edema",
                                                  "--unlabeled", pool_csv, "--out", out / "predictions.csv"], capsys)
    assert code == 0, err
    predictions = pd.read_csv(out / "predictions.csv")
    assert sorted(predictions["Path"]) == sorted(set(pool["Path"]) - set(to_label["Path"]))
    unit = embeddings.astype(np.float64) / np.linalg.norm(embeddings, axis=1, keepdims=True)
    labelled_rows = np.array([rows[p] for p in labeled["Path"]])
    positive, negative = labelled_rows[labeled["Edema"] == 1], labelled_rows[labeled["Edema"] == 0]
    for path, score in zip(predictions["Path"], predictions["score"]):
        similarity = unit[[rows[path]]] @ unit.T  # (1, rows)
        assert score == pytest.approx(similarity[0, positive].mean() - similarity[0, negative].mean(), abs=1e-5)


def embed_split(csv, root, checkpoint, capsys):
    """xray_to_hdf5.py on a split CSV (Path relative to ``root``); its embeddings and the reference ones."""
    code, _, err = run_main(xray_to_hdf5.main, ["-d", csv, "-o", csv.replace(".csv", ".hdf5"), "--root", root,
                                                "-c", checkpoint, "--num_workers", 0], capsys)
    assert code == 0, err
    paths = [os.path.join(root, p) for p in pd.read_csv(csv)["Path"]]
    return read_hdf5(csv.replace(".csv", ".hdf5"))[0], paths


def test_folders_layout_to_embeddings(tmp_path, capsys):
    root, out = tmp_path / "chest_xray", tmp_path / "splits"
    rng = np.random.default_rng(1)
    for split, first in (("train", 1), ("val", 10), ("test", 20)):
        for person in range(first, first + 2):
            write_xray_image(str(root / split / "PNEUMONIA" / f"person{person}_virus_{person}.jpeg"), 40, 48, [3],
                             rng)
            os.makedirs(root / split / "NORMAL", exist_ok=True)
            write_dicom(root / split / "NORMAL" / f"IM-{person:04d}-0001.dcm",
                        twelve_bit_picture(tmp_path, "n", rng, []), photometric="MONOCHROME2")
    code, _, err = run_main(prepare_data.main, ["--format", "folders", "--root", root, "--official_split",
                                                "--patient_regex", r"(person\d+|IM-\d+)", "--out", out, *SMALL_TASK],
                            capsys)
    assert code == 0, err
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "linear", queue_length=16)
    embeddings, paths = embed_split(str(out / "test_pos.csv"), str(root), checkpoint, capsys)
    assert [os.path.basename(p) for p in paths] == ["person20_virus_20.jpeg", "person21_virus_21.jpeg"]
    assert relative_error(embeddings, reference_embeddings(paths, checkpoint, "resnet18", "linear")) < 1e-4
    embeddings, paths = embed_split(str(out / "test_norm.csv"), str(root), checkpoint, capsys)
    assert embeddings.shape == (2, 512) and all(p.endswith(".dcm") for p in paths)


def test_mura_layout_to_embeddings(tmp_path, capsys):
    root, out = tmp_path / "mura", tmp_path / "splits"
    rng = np.random.default_rng(2)
    for part, patients in (("train", range(1, 7)), ("valid", range(11185, 11189))):
        images, studies = [], []
        for patient in patients:
            for body, label in (("XR_ELBOW", patient % 2), ("XR_WRIST", 1 - patient % 2)):
                study = f"MURA-v1.1/{part}/{body}/patient{patient:05d}/study1_{'positive' if label else 'negative'}/"
                studies.append(f"{study},{label}")
                images.append(f"{study}image1.png")
                os.makedirs(root / study, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, size=(40, 30), dtype=np.uint8), mode="L").save(root / images[-1])
        (root / "MURA-v1.1" / f"{part}_image_paths.csv").write_text("\n".join(images) + "\n")
        (root / "MURA-v1.1" / f"{part}_labeled_studies.csv").write_text("\n".join(studies) + "\n")
    code, _, err = run_main(prepare_data.main, ["--format", "mura", "--root", root, "--official_split",
                                                "--val_frac", 0.34, "--out", out, *SMALL_TASK], capsys)
    assert code == 0, err
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", "resnet18", "linear", queue_length=16)
    embeddings, paths = embed_split(str(out / "test_pos.csv"), str(root), checkpoint, capsys)
    assert len(paths) == 4 and all("/valid/" in p and "_positive/" in p for p in paths)
    assert relative_error(embeddings, reference_embeddings(paths, checkpoint, "resnet18", "linear")) < 1e-4
