"""prepare_data.py --format nih / mimic on tiny files in each dataset's real layout, against hand-worked answers."""
import json
import os

import numpy as np
import pandas as pd
import pytest

import prepare_data
from tests.conftest import run_main
from tests.dataset_layouts import write_mimic, write_nih

SPLITS = ("train", "val", "test")
# A task of one positive and one normal in the pool and in the query: 2 positives and 2 normals.
SMALL_TASK = ["--set", "UNLABELED_POOL_SIZE=2", "--set", "QUERY_SET_SIZE=2", "--set", "K=1"]
NIH_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding",
               "Atelectasis", "Cardiomegaly", "Pleural Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
               "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
               # NIH's own columns follow, as the file has them (without the empty one its trailing commas make)
               "Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
NIH_CONDITIONS = NIH_COLUMNS[6:20]


def run(argv, capsys):
    return run_main(prepare_data.main, argv, capsys)


def read_splits(out):
    return {(s, k): pd.read_csv(os.path.join(out, f"{s}_{k}.csv")) for s in SPLITS for k in ("pos", "norm")}


def everything(splits):
    return pd.concat(splits.values(), ignore_index=True).set_index("Path")


def assert_refused(argv, capsys, folder, *expected):
    before = sorted(os.listdir(folder))
    code, stdout, err = run(argv, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    assert sorted(os.listdir(folder)) == before and stdout == ""
    return err


def test_nih_labels_names_views_and_patient_split(tmp_path, capsys):
    root = tmp_path / "nih"
    write_nih(root)
    out = tmp_path / "out"
    code, stdout, err = run(["--format", "nih", "--root", root, "--out", out, "--val_frac", 0.34,
                             "--test_frac", 0.34, *SMALL_TASK], capsys)
    assert code == 0, err
    splits = read_splits(out)
    assert list(splits[("train", "pos")].columns) == NIH_COLUMNS
    rows = everything(splits)
    # Kaggle's layout: patients 1-3 in images_001/images/, 4-6 in images_002/images/.
    positives = ["images_001/images/00000001_000.png", "images_001/images/00000002_000.png",
                 "images_001/images/00000003_000.png", "images_002/images/00000004_000.png",
                 "images_002/images/00000005_000.png", "images_002/images/00000006_000.png"]
    normals = [p.replace("_000.png", "_001.png") for p in positives]
    assert sorted(pd.concat([splits[(s, "pos")] for s in SPLITS])["Path"]) == positives
    assert sorted(pd.concat([splits[(s, "norm")] for s in SPLITS])["Path"]) == normals
    # Labels: 1 where NIH lists the finding, 0 elsewhere; Effusion is CheXpert's Pleural Effusion.
    expected = {positives[0]: {"Cardiomegaly", "Pleural Effusion"}, positives[1]: {"Atelectasis"},
                positives[2]: {"Hernia"}, positives[3]: {"Mass", "Nodule", "Infiltration"},
                positives[4]: {"Edema", "Pneumothorax"},
                positives[5]: {"Consolidation", "Pneumonia", "Fibrosis", "Pleural_Thickening", "Emphysema"}}
    for path, findings in expected.items():
        assert {c for c in NIH_CONDITIONS if rows.loc[path, c] == 1.0} == findings
        assert set(rows.loc[path, NIH_CONDITIONS]) == {0.0, 1.0} and np.isnan(rows.loc[path, "No Finding"])
    for path in normals:
        assert rows.loc[path, "No Finding"] == 1.0 and (rows.loc[path, NIH_CONDITIONS] == 0.0).all()
    # Sex M/F -> Male/Female; ages as numbers ('074Y' -> 74); PA/AP frontal, LL lateral (no AP/PA then).
    assert rows.loc[positives[0], ["Sex", "Age", "Frontal/Lateral", "AP/PA"]].tolist() == ["Male", 58, "Frontal", "PA"]
    assert rows.loc[positives[2], ["Sex", "Age"]].tolist() == ["Female", 74]
    assert rows.loc[normals[1], "Frontal/Lateral"] == "Lateral" and pd.isna(rows.loc[normals[1], "AP/PA"])
    assert rows.loc[positives[3], ["Frontal/Lateral", "AP/PA"]].tolist() == ["Frontal", "AP"]
    # Patient-level split from 'Patient ID': 6 patients -> 2 / 2 / 2, none in two splits, both X-rays together.
    patients = {s: set(pd.concat([splits[(s, "pos")], splits[(s, "norm")]])["Patient ID"]) for s in SPLITS}
    assert [len(patients[s]) for s in SPLITS] == [2, 2, 2]
    assert set.union(*patients.values()) == {1, 2, 3, 4, 5, 6}
    for split in SPLITS:
        assert len(splits[(split, "pos")]) == len(splits[(split, "norm")]) == 2
    # The name map is printed.
    assert ("NIH finding -> column:\n  Effusion -> Pleural Effusion\n  same name in CheXpert: Atelectasis, "
            "Cardiomegaly, Pneumonia, Pneumothorax, Consolidation, Edema\n  NIH only, NIH's name: Infiltration, "
            "Mass, Nodule, Emphysema, Fibrosis, Pleural_Thickening, Hernia\n") in stdout
    summary = json.loads((out / "prepare_data.json").read_text())
    assert summary["condition_names"]["Effusion"] == "Pleural Effusion" and summary["patient"] == "Patient ID"
    assert summary["conditions"] == NIH_CONDITIONS


def test_nih_official_split_and_frontal_only(tmp_path, capsys):
    root = tmp_path / "nih"
    write_nih(root)
    entries = pd.read_csv(root / "Data_Entry_2017.csv")  # some copies of the file name the column 'Patient Sex'
    entries.rename(columns={"Patient Gender": "Patient Sex"}).to_csv(root / "Data_Entry_2017.csv", index=False)
    out = tmp_path / "out"
    code, _, err = run(["--format", "nih", "--root", root, "--out", out, "--official_split", "--val_frac", 0.25,
                        "--frontal_only", *SMALL_TASK], capsys)
    assert code == 0, err
    splits = read_splits(out)
    patients = {s: set(pd.concat([splits[(s, "pos")], splits[(s, "norm")]])["Patient ID"]) for s in SPLITS}
    # test_list.txt holds patients 5 and 6; one of train_val_list.txt's four patients becomes validation.
    assert patients["test"] == {5, 6}
    assert len(patients["val"]) == 1 and patients["train"] | patients["val"] == {1, 2, 3, 4}
    assert not patients["train"] & patients["val"]
    assert "validation split: 1 of the official split's 4 training patients" in err
    # --frontal_only leaves out the two LL images (patient 2's normal, patient 6's positive).
    rows = everything(splits)
    assert len(rows) == 10 and set(rows["Frontal/Lateral"]) == {"Frontal"}
    assert set(rows.loc[rows["Patient ID"] == 2, "Sex"]) == {"Female"}
    assert "00000002_001.png" not in set(rows["Image Index"]) and "00000006_000.png" not in set(rows["Image Index"])


# MIMIC: expected outputs worked out by hand from tests/dataset_layouts.MIMIC_STUDIES.
MIMIC_POSITIVE_IMAGES = {  # dicom_id -> (subject, study, split): a study with one of the eight conditions 1 or -1
    "02aa804e-bde0afdd": (10000032, 50414267, "train"), "174413ec-4ec4c1f7": (10000032, 50414267, "train"),
    "096052b7-d256dc40": (10000764, 57375967, "train"), "1b000011-00000011": (11000011, 51000011, "val"),
    "1b000012-00000012": (11000011, 51000011, "val"), "2c000001-00000001": (12000001, 52000001, "test"),
    "3d000001-00000001": (13000002, 53000001, "train"), "9e000001-00000001": (19999987, 59000001, "test")}
MIMIC_NORMAL_IMAGES = {
    "2a2277a9-b0ded155": (10000032, 53189527, "train"), "0a000001-00000001": (10000764, 55000001, "train"),
    "1b000013-00000013": (11000011, 51000012, "val"), "2c000002-00000002": (12000001, 52000002, "test"),
    "2c000003-00000003": (12000001, 52000002, "test"), "3d000003-00000003": (13000002, 53000003, "train"),
    "9e000002-00000002": (19999987, 59000002, "test")}


def test_mimic_join_uncertain_paths_views_and_official_split(tmp_path, capsys):
    root = tmp_path / "mimic"
    write_mimic(root)
    out = tmp_path / "out"
    code, _, err = run(["--format", "mimic", "--root", root, "--out", out, "--official_split", *SMALL_TASK], capsys)
    assert code == 0, err
    splits = read_splits(out)
    for kind, images in (("pos", MIMIC_POSITIVE_IMAGES), ("norm", MIMIC_NORMAL_IMAGES)):
        for split in SPLITS:
            frame = splits[(split, kind)]
            expected = {d: v for d, v in images.items() if v[2] == split}
            assert sorted(frame["dicom_id"]) == sorted(expected)
            for _, row in frame.iterrows():
                subject, study, _ = expected[row["dicom_id"]]
                assert row["Path"] == f"files/p{str(subject)[:2]}/p{subject}/s{study}/{row['dicom_id']}.jpg"
                assert (row["subject_id"], row["study_id"]) == (subject, study)
    rows = everything(splits).set_index("dicom_id")
    # Study-level labels reach every image of the study; uncertain Edema (-1) is written 1.0, a 0 stays 0.
    for dicom in ("02aa804e-bde0afdd", "174413ec-4ec4c1f7"):
        assert rows.loc[dicom, "Edema"] == 1.0 and rows.loc[dicom, "Cardiomegaly"] == 0.0
    assert rows.loc["096052b7-d256dc40", "Consolidation"] == 1.0
    # View: PA/AP frontal, LATERAL/LL lateral, 'AP AXIAL' neither (blank).
    assert rows.loc["02aa804e-bde0afdd", "Frontal/Lateral"] == "Frontal"
    assert rows.loc["174413ec-4ec4c1f7", "Frontal/Lateral"] == "Lateral"
    assert rows.loc["1b000012-00000012", "Frontal/Lateral"] == "Lateral"
    assert pd.isna(rows.loc["3d000001-00000001", "Frontal/Lateral"])
    # The Fracture-only study (not one of the eight) and the unlabelled study are in no split.
    assert "3d000002-00000002" not in rows.index and "9e999999-99999999" not in rows.index
    assert "Sex" not in rows.columns and "Age" not in rows.columns
    assert "MIMIC-CXR-JPG's files have no Sex or Age" in err
    assert "1 of 17 image(s) in mimic-cxr-2.0.0-metadata.csv belong to a study without a row" in err
    assert "2 uncertain (-1) condition label(s) count as positive" in err  # Edema -1 on the study's two images


def test_mimic_patient_level_split(tmp_path, capsys):
    root = tmp_path / "mimic"
    write_mimic(root)
    out = tmp_path / "out"
    code, _, err = run(["--format", "mimic", "--root", root, "--out", out, "--val_frac", 0.34, "--test_frac", 0.34,
                        "--seed", 1, *SMALL_TASK], capsys)
    assert code == 0, err
    splits = read_splits(out)
    subjects = {s: set(pd.concat([splits[(s, "pos")], splits[(s, "norm")]])["subject_id"]) for s in SPLITS}
    assert not (subjects["train"] & subjects["val"] or subjects["train"] & subjects["test"]
                or subjects["val"] & subjects["test"])
    assert [len(subjects[s]) for s in SPLITS] == [2, 2, 2]
    assert sorted(everything(splits)["dicom_id"]) == sorted([*MIMIC_POSITIVE_IMAGES, *MIMIC_NORMAL_IMAGES])


def test_missing_images_are_counted_and_stop_or_are_dropped(tmp_path, capsys):
    root = tmp_path / "nih"
    write_nih(root, skip_images={"00000003_000.png", "00000005_001.png"})
    args = ["--format", "nih", "--root", root, "--val_frac", 0.34, "--test_frac", 0.34, *SMALL_TASK]
    assert_refused([*args, "--out", tmp_path / "out"], capsys, tmp_path,
                   f"2 of 12 image(s) are not under --root {root} (e.g. images/00000003_000.png, "
                   "images/00000005_001.png)", "--drop_missing_images")
    code, _, err = run([*args, "--out", tmp_path / "out", "--drop_missing_images"], capsys)
    assert code == 0 and "left out 2 of 12 X-ray(s) whose image is not under" in err
    rows = everything(read_splits(tmp_path / "out"))
    assert len(rows) == 10 and not {"00000003_000.png", "00000005_001.png"} & set(rows["Image Index"])
    assert json.loads((tmp_path / "out" / "prepare_data.json").read_text())["missing_images_left_out"] == 2

    mimic_root = tmp_path / "mimic"
    write_mimic(mimic_root, skip_images={"2c000001-00000001"})
    assert_refused(["--format", "mimic", "--root", mimic_root, "--out", tmp_path / "m"], capsys, tmp_path,
                   "1 of 15 image(s) are not under", "files/p12/p12000001/s52000001/2c000001-00000001.jpg")
    bare = tmp_path / "bare"
    write_nih(bare, with_images=False)
    assert_refused(["--format", "nih", "--root", bare, "--out", tmp_path / "b"], capsys, tmp_path,
                   "none of the 12 image(s) is under --root", "images*/")


def test_files_that_are_not_the_format(tmp_path, capsys):
    write_nih(tmp_path / "nih")
    write_mimic(tmp_path / "mimic")
    out = ["--out", tmp_path / "out"]
    assert_refused(["--format", "padchest", "--root", tmp_path / "nih", *out], capsys, tmp_path,
                   "--format padchest: unknown; the known layouts are chexpert, nih, mimic")
    assert_refused(["--format", "mimic", "--root", tmp_path / "nih", "--train_csv",
                    tmp_path / "nih" / "Data_Entry_2017.csv", *out], capsys, tmp_path,
                   "not a mimic label file: missing column(s) 'subject_id', 'study_id', 'No Finding'; it looks like "
                   "--format nih")
    assert_refused(["--train_csv", tmp_path / "mimic" / "mimic-cxr-2.0.0-metadata.csv", *out], capsys, tmp_path,
                   "not a chexpert label file: missing column(s) 'Path', 'No Finding'; it fits none of the layouts")
    assert_refused(["--format", "mimic", "--root", tmp_path / "nih", *out], capsys, tmp_path,
                   "no MIMIC-CXR-JPG label file (mimic-cxr-2.0.0-chexpert.csv, optionally .gz)")
    assert_refused(["--format", "nih", *out], capsys, tmp_path, "--format nih needs --root")
    entries = pd.read_csv(tmp_path / "nih" / "Data_Entry_2017.csv")
    entries.drop(columns=["Patient Gender"]).to_csv(tmp_path / "nih" / "no_sex.csv", index=False)
    assert_refused(["--format", "nih", "--root", tmp_path / "nih", "--train_csv", tmp_path / "nih" / "no_sex.csv",
                    *out], capsys, tmp_path, "no_sex.csv: missing column 'Patient Gender' (or 'Patient Sex')")
    entries.drop(columns=["Patient ID"]).to_csv(tmp_path / "nih" / "no_id.csv", index=False)
    assert_refused(["--format", "nih", "--root", tmp_path / "nih", "--train_csv", tmp_path / "nih" / "no_id.csv",
                    *out], capsys, tmp_path, "not a nih label file: missing column(s) 'Patient ID'")
    os.remove(tmp_path / "mimic" / "mimic-cxr-2.0.0-split.csv")
    assert_refused(["--format", "mimic", "--root", tmp_path / "mimic", "--official_split", *out], capsys, tmp_path,
                   "no MIMIC-CXR-JPG split file (needed by --official_split)")
    labels = pd.read_csv(tmp_path / "mimic" / "mimic-cxr-2.0.0-chexpert.csv")
    labels["Atelectasis"] = labels["Atelectasis"].astype(object)
    labels.loc[4, "Atelectasis"] = "yes"
    labels.to_csv(tmp_path / "mimic" / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    assert_refused(["--format", "mimic", "--root", tmp_path / "mimic", *out], capsys, tmp_path,
                   "column 'Atelectasis' row 4 is 'yes'; allowed values: 1 (positive), 0 (negative), -1 (uncertain")


@pytest.mark.parametrize("fmt", ["nih", "mimic"])
def test_conditions_named_by_settings(tmp_path, capsys, fmt):
    """Given conditions are those used; one the file lacks is refused with the settings that fit it."""
    root = tmp_path / fmt
    (write_nih if fmt == "nih" else write_mimic)(root)
    err = assert_refused(["--format", fmt, "--root", root, "--out", tmp_path / "out", "--set",
                          "NON_HOLD_OUT=Effusion,Edema", "--set", "HOLD_OUT=Hernia"], capsys, tmp_path,
                         "no column for condition(s) 'Effusion'")
    if fmt == "nih":  # NIH's findings, under their columns' names, held-out ones last
        assert err.endswith("its condition columns fit: --set 'NON_HOLD_OUT=Atelectasis,Cardiomegaly,Pleural "
                            "Effusion,Infiltration,Mass,Nodule,Pneumonia,Pneumothorax,Consolidation,Edema,Emphysema,"
                            "Fibrosis,Pleural_Thickening' --set HOLD_OUT=Hernia\n"), err
    else:  # the labeler's columns that hold a positive: not Cardiomegaly (only 0 here), nor Support Devices
        assert "'Effusion', 'Hernia'" in err  # MIMIC has no Hernia column either
        assert err.endswith("its condition columns fit: --set 'NON_HOLD_OUT=Atelectasis,Consolidation,Edema,"
                            "Enlarged Cardiomediastinum,Fracture,Lung Opacity,Pleural Effusion,Pneumonia,"
                            "Pneumothorax' --set HOLD_OUT=\n"), err
    non_hold_out = "Pleural Effusion,Atelectasis,Hernia,Mass" if fmt == "nih" else "Pleural Effusion"
    code, _, err = run(["--format", fmt, "--root", root, "--out", tmp_path / "out", "--official_split",
                        *(["--val_frac", 0.25] if fmt == "nih" else []), "--set", f"NON_HOLD_OUT={non_hold_out}",
                        "--set", "HOLD_OUT=Edema", *SMALL_TASK], capsys)
    assert code == 0, err
    positives = pd.concat([read_splits(tmp_path / "out")[(s, "pos")] for s in SPLITS])
    if fmt == "nih":  # patients 1-5 have one of them; patient 6 (Consolidation, Pneumonia, ...) none
        assert sorted(positives["Image Index"]) == [f"0000000{p}_000.png" for p in range(1, 6)]
    else:  # studies 50414267 (Edema -1), 51000011 (Pleural Effusion), 59000001 (Edema)
        assert sorted(positives["dicom_id"]) == sorted(["02aa804e-bde0afdd", "174413ec-4ec4c1f7", "1b000011-00000011",
                                                        "1b000012-00000012", "9e000001-00000001"])
