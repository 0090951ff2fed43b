"""NIH ChestX-ray14 (Wang et al., CVPR 2017): Data_Entry_2017.csv and the images under images*/.

Data_Entry_2017.csv has one row per image: ``Image Index`` (the file name),
``Finding Labels`` ('|'-separated findings, ``No Finding`` for normals),
``Follow-up #``, ``Patient ID``, ``Patient Age``, ``Patient Gender`` (M / F; ``Patient Sex`` in
some copies),
``View Position`` (PA / AP / LL), ... Each finding becomes a column, 1 when
listed and 0 when not (NIH has no "uncertain"), under CheXpert's name where it
is the same finding (NIH_TO_CHEXPERT) and under NIH's own name otherwise.
Images are found by file name anywhere under ROOT/images*/: NIH's download
unpacks into images/, Kaggle's copy into images_001/images/ ... images_012/images/.
The official split, train_val_list.txt and test_list.txt (image names), sits
beside the CSV; it is patient-disjoint and has no validation part.
"""
import glob
import os

import pandas as pd

from data.conditions import NO_FINDING, require_condition_columns
from data.csv_hdf5 import read_csv
from data.datasets.source import FRONTAL, Source, find_file, views
from utils.errors import UserError

DATA_ENTRY_NAMES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
OFFICIAL_LISTS = {"train": "train_val_list.txt", "test": "test_list.txt"}
REQUIRED_COLUMNS = ["Image Index", "Finding Labels", "Patient ID", "Patient Age", "View Position"]
SEX_COLUMNS = ("Patient Gender", "Patient Sex")  # the name differs between copies of the file
# NIH's fourteen findings, in the order of its paper; any other label found is added after them.
NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
# NIH name -> CheXpert's column for the findings the two label sets share.
NIH_TO_CHEXPERT = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion",
                   "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax", "Consolidation": "Consolidation",
                   "Edema": "Edema"}
NIH_NO_FINDING = "No Finding"
SEX = {"M": "Male", "F": "Female"}
IMAGE_FOLDERS = "images*"
LABEL_SEPARATOR = "|"


def data_entry_csv(root):
    return find_file(root, DATA_ENTRY_NAMES, "NIH ChestX-ray14 label file")


