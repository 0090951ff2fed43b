"""Checks across rows and files that no single reader makes: an X-ray listed twice (prepare_data.py), and
training and validation CSVs that are the same files or share X-rays or patients (run_selector.py).

An X-ray listed twice can land in one task's pool and its query set; validation on the training CSVs picks
the best checkpoint on training data.
"""
import filecmp
import os
import re

import pandas as pd

from utils.errors import UserError

PATIENT_PATTERN = re.compile(r"(patient\d+)")  # CheXpert paths: .../train/patient00001/study1/view1_frontal.jpg
SHOWN = 3  # examples named in a message


def refuse_duplicate_paths(frame, sources):
    """Refuse a table (``frame`` read from the files ``sources``) that lists an image 'Path' more than once."""
    paths = frame["Path"].astype(str)
    repeated = paths.duplicated(keep="first")
    if repeated.any():
        examples = ", ".join(repr(p) for p in pd.unique(paths[repeated])[:SHOWN])
        raise UserError(f"{', '.join(sources)}: {int(repeated.sum())} row(s) repeat a Path listed before (e.g. "
                        f"{examples}); an X-ray listed twice can be in a task's pool and its query set: remove "
                        "the repeated rows")


def check_separate_splits(train, val):
    """Refuse validation CSVs that are training CSVs (the same file, or the same bytes); return warnings (lines)
    when the two splits share X-rays ('Path') or CheXpert patients (patientNNNNN in 'Path').

    train, val: {flag: CSV path}.
    """
    for val_flag, val_path in val.items():
        for train_flag, train_path in train.items():
            if _same_content(val_path, train_path):
                raise UserError(f"{val_flag} {val_path}: is the same file as {train_flag}"
                                f"{'' if os.path.samefile(val_path, train_path) else ' (the same content)'}; the best "
                                "checkpoint would be chosen on training data: give the validation split's CSVs")
    train_paths, val_paths = _paths(train.values()), _paths(val.values())
    warnings = []
    shared = sorted(set(train_paths) & set(val_paths))
    if shared:
        warnings.append(f"{len(shared)} X-ray(s) are in both the training and the validation CSVs (e.g. "
                        f"{shared[0]}): the best checkpoint is partly chosen on training X-rays")
    train_patients, val_patients = _patients(train_paths), _patients(val_paths)
    patients = sorted(train_patients & val_patients)
    if patients:
        warnings.append(f"{len(patients)} patient(s) have X-rays in both the training and the validation CSVs "
                        f"(e.g. {patients[0]}): the best checkpoint is partly chosen on patients seen in training")
    return warnings


def _same_content(a, b):
    return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)


def _paths(csv_paths):
    return pd.concat([pd.read_csv(p, usecols=["Path"], dtype=str)["Path"] for p in csv_paths]).dropna().tolist()


def _patients(paths):
    return {match.group(1) for match in map(PATIENT_PATTERN.search, paths) if match}
