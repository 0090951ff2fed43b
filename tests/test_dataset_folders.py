"""prepare_data.py --format dicom | folders | mura on tiny generated trees, against hand-worked answers, and the
DICOM header table on the real header tables that torchxrayvision ships (skipped without it)."""
import hashlib
import os

import numpy as np
import pandas as pd
import pytest

import prepare_data
from tests.conftest import run_main

pydicom = pytest.importorskip("pydicom")
from data.synthetic_dicom import write_dicom  # noqa: E402

SMALL_TASK = ["--set", "UNLABELED_POOL_SIZE=2", "--set", "QUERY_SET_SIZE=2", "--set", "K=1"]
GREY = np.random.default_rng(0).integers(0, 4096, size=(8, 6))
POOL_COLUMNS = ["Path", "PatientID", "StudyInstanceUID", "SOPInstanceUID", "AccessionNumber", "Sex", "Age",
                "Frontal/Lateral", "ViewPosition", "Modality"]


def run(argv, capsys):
    return run_main(prepare_data.main, argv, capsys)


def read_splits(out):
    return {name: pd.read_csv(os.path.join(out, f"{name}.csv"))
            for name in (f"{s}_{k}" for s in ("train", "val", "test") for k in ("pos", "norm"))}


# (file, PatientID, PatientSex, PatientAge, StudyDate, PatientBirthDate, ViewPosition) -> expected (Sex, Age, view)
HEADERS = [
    ("p1/a.dcm", "P1", "F", "061Y", None, None, "PA", ("Female", 61.0, "Frontal")),
    ("p1/b.dcm", "P1", "F", "061Y", None, None, "LL", ("Female", 61.0, "Lateral")),
    ("p2/IM0001", "P2", "M", "006M", None, None, "AP", ("Male", 0.5, "Frontal")),  # no suffix: DICM at byte 128
    ("p3/c.dicom", "P3", "O", "010D", None, None, "LATERAL", ("Other", 10 / 365.25, "Lateral")),
    ("p4/d.dcm", "P4", None, "003W", None, None, None, (None, 21 / 365.25, None)),
    ("p5/e.dcm", "P5", "F", None, "20200301", "19500301", "RL", ("Female", 25568 / 365.25, "Lateral")),
    ("p6/f.dcm", "P6", "M", "45", None, None, "OBLIQUE", ("Male", 45.0, None)),  # a bare number: years
]


def write_header_tree(root):
    """HEADERS as DICOM files, plus a CT, a colour image, a file that is not DICOM and a broken one."""
    for path, patient, sex, age, study, birth, view, _ in HEADERS:
        header = {"PatientID": patient, "AccessionNumber": f"A{path[:2]}", "PatientSex": sex, "PatientAge": age,
                  "StudyDate": study, "PatientBirthDate": birth, "ViewPosition": view}
        os.makedirs(os.path.dirname(root / path), exist_ok=True)
        write_dicom(root / path, GREY, header={k: v for k, v in header.items() if v is not None})
    write_dicom(root / "ct.dcm", GREY, modality="CT")
    write_dicom(root / "rgb.dcm", np.stack([GREY % 256] * 3, axis=-1), bits_stored=8)
    (root / "readme.txt").write_text("not an image")
    (root / "broken.dcm").write_text("a .dcm file that is not DICOM")


def test_dicom_pool_csv_equals_the_headers_written(tmp_path, capsys):
    root, out = tmp_path / "export", tmp_path / "out"
    write_header_tree(root)
    code, _, err = run(["--format", "dicom", "--root", root, "--pool_only", "--out", out], capsys)
    assert code == 0, err
    pool = pd.read_csv(out / "pool.csv", dtype={"PatientID": str, "ViewPosition": str})
    assert list(pool.columns) == POOL_COLUMNS
    assert list(pool["Path"]) == sorted(h[0] for h in HEADERS)  # the other files are not X-rays it can use
    expected = {h[0]: h for h in HEADERS}
    for row in pool.itertuples(index=False):
        _, patient, _, _, _, _, view, (sex, age, frontal) = expected[row.Path]
        written = pydicom.dcmread(root / row.Path)
        assert (row.PatientID, row.SOPInstanceUID, row.StudyInstanceUID) == (
            patient, written.SOPInstanceUID, written.StudyInstanceUID)
        assert row.Sex == sex or (sex is None and pd.isna(row.Sex))
        assert row.Age == pytest.approx(age)
        assert row._7 == frontal or (frontal is None and pd.isna(row._7))  # Frontal/Lateral
        assert row.Modality == "DX" and row.AccessionNumber == f"A{row.Path[:2]}"
    skipped = pd.read_csv(out / "skipped_files.csv")
    reasons = {"broken.dcm": "unreadable: not a DICOM file", "ct.dcm": "DICOM Modality CT (computed tomography)",
               "rgb.dcm": "colour DICOM (SamplesPerPixel 3"}
    assert sorted(skipped["Path"]) == sorted(reasons)
    assert all(reason.startswith(reasons[path]) for path, reason in zip(skipped["Path"], skipped["reason"]))
    assert "3 DICOM file(s) skipped" in err and "1 file(s) under" in err and "OBLIQUE 1" in err


