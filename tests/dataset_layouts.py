"""Tiny files in the real layouts of NIH ChestX-ray14 and MIMIC-CXR-JPG (real column names, a dozen rows).

The image files are empty: prepare_data.py only checks that they exist.
"""
import os

import pandas as pd

# NIH's header as the file has it: two bracketed column names hold commas, and every line ends with one.
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
# Six patients, each with one X-ray with findings and one 'No Finding': (findings, age, sex, view) per image.
NIH_PATIENTS = {
    1: [("Cardiomegaly|Effusion", "58", "M", "PA"), ("No Finding", "58", "M", "PA")],
    2: [("Atelectasis", "81", "F", "AP"), ("No Finding", "81", "F", "LL")],
    3: [("Hernia", "074Y", "F", "PA"), ("No Finding", "074Y", "F", "PA")],
    4: [("Mass|Nodule|Infiltration", "82", "M", "AP"), ("No Finding", "82", "M", "AP")],
    5: [("Edema|Pneumothorax", "69", "F", "PA"), ("No Finding", "69", "F", "PA")],
    6: [("Consolidation|Pneumonia|Fibrosis|Pleural_Thickening|Emphysema", "40", "M", "LL"),
        ("No Finding", "40", "M", "PA")],
}
NIH_TRAIN_VAL_PATIENTS = (1, 2, 3, 4)  # train_val_list.txt; 5 and 6 are in test_list.txt


def nih_image_name(patient, follow_up):
    return f"{patient:08d}_{follow_up:03d}.png"


def nih_image_folder(patient):
    """Kaggle's copy: images_001/images/ holds the first patients, images_002/images/ the next."""
    return os.path.join("images_001" if patient <= 3 else "images_002", "images")


def write_nih(root, with_images=True, skip_images=()):
    """Data_Entry_2017.csv, train_val_list.txt, test_list.txt and (empty) images under ``root``."""
    os.makedirs(root, exist_ok=True)
    lines = [NIH_HEADER]
    for patient, images in NIH_PATIENTS.items():
        for follow_up, (findings, age, sex, view) in enumerate(images):
            name = nih_image_name(patient, follow_up)
            lines.append(f"{name},{findings},{follow_up},{patient},{age},{sex},{view},2500,2048,0.168,0.168,")
            if with_images and name not in skip_images:
                folder = os.path.join(root, nih_image_folder(patient))
                os.makedirs(folder, exist_ok=True)
                open(os.path.join(folder, name), "wb").close()
    with open(os.path.join(root, "Data_Entry_2017.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for list_name, patients in (("train_val_list.txt", NIH_TRAIN_VAL_PATIENTS),
                                ("test_list.txt", [p for p in NIH_PATIENTS if p not in NIH_TRAIN_VAL_PATIENTS])):
        with open(os.path.join(root, list_name), "w") as f:
            f.write("".join(f"{nih_image_name(p, i)}\n" for p in patients for i in range(len(NIH_PATIENTS[p]))))
    return os.path.join(root, "Data_Entry_2017.csv")


MIMIC_LABELS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
                "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
                "Pneumothorax", "Support Devices"]
# (subject, study, labels, [(dicom_id, ViewPosition)], official split). Each subject has a normal study and one
# with findings; -1 is uncertain; subject 13000002's second study is Fracture only (neither positive nor normal
# for MedSelect's eight conditions); study 59999999 has images but no labels.
MIMIC_STUDIES = [
    (10000032, 50414267, {"Edema": -1.0, "Cardiomegaly": 0.0}, [("02aa804e-bde0afdd", "PA"),
                                                                ("174413ec-4ec4c1f7", "LATERAL")], "train"),
    (10000032, 53189527, {"No Finding": 1.0}, [("2a2277a9-b0ded155", "PA")], "train"),
    (10000764, 57375967, {"Consolidation": 1.0, "Pneumonia": -1.0}, [("096052b7-d256dc40", "AP")], "train"),
    (10000764, 55000001, {"No Finding": 1.0}, [("0a000001-00000001", "AP")], "train"),
    (11000011, 51000011, {"Pleural Effusion": 1.0, "Atelectasis": 1.0}, [("1b000011-00000011", "PA"),
                                                                          ("1b000012-00000012", "LL")], "validate"),
    (11000011, 51000012, {"No Finding": 1.0, "Support Devices": 1.0}, [("1b000013-00000013", "AP")], "validate"),
    (12000001, 52000001, {"Pneumothorax": 1.0, "Lung Opacity": 1.0}, [("2c000001-00000001", "PA")], "test"),
    (12000001, 52000002, {"No Finding": 1.0}, [("2c000002-00000002", "PA"), ("2c000003-00000003", "LATERAL")],
     "test"),
    (13000002, 53000001, {"Enlarged Cardiomediastinum": 1.0}, [("3d000001-00000001", "AP AXIAL")], "train"),
    (13000002, 53000002, {"Fracture": 1.0}, [("3d000002-00000002", "PA")], "train"),
    (13000002, 53000003, {"No Finding": 1.0}, [("3d000003-00000003", "PA")], "train"),
    (19999987, 59000001, {"Edema": 1.0}, [("9e000001-00000001", "AP")], "test"),
    (19999987, 59000002, {"No Finding": 1.0}, [("9e000002-00000002", "AP")], "test"),
]
MIMIC_UNLABELLED = (19999987, 59999999, "9e999999-99999999", "PA", "test")


