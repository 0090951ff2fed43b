"""What a dataset reader returns: one table in CheXpert's columns, plus where its patients and official split are.

Every reader (chexpert.py, nih.py, mimic.py) turns its dataset's files into the
same shape, so that prepare_data.py splits and writes them with one piece of
code: ``Path`` relative to the dataset's root folder, the condition columns under
CheXpert's names (1 positive, 0 negative, -1 uncertain, blank not mentioned),
``No Finding``, and ``Sex`` / ``Age`` / ``Frontal/Lateral`` where the source
has them, followed by every column of the source itself.
"""
import os
from dataclasses import dataclass, field

import pandas as pd

from data.asl import FRONTAL
from utils.errors import UserError

LATERAL = "Lateral"  # CheXpert's other value of 'Frontal/Lateral' (data.asl.FRONTAL is the first)
# View positions (DICOM's ViewPosition, NIH's 'View Position'), case-insensitive; any other is left blank.
VIEW_OF_POSITION = {"PA": FRONTAL, "AP": FRONTAL, "LL": LATERAL, "RL": LATERAL, "LATERAL": LATERAL,
                    "XTABLE LATERAL": LATERAL}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
               "validation": "val", "dev": "val", "test": "test", "testing": "test"}


@dataclass
class Source:
    frame: pd.DataFrame  # one row per X-ray, CheXpert's column names first
    conditions: list  # the condition columns of ``frame`` that prepare_data.py uses
    files: list  # the files read, for prepare_data.json
    patient_column: str | None = None  # column naming the patient; None: CheXpert's 'patientNNNNN' in Path
    official_split: pd.Series | None = None  # 'train' / 'val' / 'test' per row (index of ``frame``), if read
    notes: list = field(default_factory=list)  # lines for the log: what the source lacks, what was changed
    name_map: dict = field(default_factory=dict)  # the source's finding name -> its column here
    name_map_lines: list = field(default_factory=list)  # the name map as printed for the user
    image_hint: str = ""  # where the images are expected, for the message about missing ones
    skipped: pd.DataFrame | None = None  # files found but not read (Path, reason): DICOM folders, written out


def find_file(folder, names, what):
    """The first of ``names`` (also gzipped) that exists in ``folder``; one-line error naming them otherwise."""
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    raise UserError(f"{folder}: no {what} ({' or '.join(names)}, optionally .gz) in this folder")


def views(positions):
    """'Frontal' / 'Lateral' / blank for each view position, and a note naming the positions left blank."""
    upper = positions.astype("string").str.strip().str.upper()
    view = upper.map(VIEW_OF_POSITION)
    unknown = upper[view.isna()].fillna("(blank)").value_counts()
    note = None
    if len(unknown):
        shown = ", ".join(f"{name} {count}" for name, count in unknown.head(6).items())
        note = (f"{int(unknown.sum())} X-ray(s) have a view position that is neither frontal (PA, AP) nor lateral "
                f"(LL, RL, LATERAL): {shown}{', ...' if len(unknown) > 6 else ''}; their Frontal/Lateral is blank "
                "(--frontal_only leaves them out)")
    return view.astype(object).where(view.notna(), None), note


def normalised_split(values, source):
    """'train' / 'val' / 'test' for each value of an official split column; any other value is refused."""
    text = values.astype("string").str.strip().str.lower()
    split = text.map(SPLIT_NAMES)
    bad = split.isna()
    if bad.any():
        row = bad.idxmax()
        value = "blank" if pd.isna(values[row]) else repr(values[row])
        raise UserError(f"{source}: row {row} is {value}; allowed split names: {', '.join(SPLIT_NAMES)}")
    return split.astype(object)