def test_dicom_pool_with_hashed_patients_and_refusals(tmp_path, capsys):
    root = tmp_path / "export"
    write_header_tree(root)
    code, _, err = run(["--format", "dicom", "--root", root, "--pool_only", "--hash_patient", "s3cret",
                        "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    pool = pd.read_csv(tmp_path / "out" / "pool.csv")
    expected = {h[0]: hashlib.sha256(f"s3cret{h[1]}".encode()).hexdigest()[:16] for h in HEADERS}
    assert dict(zip(pool["Path"], pool["PatientID"])) == expected
    (tmp_path / "empty").mkdir()
    for argv, message in [
        (["--root", tmp_path / "empty", "--pool_only"], "no readable DICOM X-ray in 0 file(s)"),
        (["--root", root], "--format dicom needs --labels CSV and --label_key COLUMN"),
        (["--root", root, "--pool_only", "--labels", "x.csv", "--label_key", "PatientID"], "--pool_only writes a pool"),
        (["--root", root, "--labels", "x.csv"], "--labels and --label_key go together"),
        (["--root", root, "--pool_only", "--official_split"], "--official_split is for --format nih, mimic"),
        (["--root", root, "--pool_only", "--normal_name", "N"], "--normal_name is an option of --format folders"),
    ]:
        code, _, err = run(["--format", "dicom", *argv, "--out", tmp_path / "refused"], capsys)
        assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "refused").exists()
    code, _, err = run(["--format", "dicom", "--root", root, "--pool_only", "--out", tmp_path / "out"], capsys)
    assert code == 2 and "pool.csv" in err and "--overwrite" in err  # an existing pool is kept


def test_dicom_labels_joined_and_split_by_patient(tmp_path, capsys):
    root, out = tmp_path / "export", tmp_path / "out"
    rng = np.random.default_rng(1)
    labels = []
    for patient in range(12):
        for image in range(2):
            path = write_dicom(root / f"{patient}_{image}.dcm", GREY, header={"PatientID": f"P{patient}"})
            uid = pydicom.dcmread(path).SOPInstanceUID
            positive = image == 0
            labels.append({"SOPInstanceUID": uid, "No Finding": None if positive else 1.0,
                           "Edema": float(positive), "Cardiomegaly": -1.0 if positive and patient % 2 else None,
                           "note": f"n{patient}_{image}"})
    labels.append({"SOPInstanceUID": "1.2.3", "No Finding": 1.0, "Edema": 0.0, "Cardiomegaly": None, "note": "x"})
    write_dicom(root / "unlabelled.dcm", GREY, header={"PatientID": "P99"})
    pd.DataFrame(labels).to_csv(tmp_path / "labels.csv", index=False)
    code, _, err = run(["--format", "dicom", "--root", root, "--labels", tmp_path / "labels.csv", "--label_key",
                        "SOPInstanceUID", "--set", "NON_HOLD_OUT=Cardiomegaly", "--set", "HOLD_OUT=Edema",
                        "--val_frac", 0.25, "--test_frac", 0.25, "--out", out, *SMALL_TASK], capsys)
    assert code == 0, err
    assert "1 of 25 DICOM X-ray(s) have no row in labels.csv (by SOPInstanceUID)" in err
    splits = read_splits(out)
    by_uid = {r["SOPInstanceUID"]: r for r in labels}
    patients = {}
    for name, frame in splits.items():
        for row in frame.itertuples(index=False):
            label = by_uid[row.SOPInstanceUID]
            assert row.note == label["note"] and (label["No Finding"] == 1.0) == name.endswith("norm")
            patients.setdefault(row.PatientID, set()).add(name.split("_")[0])
    assert sum(len(f) for f in splits.values()) == 24 and all(len(s) == 1 for s in patients.values())


def write_pediatric_tree(root):
    """chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/ as that collection names its files: {split: [(path,
    class, patient)]}."""
    tree = {}
    for split, first in (("train", 1), ("val", 20), ("test", 30)):
        for person in range(first, first + 4):
            for path, cls, patient in [(f"NORMAL/IM-{person:04d}-0001.jpeg", "NORMAL", f"IM-{person:04d}"),
                                       (f"NORMAL/NORMAL2-IM-{person:04d}-0002.jpeg", "NORMAL", f"IM-{person:04d}"),
                                       (f"PNEUMONIA/person{person}_bacteria_{person * 3}.jpeg", "PNEUMONIA",
                                        f"person{person}"),
                                       (f"PNEUMONIA/person{person}_virus_{person * 5}.jpeg", "PNEUMONIA",
                                        f"person{person}")]:
                os.makedirs(os.path.dirname(root / split / path), exist_ok=True)
                (root / split / path).write_bytes(b"")
                tree.setdefault(split, []).append((f"{split}/{path}", cls, patient))
    (root / "train" / ".DS_Store").write_bytes(b"")
    return tree


def test_folders_official_split_classes_and_patients(tmp_path, capsys):
    root, out = tmp_path / "chest_xray", tmp_path / "out"
    tree = write_pediatric_tree(root)
    code, _, err = run(["--format", "folders", "--root", root, "--official_split", "--patient_regex",
                        r"(person\d+|IM-\d+)", "--out", out, *SMALL_TASK], capsys)
    assert code == 0, err
    splits = read_splits(out)
    for split, files in tree.items():
        for kind, cls in (("pos", "PNEUMONIA"), ("norm", "NORMAL")):
            frame = splits[f"{split}_{kind}"]
            expected = sorted((p, patient) for p, c, patient in files if c == cls)
            assert sorted(zip(frame["Path"], frame["Patient"])) == expected
            assert (frame["PNEUMONIA"] == (1.0 if kind == "pos" else 0.0)).all()
    # Without the official split: drawn by patient, each patient's four images in one split.
    code, _, err = run(["--format", "folders", "--root", root, "--patient_regex", r"(person\d+|IM-\d+)",
                        "--out", tmp_path / "drawn", "--val_frac", 0.25, "--test_frac", 0.25, *SMALL_TASK], capsys)
    assert code == 0, err
    drawn = read_splits(tmp_path / "drawn")
    split_of = {}
    for name, frame in drawn.items():
        for patient in frame["Patient"]:
            split_of.setdefault(patient, set()).add(name.split("_")[0])
    assert sum(map(len, drawn.values())) == 48 and all(len(s) == 1 for s in split_of.values())
    code, _, err = run(["--format", "folders", "--root", root, "--patient_regex", r"person\d+", "--out",
                        tmp_path / "bad"], capsys)
    assert code == 2 and "test/NORMAL/IM-0030-0001.jpeg: its file name does not match --patient_regex" in err
    code, _, err = run(["--format", "folders", "--root", root, "--normal_name", "healthy", "--out",
                        tmp_path / "bad"], capsys)
    assert code == 2 and "--normal_name healthy: no class folder of that name" in err


MURA_STUDIES = [  # (part, patient, study, label, images)
    ("train", "XR_ELBOW", "patient00001", "study1_positive", 1, 2),
    ("train", "XR_ELBOW", "patient00002", "study1_negative", 0, 1),
    ("train", "XR_WRIST", "patient00002", "study2_positive", 1, 3),
    ("train", "XR_WRIST", "patient00003", "study1_negative", 0, 2),
    ("train", "XR_ELBOW", "patient00004", "study1_positive", 1, 1),
    ("train", "XR_WRIST", "patient00005", "study1_negative", 0, 1),
    ("train", "XR_ELBOW", "patient00006", "study1_negative", 0, 1),
    ("train", "XR_WRIST", "patient00006", "study2_positive", 1, 1),
    ("valid", "XR_ELBOW", "patient11185", "study1_positive", 1, 2),
    ("valid", "XR_WRIST", "patient11186", "study1_negative", 0, 2),
    ("valid", "XR_WRIST", "patient11187", "study1_positive", 1, 1),
    ("valid", "XR_ELBOW", "patient11188", "study1_negative", 0, 1),
]


def write_mura(root):
    """MURA-v1.1 under ``root`` as distributed: header-less CSVs, (empty) PNGs. Returns {Path: (part, label)}."""
    folder = root / "MURA-v1.1"
    expected = {}
    for part in ("train", "valid"):
        images, studies = [], []
        for p, body, patient, study, label, count in MURA_STUDIES:
            if p != part:
                continue
            study_path = f"MURA-v1.1/{part}/{body}/{patient}/{study}/"
            studies.append(f"{study_path},{label}")
            for i in range(1, count + 1):
                images.append(f"{study_path}image{i}.png")
                os.makedirs(root / study_path, exist_ok=True)
                (root / images[-1]).write_bytes(b"")
                expected[images[-1]] = (body, label, patient, part)
        (folder / f"{part}_image_paths.csv").write_text("\n".join(images) + "\n")
        (folder / f"{part}_labeled_studies.csv").write_text("\n".join(studies) + "\n")
    return expected


def test_mura_body_parts_normals_and_official_split(tmp_path, capsys):
    root, out = tmp_path / "mura", tmp_path / "out"
    expected = write_mura(root)
    code, _, err = run(["--format", "mura", "--root", root, "--official_split", "--val_frac", 0.34, "--out", out,
                        *SMALL_TASK], capsys)
    assert code == 0, err
    splits = read_splits(out)
    seen = {}
    for name, frame in splits.items():
        split, kind = name.split("_")
        for row in frame.to_dict("records"):
            body, label, patient, part = expected[row["Path"]]
            seen[row["Path"]] = split
            assert kind == ("pos" if label else "norm") and row["Patient"] == patient
            assert (split == "test") == (part == "valid")
            assert row["XR_ELBOW"] == float(label and body == "XR_ELBOW")
            assert row["XR_WRIST"] == float(label and body == "XR_WRIST")
    assert sorted(seen) == sorted(expected)
    assert "MURA's valid part is the test split" in err
    # --root may be MURA-v1.1 itself: Paths then start below it.
    code, _, err = run(["--format", "mura", "--root", root / "MURA-v1.1", "--official_split", "--val_frac", 0.34,
                        "--out", tmp_path / "inner", *SMALL_TASK], capsys)
    assert code == 0, err
    inner = pd.concat(read_splits(tmp_path / "inner").values())
    assert sorted("MURA-v1.1/" + p for p in inner["Path"]) == sorted(expected)


def xrv_table(name):
    xrv = pytest.importorskip("torchxrayvision")
    path = os.path.join(os.path.dirname(xrv.__file__), "data", name)
    if not os.path.isfile(path):
        pytest.skip(f"torchxrayvision ships no {name}")
    return pd.read_csv(path, dtype=str)


def test_pool_csv_of_real_kaggle_rsna_headers(tmp_path, capsys):
    """The RSNA pneumonia challenge's DICOM headers (PatientAge a bare number, Sex M/F, AP/PA views, CR)."""
    table = xrv_table("kaggle_stage_2_train_images_dicom_headers.csv.gz").head(40)
    for row in table.itertuples(index=False):
        write_dicom(tmp_path / "rsna" / row.Filename, GREY, modality=row.Modality, header={
            "PatientID": row.PatientID, "PatientSex": row.PatientSex, "PatientAge": row.PatientAge,
            "ViewPosition": row.ViewPosition, "BodyPartExamined": row.BodyPartExamined})
    code, _, err = run(["--format", "dicom", "--root", tmp_path / "rsna", "--pool_only", "--out", tmp_path / "o"],
                       capsys)
    assert code == 0, err
    pool = pd.read_csv(tmp_path / "o" / "pool.csv", dtype={"PatientID": str}).set_index("Path")
    table = table.set_index("Filename").loc[pool.index]
    assert (pool["PatientID"] == table["PatientID"]).all() and (pool["Modality"] == "CR").all()
    assert (pool["Age"] == table["PatientAge"].astype(float)).all()
    assert (pool["Sex"] == table["PatientSex"].map({"M": "Male", "F": "Female"})).all()
    assert (pool["Frontal/Lateral"] == "Frontal").all() and set(table["ViewPosition"]) == {"AP", "PA"}


def test_pool_csv_of_real_open_i_headers_ages_from_dates(tmp_path, capsys):
    """Open-i's (NLM) DICOM metadata: ages only from birth and study dates, PA / AP / LL / RL / blank views,
    MONOCHROME1."""
    table = xrv_table("nlmcxr_dicom_metadata.csv.gz").head(40)
    for row in table.to_dict("records"):
        write_dicom(tmp_path / "openi" / os.path.basename(row["filename"]), GREY, modality=row["Modality"],
                    photometric=row["Photometric Interpretation"], header={
                        "PatientID": row["Patient ID"], "PatientSex": row["Patient's Sex"],
                        "PatientBirthDate": row["Patient's Birth Date"], "StudyDate": row["Study Date"],
                        "ViewPosition": row["View Position"], "AccessionNumber": row["Accession Number"]})
    code, _, err = run(["--format", "dicom", "--root", tmp_path / "openi", "--pool_only", "--out", tmp_path / "o"],
                       capsys)
    assert code == 0, err
    pool = pd.read_csv(tmp_path / "o" / "pool.csv", dtype=str).set_index("Path")
    table = table.assign(Path=table["filename"].map(os.path.basename)).set_index("Path").loc[pool.index]
    days = pd.to_datetime(table["Study Date"]) - pd.to_datetime(table["Patient's Birth Date"])
    assert np.allclose(pool["Age"].astype(float), days.dt.days / 365.25)
    views = table["View Position"].map({"PA": "Frontal", "AP": "Frontal", "LL": "Lateral", "RL": "Lateral"})
    assert (pool["Frontal/Lateral"].fillna("") == views.fillna("")).all()
    assert {"PA", "LL"} <= set(table["View Position"]) and table["View Position"].isna().any()
    assert (pool["AccessionNumber"] == table["Accession Number"]).all()
