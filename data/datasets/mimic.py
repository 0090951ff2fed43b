"""MIMIC-CXR-JPG 2.0.0 (Johnson et al. 2019): labels per study, given to every image of the study.

* mimic-cxr-2.0.0-chexpert.csv: ``subject_id``, ``study_id`` and the CheXpert
  labeler's columns under CheXpert's names (1, 0, -1 uncertain, blank), one row per study;
* mimic-cxr-2.0.0-metadata.csv: ``dicom_id``, ``subject_id``, ``study_id``,
  ``ViewPosition``, ..., one row per image;
* mimic-cxr-2.0.0-split.csv: ``dicom_id``, ``study_id``, ``subject_id``,
  ``split`` (train / validate / test), read for --official_split.

Each image is ``files/pNN/pSUBJECT/sSTUDY/DICOM.jpg`` under the root (NN: the
first two digits of the subject). The patient is ``subject_id``. These files
have no Sex or Age (they are in MIMIC-IV's patients table), so none is written.
"""
import os

from data.conditions import NO_FINDING, require_condition_columns
from data.csv_hdf5 import read_csv
from data.datasets.source import FRONTAL, Source, find_file, normalised_split, views
from data.labels import numeric_labels
from utils.errors import UserError

LABELS = "mimic-cxr-2.0.0-chexpert.csv"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
STUDY_KEYS = ["subject_id", "study_id"]


def labels_csv(root):
    return find_file(root, [LABELS], "MIMIC-CXR-JPG label file")


def read_mimic(label_csv, root, conditions, hold_out, official_split=False):
    """The MIMIC-CXR-JPG table in CheXpert's columns, one row per image of a labelled study."""
    folder = os.path.dirname(label_csv)
    labels = read_csv(label_csv, required_columns=[*STUDY_KEYS, NO_FINDING])
    require_condition_columns(labels, conditions, label_csv, hold_out)
    labels = numeric_labels(labels, [NO_FINDING, *conditions], label_csv)
    repeated = labels.duplicated(STUDY_KEYS)
    if repeated.any():
        row = int(repeated.to_numpy().argmax())
        raise UserError(f"{label_csv}: row {row} repeats study {labels['study_id'].iloc[row]} of subject "
                        f"{labels['subject_id'].iloc[row]}; a study has one row of labels")
    metadata_csv = find_file(folder, [METADATA], "MIMIC-CXR-JPG metadata file")
    metadata = read_csv(metadata_csv, required_columns=["dicom_id", *STUDY_KEYS, "ViewPosition"])
    images = metadata.merge(labels, on=STUDY_KEYS, how="inner")  # keeps the metadata's order
    notes = ["MIMIC-CXR-JPG's files have no Sex or Age (they are in MIMIC-IV's patients table): the split CSVs "
             "have no Sex / Age columns, so USE_ASL cannot be used with them"]
    unlabelled = len(metadata) - len(images)
    if unlabelled:
        notes.append(f"{unlabelled} of {len(metadata)} image(s) in {os.path.basename(metadata_csv)} belong to a "
                     f"study without a row in {os.path.basename(label_csv)}; they are left out")
    if images.empty:
        raise UserError(f"{metadata_csv}: no image belongs to a study of {label_csv} (matched on subject_id and "
                        "study_id)")

    frame = images[[]].copy()
    subject = images["subject_id"].astype(str)
    frame["Path"] = ("files/p" + subject.str[:2] + "/p" + subject + "/s" + images["study_id"].astype(str) + "/"
                     + images["dicom_id"].astype(str) + ".jpg")
    frame["Frontal/Lateral"], view_note = views(images["ViewPosition"])
    frame["AP/PA"] = images["ViewPosition"].where(frame["Frontal/Lateral"] == FRONTAL)
    label_columns = [c for c in labels.columns if c not in STUDY_KEYS]
    frame = frame.join(images[label_columns]).join(images.drop(columns=label_columns))
    notes += [view_note] if view_note else []

    split = None
    if official_split:
        split_csv = find_file(folder, [SPLIT], "MIMIC-CXR-JPG split file (needed by --official_split)")
        split_table = read_csv(split_csv, required_columns=["dicom_id", "split"])
        split_of_image = split_table.drop_duplicates("dicom_id").set_index("dicom_id")["split"]
        split = images["dicom_id"].map(split_of_image)
        missing = split.isna()
        if missing.any():
            raise UserError(f"{split_csv}: {int(missing.sum())} image(s) have no split, e.g. dicom_id "
                            f"{images['dicom_id'][missing].iloc[0]}")
        split = normalised_split(split, split_csv)
    files = [label_csv, metadata_csv] + ([split_csv] if official_split else [])
    return Source(frame=frame, conditions=list(conditions), files=files,
                  patient_column="subject_id", official_split=split, notes=notes,
                  image_hint=f"MIMIC-CXR-JPG's images are files/pNN/pSUBJECT/sSTUDY/DICOM.jpg under {root}")
