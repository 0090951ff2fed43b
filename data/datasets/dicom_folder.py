"""A folder of DICOM files (as a PACS exports them): one row per X-ray from the headers alone.

Every file under the root that is DICOM (data/dicom.py's ``is_dicom``: a .dcm / .dicom name or 'DICM' at byte
128) is read with ``stop_before_pixels``, so a folder of thousands of full-size X-rays is scanned in seconds.
Its row: ``Path`` (relative to the root), ``PatientID``, ``StudyInstanceUID``, ``SOPInstanceUID``,
``AccessionNumber``, ``Sex`` (PatientSex M / F / O -> Male / Female / Other), ``Age`` in years (PatientAge
'061Y' / '006M' / '003W' / '010D', or a bare number of years; else StudyDate - PatientBirthDate),
``Frontal/Lateral`` from ``ViewPosition`` (PA / AP frontal, LL / RL / LATERAL lateral, else blank),
``ViewPosition`` and ``Modality``.

Files that cannot be read are counted and listed, as are DICOM files xray_to_hdf5.py would refuse (not a
radiograph, several frames, colour: data/dicom.py's ``header_problem``); neither is fatal unless no X-ray is
left. With a label table (``--labels CSV --label_key COLUMN``) the rows are joined to its labels; with
``--hash_patient`` the PatientID is replaced by a salted SHA-256, so that the CSVs can be shared.
"""
import hashlib
import os
from datetime import datetime

import numpy as np
import pandas as pd
from tqdm import tqdm

from data.conditions import NO_FINDING, require_condition_columns
from data.csv_hdf5 import read_csv
from data.datasets.source import Source, views
from data.dicom import header_problem, is_dicom, read_header
from data.labels import numeric_labels
from utils.errors import UserError

HEADER_COLUMNS = ["Path", "PatientID", "StudyInstanceUID", "SOPInstanceUID", "AccessionNumber", "Sex", "Age",
                  "Frontal/Lateral", "ViewPosition", "Modality"]
SEX = {"M": "Male", "F": "Female", "O": "Other"}
DAYS_PER_YEAR = 365.25
AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / DAYS_PER_YEAR, "D": 1 / DAYS_PER_YEAR}  # PatientAge's unit -> years
PATIENT = "PatientID"
SKIPPED_COLUMNS = ["Path", "reason"]


def read_dicom_folder(root, progress=True):
    """(the header table, skipped: a frame of Path and reason, notes) for every DICOM file under ``root``."""
    if not os.path.isdir(root):
        raise UserError(f"--root {root}: not a folder")
    files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names)
    rows, skipped, not_dicom = [], [], 0
    for path in tqdm(files, desc="reading DICOM headers", unit="file", disable=None if progress else True):
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        if not is_dicom(path):
            not_dicom += 1
            continue
        try:
            ds = read_header(path, stop_before_pixels=True)
        except (OSError, ValueError) as err:
            skipped.append((relative, f"unreadable: {str(err).strip().splitlines()[0] if str(err).strip() else err}"))
            continue
        problem = header_problem(ds)
        if problem:
            skipped.append((relative, problem))
            continue
        rows.append(header_row(ds, relative))
    frame = pd.DataFrame(rows, columns=HEADER_COLUMNS)
    skipped = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
    notes = []
    if not_dicom:
        notes.append(f"{not_dicom} file(s) under {root} are not DICOM (no .dcm/.dicom name, no 'DICM' at byte "
                     "128); not read")
    if frame.empty:
        reasons = f" ({len(skipped)} DICOM file(s) skipped, e.g. {skipped['Path'].iloc[0]}: " \
                  f"{skipped['reason'].iloc[0]})" if len(skipped) else ""
        raise UserError(f"--root {root}: no readable DICOM X-ray in {len(files)} file(s){reasons}")
    frame["Frontal/Lateral"], view_note = views(frame["ViewPosition"])
    notes += [view_note] if view_note else []
    unknown_age = int(frame["Age"].isna().sum())
    if unknown_age:
        notes.append(f"{unknown_age} X-ray(s) have no PatientAge and no PatientBirthDate with StudyDate; their Age "
                     "is blank")
    return frame, skipped, notes


