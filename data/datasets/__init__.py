"""Readers of chest X-ray datasets, one per layout, each returning a ``Source`` (see source.py).

    chexpert  CheXpert's train.csv (and valid.csv), or your own CSV in its column layout
    nih       NIH ChestX-ray14: Data_Entry_2017.csv, images under images*/
    mimic     MIMIC-CXR-JPG 2.0.0: mimic-cxr-2.0.0-{chexpert,metadata,split}.csv, images under files/
    dicom     a folder of DICOM files, read from their headers, joined to a label table (dicom_folder.py)
    folders   class-per-folder images, ROOT/[SPLIT/]CLASS/... (e.g. the pediatric pneumonia collection)
    mura      MURA v1.1's musculoskeletal radiographs: MURA-v1.1/{train,valid}_{image_paths,labeled_studies}.csv
"""
from data.conditions import NO_FINDING
from data.csv_hdf5 import read_csv
from data.datasets import mimic, mura, nih
from data.datasets.dicom_folder import read_labelled_dicom_folder
from data.datasets.folders import DEFAULT_NORMAL_NAME, read_folders
from data.datasets.chexpert import read_chexpert
from data.datasets.source import Source
from utils.errors import UserError

# The columns that tell each layout's label file apart.
LAYOUT_COLUMNS = {"chexpert": ["Path", NO_FINDING], "nih": nih.REQUIRED_COLUMNS,
                  "mimic": [*mimic.STUDY_KEYS, NO_FINDING]}
# Layouts read from a folder (their label files, if any, have no fixed name under --root).
FOLDER_FORMATS = ("dicom", "folders", "mura")
FORMATS = tuple(LAYOUT_COLUMNS) + FOLDER_FORMATS


def read_dataset(fmt, label_csvs, root, conditions, hold_out, patient_column=None, official_split=False,
                 labels=None, label_key=None, patient_salt=None, normal_name=DEFAULT_NORMAL_NAME, patient_regex=None):
    """The dataset's rows as a Source.

    ``label_csvs``: the label file(s) given on the command line; for nih and mimic at most one, found under
    ``root`` by its official name when none is given. ``conditions`` None (nih, folders, mura): every finding,
    class or body part. ``labels``, ``label_key``, ``patient_salt`` (hash the PatientIDs with it): dicom;
    ``normal_name``, ``patient_regex``: folders.
    """
    if fmt == "chexpert":
        if not label_csvs:
            raise UserError("--format chexpert needs --train_csv (CheXpert's train.csv or a CSV in its layout)")
        for csv_path in label_csvs:
            check_layout(fmt, csv_path)
        return read_chexpert(label_csvs, conditions, hold_out, patient_column)
    if fmt in FOLDER_FORMATS:
        if label_csvs:
            raise UserError(f"--format {fmt} reads --root; --train_csv and --valid_csv are for label files")
        if root is None:
            raise UserError(f"--format {fmt} needs --root, the folder holding the dataset")
        if fmt == "dicom":
            if labels is None or label_key is None:
                raise UserError("--format dicom needs --labels CSV and --label_key COLUMN to make split CSVs (or "
                                "--pool_only for one pool.csv without labels)")
            source = read_labelled_dicom_folder(root, labels, label_key, conditions, hold_out, patient_salt)
        elif fmt == "folders":
            source = read_folders(root, conditions, hold_out, normal_name, patient_regex, official_split)
        else:
            source = mura.read_mura(root, conditions, hold_out, official_split)
        if patient_column:
            source.patient_column = patient_column
        return source
    if len(label_csvs) > 1:
        raise UserError(f"--format {fmt} reads one label file (--train_csv); --valid_csv is CheXpert's")
    if root is None:
        raise UserError(f"--format {fmt} needs --root, the folder holding the dataset's images")
    if fmt == "nih":
        label_csv = label_csvs[0] if label_csvs else nih.data_entry_csv(root)
        check_layout(fmt, label_csv)
        source = nih.read_nih(label_csv, root, conditions, hold_out, official_split)
    else:
        label_csv = label_csvs[0] if label_csvs else mimic.labels_csv(root)
        check_layout(fmt, label_csv)
        source = mimic.read_mimic(label_csv, root, conditions, hold_out, official_split)
    if patient_column:
        source.patient_column = patient_column
    return source


def check_layout(fmt, csv_path):
    """Refuse a label file without the columns of ``fmt``, naming the layout it does have, if any."""
    columns = set(read_csv(csv_path, required_columns=(), header_only=True).columns)
    missing = [c for c in LAYOUT_COLUMNS[fmt] if c not in columns]
    if not missing:
        return
    fits = [f for f, needed in LAYOUT_COLUMNS.items() if f != fmt and set(needed) <= columns]
    hint = (f"it looks like --format {fits[0]}" if fits else "it fits none of the layouts: " + "; ".join(
        f"{f} ({', '.join(needed)})" for f, needed in LAYOUT_COLUMNS.items()))
    raise UserError(f"{csv_path}: not a {fmt} label file: missing column(s) {', '.join(repr(c) for c in missing)}; "
                    f"{hint}")


__all__ = ["FORMATS", "Source", "read_dataset"]