def read_nih(label_csv, root, conditions, hold_out, official_split=False):
    """The NIH table in CheXpert's columns; ``conditions`` None: every finding of the file is a condition."""
    source = read_csv(label_csv, required_columns=REQUIRED_COLUMNS)
    source = source.loc[:, ~source.columns.astype(str).str.startswith("Unnamed:")]  # the file's trailing comma
    sex_column = next((c for c in SEX_COLUMNS if c in source.columns), None)
    if sex_column is None:
        raise UserError(f"{label_csv}: missing column {SEX_COLUMNS[0]!r} (or {SEX_COLUMNS[1]!r}); found "
                        f"{', '.join(repr(c) for c in source.columns)}")
    findings = source["Finding Labels"].astype("string").str.strip()
    blank = findings.isna() | (findings == "")
    if blank.any():
        raise UserError(f"{label_csv}: row {int(blank.to_numpy().argmax())} has no 'Finding Labels' (NIH lists "
                        f"'{NIH_NO_FINDING}' for a normal X-ray)")
    listed = findings.str.get_dummies(sep=LABEL_SEPARATOR)  # (rows, labels) of 0/1
    labels = [n for n in NIH_FINDINGS if n in listed.columns]
    labels += sorted(n for n in listed.columns if n not in NIH_FINDINGS and n != NIH_NO_FINDING)
    name_map = {n: NIH_TO_CHEXPERT.get(n, n) for n in labels}

    frame = pd.DataFrame(index=source.index)
    frame["Path"] = image_paths(source["Image Index"], root)
    frame["Sex"] = source[sex_column].astype("string").str.strip().str.upper().map(SEX).astype(object)
    # Some copies write ages as '058Y'.
    frame["Age"] = pd.to_numeric(source["Patient Age"].astype("string").str.rstrip("Yy"), errors="coerce")
    frame["Frontal/Lateral"], view_note = views(source["View Position"])
    frame["AP/PA"] = source["View Position"].where(frame["Frontal/Lateral"] == FRONTAL)
    no_finding = listed[NIH_NO_FINDING] if NIH_NO_FINDING in listed.columns else pd.Series(0, index=source.index)
    frame[NO_FINDING] = no_finding.astype(float).where(no_finding == 1)  # 1 or blank, as CheXpert
    for label, column in name_map.items():
        frame[column] = listed[label].astype(float)
    frame = pd.concat([frame, source], axis=1)

    if conditions is None:
        conditions = list(name_map.values())
    else:
        require_condition_columns(frame, conditions, label_csv, hold_out,
                                  purpose=f"NIH finding -> column: {'; '.join(describe(name_map))}",
                                  available=list(name_map.values()))
    notes = [view_note] if view_note else []
    unknown_sex = int(frame["Sex"].isna().sum())
    if unknown_sex:
        notes.append(f"{unknown_sex} X-ray(s) have a {sex_column!r} other than M or F; their Sex is blank")
    split = official_split_of(source["Image Index"], os.path.dirname(label_csv), label_csv) if official_split else None
    files = [label_csv] + ([os.path.join(os.path.dirname(label_csv), n) for n in OFFICIAL_LISTS.values()]
                           if official_split else [])
    return Source(frame=frame, conditions=conditions, files=files, patient_column="Patient ID",
                  official_split=split, notes=notes, name_map=name_map,
                  name_map_lines=["NIH finding -> column:", *(f"  {part}" for part in describe(name_map))],
                  image_hint=f"NIH's images are looked for by name under {os.path.join(root, IMAGE_FOLDERS)}/")


def describe(name_map):
    """['Effusion -> Pleural Effusion', 'same name in CheXpert: Atelectasis, ...', "NIH only, NIH's name: ..."]."""
    renamed = [f"{n} -> {c}" for n, c in name_map.items() if n != c]
    same = [n for n, c in name_map.items() if n == c and n in NIH_TO_CHEXPERT]
    only = [n for n in name_map if n not in NIH_TO_CHEXPERT]
    parts = renamed + ([f"same name in CheXpert: {', '.join(same)}"] if same else [])
    return parts + ([f"NIH only, NIH's name: {', '.join(only)}"] if only else [])


def image_paths(names, root):
    """Each image's path relative to ``root``, found under images*/; 'images/NAME' where it is not there."""
    found = {}
    for folder in sorted(glob.glob(os.path.join(root, IMAGE_FOLDERS))):
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()  # the first copy of a name, in a fixed order
            for filename in filenames:
                found.setdefault(filename, os.path.relpath(os.path.join(dirpath, filename), root))
    return names.astype(str).map(lambda name: found.get(name, f"images/{name}"))


def official_split_of(names, folder, label_csv):
    """'train' / 'test' per image from NIH's train_val_list.txt and test_list.txt beside the CSV."""
    split_of_name = {}
    for split, list_name in OFFICIAL_LISTS.items():
        path = os.path.join(folder, list_name)
        if not os.path.isfile(path):
            raise UserError(f"{path}: not found; --official_split reads NIH's "
                            f"{' and '.join(OFFICIAL_LISTS.values())} beside {os.path.basename(label_csv)}")
        with open(path) as f:
            for line in f:
                name = line.strip()
                if not name:
                    continue
                if split_of_name.setdefault(name, split) != split:
                    raise UserError(f"{path}: {name} is also in {OFFICIAL_LISTS[split_of_name[name]]}")
    split = names.astype(str).map(split_of_name)
    unlisted = split.isna()
    if unlisted.any():
        raise UserError(f"{label_csv}: {int(unlisted.sum())} image(s) are in neither "
                        f"{' nor '.join(OFFICIAL_LISTS.values())}, e.g. {names[unlisted].iloc[0]}")
    return split.astype(object)
