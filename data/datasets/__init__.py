"""Readers of chest X-ray datasets, one per layout, each returning a ``Source`` (see source.py).

    chexpert  CheXpert's train.csv (and valid.csv), or your own CSV in its column layout
    nih       NIH ChestX-ray14: Data_Entry_2017.csv, images under images*/
    mimic     MIMIC-CXR-JPG 2.0.0: mimic-cxr-2.0.0-{chexpert,metadata,split}.csv, images under files/
"""
from data.conditions import NO_FINDING
from data.csv_hdf5 import read_csv
from data.datasets import mimic, nih
from data.datasets.chexpert import read_chexpert
from data.datasets.source import Source
from utils.errors import UserError

# The columns that tell each layout's label file apart.
LAYOUT_COLUMNS = {"chexpert": ["Path", NO_FINDING], "nih": nih.REQUIRED_COLUMNS,
                  "mimic": [*mimic.STUDY_KEYS, NO_FINDING]}
FORMATS = tuple(LAYOUT_COLUMNS)


def read_dataset(fmt, label_csvs, root, conditions, hold_out, patient_column=None, official_split=False):
    """The dataset's rows as a Source.

    ``label_csvs``: the label file(s) given on the command line; for nih and mimic at most one, found under
    ``root`` by its official name when none is given. ``conditions`` None (nih only): every finding.
    """
    if fmt == "chexpert":
        if not label_csvs:
            raise UserError("--format chexpert needs --train_csv (CheXpert's train.csv or a CSV in its layout)")
        for csv_path in label_csvs:
            check_layout(fmt, csv_path)
        return read_chexpert(label_csvs, conditions, hold_out, patient_column)
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
