"""MURA v1.1 (Rajpurkar et al. 2017): musculoskeletal radiographs of seven upper-extremity body parts.

Its files (no header line) sit in MURA-v1.1/ beside the images:

* {train,valid}_image_paths.csv: one image per line, MURA-v1.1/{train,valid}/XR_PART/patientNNNNN/studyN_LABEL/imageN.png
* {train,valid}_labeled_studies.csv: one study per line, its folder and 1 (abnormal) or 0 (normal).

Each body part is a condition (XR_ELBOW, XR_FINGER, XR_FOREARM, XR_HAND, XR_HUMERUS, XR_SHOULDER, XR_WRIST):
1 for the images of an abnormal study of that part, 0 for every other image; the images of normal studies are
the ``No Finding`` rows (of every body part). The patient is the path's patientNNNNN. The official split
(--official_split) keeps MURA's train as train and its valid as our test (MURA's own test set is not public);
validation is then drawn from the training patients. ROOT is the folder holding MURA-v1.1/ (or MURA-v1.1/
itself). The files have no Sex, Age or view.
"""
import os

import pandas as pd

from data.conditions import NO_FINDING, require_condition_columns
from data.datasets.source import Source
from utils.errors import UserError

FOLDER = "MURA-v1.1"
PARTS = {"train": "train", "valid": "test"}  # MURA's part -> our split
IMAGE_LIST, STUDY_LIST = "{}_image_paths.csv", "{}_labeled_studies.csv"
PATIENT, BODY_PART, STUDY, ABNORMAL = "Patient", "Body Part", "Study", "Abnormal"


def dataset_folder(root):
    """The folder holding MURA's CSVs: ROOT/MURA-v1.1 or ROOT itself."""
    for folder in (os.path.join(root, FOLDER), root):
        if os.path.isfile(os.path.join(folder, IMAGE_LIST.format("train"))):
            return folder
    raise UserError(f"--root {root}: no {IMAGE_LIST.format('train')} in it or in {FOLDER}/ under it; --root is "
                    f"the folder holding MURA's {FOLDER}/")


def read_list(path, columns):
    if not os.path.isfile(path):
        raise UserError(f"{path}: not found (MURA's files are {IMAGE_LIST.format('train|valid')} and "
                        f"{STUDY_LIST.format('train|valid')})")
    try:
        return pd.read_csv(path, header=None, names=columns, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise UserError(f"{path}: cannot read ({str(err).strip().splitlines()[0]})") from None


def read_mura(root, conditions, hold_out, official_split=False):
    """MURA's images in CheXpert's columns; ``conditions`` None: every body part."""
    folder = dataset_folder(root)
    base = os.path.dirname(os.path.abspath(folder))  # the paths in MURA's files start from here
    frames, files = [], []
    for part, split in PARTS.items():
        image_csv, study_csv = (os.path.join(folder, name.format(part)) for name in (IMAGE_LIST, STUDY_LIST))
        images = read_list(image_csv, ["image"])
        studies = read_list(study_csv, ["study", "label"])
        label = pd.to_numeric(studies["label"], errors="coerce")
        if not label.isin([0, 1]).all():
            row = int((~label.isin([0, 1])).to_numpy().argmax())
            raise UserError(f"{study_csv}: row {row} has label {studies['label'].iloc[row]!r}; MURA's labels are 1 "
                            "(abnormal) and 0 (normal)")
        label_of_study = pd.Series(label.to_numpy(), index=studies["study"].str.rstrip("/"))
        study = images["image"].str.rsplit("/", n=1).str[0]
        abnormal = study.map(label_of_study)
        if abnormal.isna().any():
            raise UserError(f"{image_csv}: {int(abnormal.isna().sum())} image(s) belong to no study of {study_csv}, "
                            f"e.g. {images['image'][abnormal.isna()].iloc[0]}")
        parts = images["image"].str.split("/")
        frame = pd.DataFrame({
            "Path": [os.path.relpath(os.path.join(base, p), root).replace(os.sep, "/") for p in images["image"]],
            BODY_PART: parts.map(lambda p: next((x for x in p if x.startswith("XR_")), None)),
            PATIENT: parts.map(lambda p: next((x for x in p if x.startswith("patient")), None)),
            STUDY: study, ABNORMAL: abnormal.astype(int), "split": split})
        for column in (BODY_PART, PATIENT):
            if frame[column].isna().any():
                raise UserError(f"{image_csv}: no {'XR_PART' if column == BODY_PART else 'patientNNNNN'} folder in "
                                f"{images['image'][frame[column].isna()].iloc[0]}")
        frames.append(frame)
        files += [image_csv, study_csv]
    frame = pd.concat(frames, ignore_index=True)
    normal = frame[ABNORMAL] == 0
    frame[NO_FINDING] = normal.astype(float).where(normal)  # 1 or blank, as CheXpert
    body_parts = sorted(set(frame[BODY_PART]))
    for body_part in body_parts:
        frame[body_part] = ((frame[BODY_PART] == body_part) & ~normal).astype(float)
    if conditions is None:
        conditions = body_parts
    else:
        require_condition_columns(frame, conditions, folder, hold_out, purpose="MURA's body parts")
    notes = ["MURA has no Sex, Age or view: the split CSVs have none, so USE_ASL cannot be used with them",
             "MURA's normal studies of every body part are the normals of every task"]
    if official_split:
        notes.append("official split: MURA's valid part is the test split (its test set is not public)")
    return Source(frame=frame, conditions=list(conditions), files=files, patient_column=PATIENT,
                  official_split=frame["split"] if official_split else None, notes=notes,
                  image_hint=f"MURA's images are {FOLDER}/{{train,valid}}/XR_PART/patientN/studyN_LABEL/ under "
                             f"{base}")
