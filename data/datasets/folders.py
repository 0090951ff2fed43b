"""Class-per-folder datasets: ROOT/[SPLIT/]CLASS/.../image, e.g. the pediatric pneumonia collection
(Kermany et al. 2018: chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg).

Each class folder's name is a condition (its column: 1 for the images in it, 0 for the others), except the
normal one (``--normal_name``, default NORMAL, any case), whose images are the ``No Finding`` rows. Images are
the files with an image suffix (or DICOM files) anywhere under a class folder. When every folder directly under
ROOT is a split name (train / val / test, and the other spellings of source.SPLIT_NAMES), that level is the
dataset's official split, kept with --official_split. The patient comes from each file name by
``--patient_regex`` (its first group, or the whole match; that collection: ``(person\\d+|IM-\\d+)`` for
person123_bacteria_456.jpeg and IM-0115-0001.jpeg); without it every image is its own patient.
"""
import os
import re

import pandas as pd

from data.conditions import NO_FINDING, require_condition_columns
from data.datasets.source import SPLIT_NAMES, Source
from data.dicom import is_dicom
from utils.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")
DEFAULT_NORMAL_NAME = "NORMAL"
PATIENT = "Patient"
CLASS = "Class"
SPLIT = "split"


def read_folders(root, conditions, hold_out, normal_name=DEFAULT_NORMAL_NAME, patient_regex=None,
                 official_split=False):
    """The images under ``root`` in CheXpert's columns; ``conditions`` None: every class but the normal one."""
    if not os.path.isdir(root):
        raise UserError(f"--root {root}: not a folder")
    top = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    has_split = bool(top) and all(d.lower() in SPLIT_NAMES for d in top)
    if official_split and not has_split:
        raise UserError(f"--official_split: the folders under {root} ({', '.join(top) or 'none'}) are not a split "
                        f"(train / val / test); leave --official_split out to draw one by patient")
    rows = []
    for split_folder in (top if has_split else [""]):
        base = os.path.join(root, split_folder)
        for class_name in sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))):
            for folder, dirnames, names in os.walk(os.path.join(base, class_name)):
                dirnames.sort()
                for name in sorted(names):
                    path = os.path.join(folder, name)
                    if name.lower().endswith(IMAGE_SUFFIXES) or is_dicom(path):
                        rows.append((os.path.relpath(path, root).replace(os.sep, "/"), class_name,
                                     SPLIT_NAMES[split_folder.lower()] if has_split else None))
    if not rows:
        raise UserError(f"--root {root}: no images in class folders ({'SPLIT/' if has_split else ''}CLASS/image; "
                        f"image files end with {', '.join(IMAGE_SUFFIXES)})")
    frame = pd.DataFrame(rows, columns=["Path", CLASS, SPLIT])
    normal = frame[CLASS].str.upper() == normal_name.upper()
    classes = sorted(set(frame[CLASS][~normal]))
    if not normal.any():
        raise UserError(f"--normal_name {normal_name}: no class folder of that name under {root} (found "
                        f"{', '.join(sorted(set(frame[CLASS])))}); name the folder of normal X-rays")
    frame[NO_FINDING] = normal.astype(float).where(normal)  # 1 or blank, as CheXpert
    for class_name in classes:
        frame[class_name] = (frame[CLASS] == class_name).astype(float)
    if conditions is None:
        conditions = classes
    else:
        require_condition_columns(frame, conditions, root, hold_out, purpose="class folders")
    frame[PATIENT], notes = patients(frame["Path"], patient_regex)
    return Source(frame=frame, conditions=list(conditions), files=[root], patient_column=PATIENT,
                  official_split=frame[SPLIT] if official_split else None, notes=notes,
                  image_hint=f"images are ROOT/{'SPLIT/' if has_split else ''}CLASS/... under {root}")


def patients(paths, patient_regex):
    """(the patient of each image from its file name by ``patient_regex``, notes); the Path itself without one."""
    if patient_regex is None:
        return paths.copy(), ["no --patient_regex: every image counts as its own patient, so images of one patient "
                              "may land in different splits"]
    try:
        pattern = re.compile(patient_regex)
    except re.error as err:
        raise UserError(f"--patient_regex {patient_regex!r}: not a regular expression ({err})") from None
    found = []
    for path in paths:
        match = pattern.search(os.path.basename(path))
        if match is None:
            raise UserError(f"{path}: its file name does not match --patient_regex {patient_regex!r}; every image "
                            "needs a patient (leave the option out to treat each image as its own patient)")
        found.append(match.group(1) if pattern.groups else match.group(0))
    return pd.Series(found, index=paths.index, dtype=object), []