def header_row(ds, path):
    """One row of HEADER_COLUMNS from a DICOM header (``Frontal/Lateral`` is filled from ViewPosition later)."""
    def text(keyword):
        value = ds.get(keyword)
        return None if value is None or str(value).strip() == "" else str(value).strip()
    sex = text("PatientSex")
    return {"Path": path, "PatientID": text("PatientID"), "StudyInstanceUID": text("StudyInstanceUID"),
            "SOPInstanceUID": text("SOPInstanceUID"), "AccessionNumber": text("AccessionNumber"),
            "Sex": SEX.get(sex.upper()) if sex else None,
            "Age": age_in_years(text("PatientAge"), text("StudyDate"), text("PatientBirthDate")),
            "Frontal/Lateral": None, "ViewPosition": text("ViewPosition"), "Modality": text("Modality")}


def age_in_years(patient_age, study_date, birth_date):
    """Age in years from PatientAge (nnnY / nnnM / nnnW / nnnD, or a bare number of years), else from the dates
    (YYYYMMDD); None when neither is usable."""
    if patient_age:
        number, unit = (patient_age[:-1], patient_age[-1].upper()) if patient_age[-1].isalpha() else \
            (patient_age, "Y")
        try:
            if unit in AGE_UNITS:
                return float(number) * AGE_UNITS[unit]
        except ValueError:
            pass
    try:
        days = (datetime.strptime(study_date[:8], "%Y%m%d") - datetime.strptime(birth_date[:8], "%Y%m%d")).days
    except (TypeError, ValueError):
        return None
    return days / DAYS_PER_YEAR if days >= 0 else None


def hashed_patients(patients, salt):
    """Each PatientID replaced by the first 16 hex digits of SHA-256(salt + PatientID); blank stays blank."""
    return patients.map(lambda p: None if p is None or pd.isna(p) else
                        hashlib.sha256(f"{salt}{p}".encode("utf-8")).hexdigest()[:16])


def pool_table(root, salt=None):
    """(the header table of every DICOM X-ray under ``root``, skipped files, notes) for --pool_only; PatientIDs
    hashed with ``salt`` when given."""
    frame, skipped, notes = read_dicom_folder(root)
    if salt is not None:
        frame[PATIENT] = hashed_patients(frame[PATIENT], salt)
    return frame, skipped, notes


def read_labelled_dicom_folder(root, labels_csv, label_key, conditions, hold_out, salt=None):
    """The header table of ``root`` joined on ``label_key`` to the CheXpert-layout label table ``labels_csv``."""
    frame, skipped, notes = read_dicom_folder(root)
    labels = read_csv(labels_csv, required_columns=[label_key, NO_FINDING])
    if label_key not in frame.columns:
        raise UserError(f"--label_key {label_key!r}: not a column of the DICOM header table; one of "
                        f"{', '.join(c for c in HEADER_COLUMNS if c != 'Path')}")
    require_condition_columns(labels, conditions, labels_csv, hold_out)
    labels = numeric_labels(labels, [NO_FINDING, *conditions], labels_csv)
    labels[label_key] = labels[label_key].astype("string").str.strip()
    repeated = labels[label_key].duplicated() & labels[label_key].notna()
    if repeated.any():
        row = int(np.argmax(repeated.to_numpy()))
        raise UserError(f"{labels_csv}: row {row} repeats {label_key} {labels[label_key].iloc[row]}; one row of "
                        "labels per key")
    keys = frame[label_key].astype("string")
    unlabelled = ~keys.isin(labels[label_key].dropna())
    if unlabelled.all():
        raise UserError(f"{labels_csv}: no {label_key} of the {len(frame)} DICOM file(s) under {root} is in it "
                        f"(e.g. {keys.iloc[0]})")
    if unlabelled.any():
        notes.append(f"{int(unlabelled.sum())} of {len(frame)} DICOM X-ray(s) have no row in "
                     f"{os.path.basename(labels_csv)} (by {label_key}); they are left out")
    label_columns = [c for c in labels.columns if c != label_key and c not in frame.columns]
    joined = frame[~unlabelled].assign(**{label_key: keys[~unlabelled]}).merge(
        labels[[label_key, *label_columns]], on=label_key, how="left")
    if salt is not None:
        joined[PATIENT] = hashed_patients(joined[PATIENT], salt)
    return Source(frame=joined, conditions=list(conditions), files=[labels_csv], patient_column=PATIENT,
                  notes=notes, skipped=skipped)