def mimic_path(subject, study, dicom):
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg"


def write_mimic(root, with_images=True, skip_images=()):
    """mimic-cxr-2.0.0-{chexpert,metadata,split}.csv and (empty) images under ``root``."""
    os.makedirs(root, exist_ok=True)
    labels, metadata, split = [], [], []
    for subject, study, values, images, part in MIMIC_STUDIES:
        labels.append({"subject_id": subject, "study_id": study, **{c: values.get(c) for c in MIMIC_LABELS}})
        for dicom, view in images:
            metadata.append({"dicom_id": dicom, "subject_id": subject, "study_id": study,
                             "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                             "Rows": 3056, "Columns": 2544, "StudyDate": 21800506, "StudyTime": 213014.531})
            split.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": part})
    subject, study, dicom, view, part = MIMIC_UNLABELLED
    metadata.append({"dicom_id": dicom, "subject_id": subject, "study_id": study, "ViewPosition": view})
    split.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": part})
    pd.DataFrame(labels, columns=["subject_id", "study_id", *MIMIC_LABELS]).to_csv(
        os.path.join(root, "mimic-cxr-2.0.0-chexpert.csv"), index=False)
    pd.DataFrame(metadata).to_csv(os.path.join(root, "mimic-cxr-2.0.0-metadata.csv"), index=False)
    pd.DataFrame(split).to_csv(os.path.join(root, "mimic-cxr-2.0.0-split.csv"), index=False)
    if with_images:
        for row in metadata:
            path = os.path.join(root, mimic_path(row["subject_id"], row["study_id"], row["dicom_id"]))
            if row["dicom_id"] not in skip_images:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "wb").close()
    return os.path.join(root, "mimic-cxr-2.0.0-chexpert.csv")


# A one-condition collection (pneumonia vs normal) with its own patient column and official split:
# patient -> (split, [Pneumonia label of each image]). Positives / normals: train 6 / 5, val 3 / 3, test 3 / 3.
PNEUMONIA_PATIENTS = {"P01": ("train", [1, 1, 0]), "P02": ("train", [1, 0]), "P03": ("train", [1, 1, 0]),
                      "P04": ("train", [1, 0, 0]), "P05": ("val", [1, 1, 0]), "P06": ("val", [1, 0, 0]),
                      "P07": ("test", [1, 0]), "P08": ("test", [1, 1, 0, 0])}
# Two more findings for the settings test: Covid has 1 / 0 / 3 positives, Tuberculosis 1 / 1 / 1.
EXTRA_FINDINGS = {"Covid": ("P01_0", "P07_0", "P08_0", "P08_1"), "Tuberculosis": ("P01_1", "P05_0", "P07_0")}


def pneumonia_rows(extra_findings=False):
    rows = []
    for patient, (split, labels) in PNEUMONIA_PATIENTS.items():
        for i, label in enumerate(labels):
            image = f"{patient}_{i}"
            row = {"Path": f"images/{image}.jpeg", "PatientID": patient, "split": split, "Pneumonia": float(label),
                   "No Finding": None if label else 1.0}
            if extra_findings:
                row.update({name: float(image in images) for name, images in EXTRA_FINDINGS.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def write_pneumonia(path, extra_findings=False, **changes):
    """The collection's CSV; ``changes`` = {column: {row: value}} edits it."""
    frame = pneumonia_rows(extra_findings)
    for column, values in changes.items():
        frame[column] = frame[column].astype(object)
        for row, value in values.items():
            frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return str(path)
