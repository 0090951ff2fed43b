"""Make the split CSVs run_selector.py reads: from CheXpert, NIH ChestX-ray14, MIMIC-CXR-JPG or your own CSV.

    python3 prepare_data.py --train_csv CheXpert-v1.0-small/train.csv --out data/medselect
    python3 prepare_data.py --format nih --root ~/ChestX-ray14 --out data/nih
    python3 prepare_data.py --format mimic --root ~/mimic-cxr-jpg/2.0.0 --out data/mimic
    python3 prepare_data.py --format dicom --root ~/pacs_export --pool_only --out data/pool     # pool.csv
    python3 prepare_data.py --format dicom --root ~/pacs_export --labels labels.csv --label_key AccessionNumber \
        --out data/mine
    python3 prepare_data.py --format folders --root ~/chest_xray --patient_regex '(person\\d+|IM-\\d+)' --out data/peds
    python3 prepare_data.py --format mura --root ~/MURA --official_split --out data/mura
    python3 prepare_data.py --train_csv mine.csv --patient_column PatientID --split_column split \\
        --set NON_HOLD_OUT=Pneumonia --set HOLD_OUT= --out data/mine

writes {train,val,test}_{pos,norm}.csv into --out (``Path`` relative to --root,
CheXpert's column names; the readers are in data/datasets/). Positive: at least
one condition in use is 1 or -1; uncertain (-1) counts as positive and is written
as 1.0. Normal: 'No Finding' is 1. The split is by patient (no patient in two
splits) unless an official split is kept. A table of counts per condition and
split is printed and saved as counts.csv, then the ``--set`` line naming the
conditions that have enough positives for a task, to give run_selector.py.
Every check happens before anything is written.
"""
import argparse
import logging
import os
import re
import secrets

import numpy as np
import pandas as pd
from tqdm import tqdm

from data.asl import FRONTAL, laterality_column
from data.conditions import NO_FINDING, set_line
from data.csv_hdf5 import hdf5_path_for
from data.datasets import FORMATS, read_dataset
from data.datasets.dicom_folder import pool_table
from data.datasets.folders import DEFAULT_NORMAL_NAME
from data.datasets.source import normalised_split
from data.input_checks import refuse_duplicate_paths
from data.labels import POSITIVE, POSITIVE_VALUES, UNCERTAIN
from data.tasks import TaskShape
from data.validation_overlap import crowded_validation_warning
from utils.atomic import atomic_write_json, atomic_write_text
from utils.config import CONDITION_SETTINGS, apply_overrides, default_config, overridden_names
from utils.errors import UserError, run_cli
from utils.help_format import DefaultsHelpFormatter
from utils.logs import LOGGER_NAME, setup_logging
from utils.output_location import check_output_location, refuse_replacing

SPLITS = ("train", "val", "test")
KINDS = ("pos", "norm")
DEFAULT_VAL_FRAC = DEFAULT_TEST_FRAC = 0.1
PATIENT_PATTERN = re.compile(r"(patient\d+)")  # CheXpert paths: .../train/patient00001/study1/view1_frontal.jpg
EXAMPLES_SHOWN = 3
SKIPPED_FILES = "skipped_files.csv"

log = logging.getLogger(LOGGER_NAME)


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Split a chest X-ray dataset by patient into the positive and normal CSVs of each split "
                    "(train, val, test) that xray_to_hdf5.py and run_selector.py read.",
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--format", default="chexpert", metavar="|".join(FORMATS),
                        help="layout of the dataset's files: chexpert (CheXpert's train.csv, or your own CSV in its "
                             "columns), nih (ChestX-ray14's Data_Entry_2017.csv), mimic (MIMIC-CXR-JPG's "
                             "mimic-cxr-2.0.0-chexpert.csv with -metadata.csv and -split.csv beside it), dicom (a "
                             "folder of DICOM files, read from their headers), folders (ROOT/[SPLIT/]CLASS/images, "
                             "e.g. the pediatric pneumonia collection), mura (MURA v1.1)")
    parser.add_argument("--train_csv", default=None,
                        help="the label file: required for chexpert (Path relative to --root, the folder holding "
                             "CheXpert-v1.0-small/); for nih and mimic found under --root by its official name "
                             "unless given (the dataset's other files are read beside it)")
    parser.add_argument("--valid_csv", default=None,
                        help="chexpert: CheXpert's valid.csv, added to train.csv's rows before the split (its "
                             "patients are different ones)")
    parser.add_argument("--root", default=None,
                        help="folder the image paths start from; every image is checked to exist there. Required "
                             "for nih and mimic (their label files are found there too); chexpert: optional, no "
                             "check without it")
    parser.add_argument("--out", required=True, help="output folder for the split CSVs (created if missing)")
    parser.add_argument("--val_frac", type=float, default=None,
                        help=f"fraction of patients in the validation split, {DEFAULT_VAL_FRAC} when not given "
                             "(with an official split that has none: fraction of its training patients)")
    parser.add_argument("--test_frac", type=float, default=None,
                        help=f"fraction of patients in the test split, {DEFAULT_TEST_FRAC} when not given (not "
                             "used with an official split)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random assignment of patients to splits")
    parser.add_argument("--frontal_only", action="store_true", help="keep only frontal views (Frontal/Lateral)")
    parser.add_argument("--patient_column", default=None, metavar="NAME",
                        help="column naming each X-ray's patient (e.g. 'Patient ID', PatientID, subject_id); "
                             "default: CheXpert's patientNNNNN in Path, NIH's 'Patient ID', MIMIC's subject_id")
    parser.add_argument("--no_patient", action="store_true",
                        help="the dataset does not say which X-rays share a patient: split X-ray by X-ray "
                             "(a patient's X-rays may then land in different splits)")
    parser.add_argument("--split_column", default=None, metavar="NAME",
                        help="chexpert layout: keep the dataset's own split from this column (train / val / test; "
                             "also valid, validate, validation, dev, training, testing) instead of drawing one")
    parser.add_argument("--official_split", action="store_true",
                        help="nih: keep train_val_list.txt / test_list.txt (validation drawn from its training "
                             "patients); mimic: keep mimic-cxr-2.0.0-split.csv; folders: keep the train/val/test "
                             "folders; mura: train, and valid as the test split (validation drawn from train)")
    parser.add_argument("--drop_missing_images", action="store_true",
                        help="leave out (and count) the X-rays whose image is not under --root, instead of "
                             "stopping")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="constants.py values as given to run_selector.py: the conditions (NON_HOLD_OUT, "
                             "HOLD_OUT) and the task shape for the per-task size check (e.g. --set "
                             "UNLABELED_POOL_SIZE=200); repeatable")
    parser.add_argument("--overwrite", action="store_true", help="replace split CSVs already in --out")
    layouts = parser.add_argument_group("--format dicom and --format folders")
    layouts.add_argument("--pool_only", action="store_true",
                         help="dicom: write one pool.csv of every DICOM X-ray under --root for select_xrays.py (no "
                              "labels, no split): Path, PatientID, StudyInstanceUID, SOPInstanceUID, "
                              "AccessionNumber, Sex, Age, Frontal/Lateral, ViewPosition, Modality")
    layouts.add_argument("--labels", default=None, metavar="CSV",
                         help="dicom: label table in CheXpert's columns (No Finding and the conditions), one row per "
                              "--label_key value, joined to the DICOM headers; then split by patient (PatientID)")
    layouts.add_argument("--label_key", default=None, metavar="COLUMN",
                         help="dicom: the header column --labels is keyed by, e.g. SOPInstanceUID (one image) or "
                              "AccessionNumber (a study)")
    layouts.add_argument("--hash_patient", nargs="?", const="", default=None, metavar="SALT",
                         help="dicom: write SHA-256(SALT + PatientID) (16 hex digits) instead of the PatientID, for "
                              "sharing the CSVs; without SALT a random one, not kept (hashes then differ between runs)")
    layouts.add_argument("--normal_name", default=DEFAULT_NORMAL_NAME,
                         help="folders: the class folder of normal X-rays, any case")
    layouts.add_argument("--patient_regex", default=None, metavar="REGEX",
                         help="folders: regular expression finding the patient in each file name (its first group, "
                              "or the whole match), e.g. '(person\\d+|IM-\\d+)' for the pediatric pneumonia "
                              "collection; none: every image is its own patient")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    setup_logging()
    config = apply_overrides(default_config(), args.overrides)
    conditions_given = bool(overridden_names(args.overrides) & set(CONDITION_SETTINGS))
    val_frac, test_frac = check_arguments(args)
    salt = patient_salt(args.hash_patient)
    if args.pool_only:
        return write_pool(args, salt)
    outputs = {f"{split}_{kind}": os.path.join(args.out, f"{split}_{kind}.csv") for split in SPLITS for kind in KINDS}
    check_output_folder(args.out, outputs, args.overwrite)

    # Read and check everything before anything is written.
    # NIH's findings are not CheXpert's eight: unless conditions are given, every NIH finding is one.
    # So are the class folders of --format folders and MURA's body parts.
    every_finding = args.format in ("nih", "folders", "mura")
    conditions = None if every_finding and not conditions_given else config["ALL_COND"]
    source = read_dataset(args.format, [p for p in (args.train_csv, args.valid_csv) if p], args.root, conditions,
                          config["HOLD_OUT"], patient_column=args.patient_column, official_split=args.official_split,
                          labels=args.labels, label_key=args.label_key, patient_salt=salt,
                          normal_name=args.normal_name, patient_regex=args.patient_regex)
    frame, positive, normal, dropped, notes = rows_to_write(source, args)
    patients = None if args.no_patient else patient_ids(frame, source.patient_column)
    official = official_split(source, frame, args.split_column)
    if official is not None:
        split_of_row, split_notes = keep_official_split(official, patients, val_frac, args.seed,
                                                        args.val_frac is not None)
        notes += split_notes
    else:
        split_of_row = split_by_patient(patients if patients is not None else np.arange(len(frame)),
                                        val_frac, test_frac, args.seed)
    frames = split_frames(frame, positive, normal, split_of_row)

    for note in source.notes + notes:
        log.info("%s", note)
    crossing = patients_in_several_splits(patients, split_of_row)
    if crossing:
        log.warning("%d patient(s) have X-rays in more than one split of the official split", crossing)
    if args.no_patient and official is None:  # an official split is kept as it is
        log.warning("--no_patient: X-rays are split one by one, so images of one patient may land in different "
                    "splits (and a selector may be tested on patients it was trained on)")
    os.makedirs(args.out, exist_ok=True)
    for name, path in outputs.items():
        atomic_write_text(frames[name].to_csv(index=False), path)
    counts = count_table(frames, patients, split_of_row, source.conditions)
    atomic_write_text(counts.to_csv(), os.path.join(args.out, "counts.csv"))
    write_skipped(source.skipped, args.out)
    shape = TaskShape.from_config(config)
    non_hold_out, hold_out = usable_conditions(counts, source.conditions, config["HOLD_OUT"], shape)
    other_settings = [a.strip() for a in args.overrides if a.partition("=")[0].strip() not in CONDITION_SETTINGS]
    settings = set_line(non_hold_out, hold_out, other_settings) if non_hold_out else None
    atomic_write_json({"format": args.format, "files": [os.path.abspath(p) for p in source.files],
                       "root": os.path.abspath(args.root) if args.root else None,
                       "val_frac": None if official is not None and (official == "val").any() else val_frac,
                       "test_frac": test_frac if official is None else None, "seed": args.seed,
                       "frontal_only": args.frontal_only, "conditions": source.conditions,
                       "condition_names": source.name_map or None,
                       "patient": "none" if args.no_patient else (source.patient_column or "Path (patientNNNNN)"),
                       "split": ("official" if args.official_split else f"column {args.split_column}"
                                 if args.split_column else "drawn by patient"),
                       "missing_images_left_out": dropped, "set": settings,
                       "patient_hashed": salt is not None},
                      os.path.join(args.out, "prepare_data.json"))

    for line in source.name_map_lines:
        print(line)
    print(counts.to_string())
    warn_small_conditions(counts, config)
    crowded = crowded_validation_warning({c: int(counts.loc[c, "val"]) for c in non_hold_out},
                                         int(counts.loc["normal X-rays", "val"]), shape, outputs["val_pos"])
    if crowded:
        log.warning("WARNING: %s", crowded)
    stale = [hdf5_path_for(p) for p in outputs.values() if os.path.exists(hdf5_path_for(p))]
    if stale:
        log.warning("%d HDF5 file(s) in %s were made from the previous CSVs (e.g. %s): remake them with "
                    "xray_to_hdf5.py --overwrite", len(stale), args.out, os.path.basename(stale[0]))
    log.info("wrote %s to %s (counts in counts.csv)", ", ".join(f"{n}.csv" for n in outputs), args.out)
    print_settings(settings, non_hold_out, hold_out, shape)
    return 0


def patient_salt(hash_patient):
    """The salt of --hash_patient (None: not hashing); without a value, a random one that is never written."""
    if hash_patient is None:
        return None
    if hash_patient == "":
        log.info("--hash_patient: PatientIDs hashed with a random salt that is not kept (give --hash_patient SALT "
                 "for hashes that repeat between runs)")
        return secrets.token_hex(16)
    return hash_patient


def write_pool(args, salt):
    """--format dicom --pool_only: pool.csv (and skipped_files.csv) in --out, nothing else."""
    pool_csv = os.path.join(args.out, "pool.csv")
    check_output_location(args.out, "--out", folder=True)
    refuse_replacing(args.out, "--out", ["pool.csv"], args.overwrite, "pool CSV")
    frame, skipped, notes = pool_table(args.root, salt)
    for note in notes:
        log.info("%s", note)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(frame.to_csv(index=False), pool_csv)
    write_skipped(skipped, args.out)
    log.info("wrote %d DICOM X-ray(s) of %d patient(s) to %s; embed them with: python3 xray_to_hdf5.py -d %s -o %s "
             "--root %s -c moco.pth.tar", len(frame), frame["PatientID"].nunique(), pool_csv, pool_csv,
             hdf5_path_for(pool_csv), args.root)
    return 0


def write_skipped(skipped, out):
    """The files a DICOM folder had but that were not read (Path, reason) -> OUT/skipped_files.csv, and the log."""
    if skipped is None or skipped.empty:
        return
    path = os.path.join(out, SKIPPED_FILES)
    atomic_write_text(skipped.to_csv(index=False), path)
    for row in skipped.head(EXAMPLES_SHOWN).itertuples():
        log.warning("skipped %s: %s", row.Path, row.reason)
    log.warning("%d DICOM file(s) skipped (unreadable, or not X-rays xray_to_hdf5.py reads); all listed in %s",
                len(skipped), path)


def rows_to_write(source, args):
    """(frame, positive mask, normal mask, images left out, notes): the source's positive and normal rows,
    frontal only with --frontal_only, their images checked under --root."""
    refuse_duplicate_paths(source.frame, source.files)
    frame = frontal_rows(source.frame) if args.frontal_only else source.frame
    if len(frame) == 0:
        raise UserError(f"no rows left in {', '.join(source.files)}"
                        f"{' after --frontal_only' if args.frontal_only else ''}")
    frame, positive, normal, notes = classify_rows(frame, source.conditions)
    used = positive | normal  # X-rays that are neither are not written, so their images do not matter
    frame, positive, normal = frame[used], positive[used], normal[used]
    if args.root is None:
        notes.append("image files not checked: give --root (the folder the Paths start from) to check each exists")
        return frame, positive, normal, 0, notes
    found = images_found(frame, args.root, source.image_hint, args.drop_missing_images)
    return frame[found], positive[found], normal[found], int((~found).sum()), notes


def split_frames(frame, positive, normal, split_of_row):
    """{'train_pos': rows, ...}; a split without positives or normals is refused."""
    frames = {}
    for split in SPLITS:
        in_split = split_of_row == split
        frames[f"{split}_pos"] = frame[positive & in_split]
        frames[f"{split}_norm"] = frame[normal & in_split]
        for kind in KINDS:
            if len(frames[f"{split}_{kind}"]) == 0:
                raise UserError(f"no {'positive' if kind == 'pos' else 'normal'} X-rays left in the {split} split "
                                f"({int(in_split.sum())} rows); use more data or larger fractions")
    return frames


def check_arguments(args):
    """(val_frac, test_frac) after refusing combinations of options that cannot work."""
    if args.format not in FORMATS:
        raise UserError(f"--format {args.format}: unknown; the known layouts are {', '.join(FORMATS)} (a CSV in "
                        "CheXpert's columns is --format chexpert)")
    if args.no_patient and args.patient_column:
        raise UserError("--no_patient and --patient_column contradict each other; give one")
    if args.split_column and args.format != "chexpert":
        raise UserError(f"--split_column is for CSVs in CheXpert's layout; --format {args.format} keeps its "
                        "official split with --official_split")
    if args.official_split and args.format in ("chexpert", "dicom"):
        raise UserError("--official_split is for --format nih, mimic, folders or mura; for your own CSV name the "
                        "split's column with --split_column")
    check_layout_options(args)
    if args.valid_csv and args.format != "chexpert":
        raise UserError(f"--valid_csv is CheXpert's valid.csv; --format {args.format} reads one label file")
    val_frac = DEFAULT_VAL_FRAC if args.val_frac is None else args.val_frac
    test_frac = DEFAULT_TEST_FRAC if args.test_frac is None else args.test_frac
    if args.official_split or args.split_column:
        if args.test_frac is not None:
            raise UserError("--test_frac is not used with an official split (its test part is kept); leave it out")
        if not 0 < val_frac < 1:
            raise UserError(f"--val_frac {val_frac}: must be above 0 and below 1")
    elif not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise UserError(f"--val_frac {val_frac} and --test_frac {test_frac}: each must be above 0 and together "
                        "below 1, leaving patients for training")
    return val_frac, test_frac


def check_layout_options(args):
    """Refuse the options of one layout given with another (they would be ignored)."""
    given = {"--pool_only": args.pool_only, "--labels": args.labels, "--label_key": args.label_key,
             "--hash_patient": args.hash_patient is not None,
             "--normal_name": args.normal_name != DEFAULT_NORMAL_NAME,
             "--patient_regex": args.patient_regex}
    layout_of = {"--pool_only": "dicom", "--labels": "dicom", "--label_key": "dicom", "--hash_patient": "dicom",
                 "--normal_name": "folders", "--patient_regex": "folders"}
    for flag, value in given.items():
        if value and args.format != layout_of[flag]:
            raise UserError(f"{flag} is an option of --format {layout_of[flag]}, not of --format {args.format}")
    if args.pool_only and (args.labels or args.label_key):
        raise UserError("--pool_only writes a pool without labels; leave out --labels and --label_key (or "
                        "--pool_only, to make split CSVs)")
    if bool(args.labels) != bool(args.label_key):
        raise UserError("--labels and --label_key go together: the label table and the header column it is keyed by")
    if args.pool_only and args.root is None:
        raise UserError("--pool_only needs --root, the folder of DICOM files")


def check_output_folder(out, outputs, overwrite):
    """Refuse an --out that is a file, lies under a file, cannot be written or holds split CSVs already."""
    check_output_location(out, "--out", folder=True)
    refuse_replacing(out, "--out", [os.path.basename(path) for path in outputs.values()], overwrite, "split CSVs")


def frontal_rows(frame):
    laterality = laterality_column(frame)
    if laterality is None:
        raise UserError("--frontal_only needs the column 'Frontal/Lateral'")
    return frame[frame[laterality] == FRONTAL]


def images_found(frame, root, hint, drop):
    """(rows,) bool: whether each row's image is under ``root``. A missing one stops the run unless ``drop``."""
    if not os.path.isdir(root):
        raise UserError(f"--root {root}: not a folder")
    paths = frame["Path"].astype(str)
    exists = np.fromiter((os.path.isfile(os.path.join(root, p)) for p in tqdm(
        paths, desc="checking images", unit="image", disable=None, leave=False)), dtype=bool, count=len(paths))
    missing = int((~exists).sum())
    if not missing:
        return exists
    where = (f"under --root {root} (e.g. {', '.join(paths[~exists].iloc[:EXAMPLES_SHOWN])}"
             f"{', ...' if missing > EXAMPLES_SHOWN else ''})" + (f"; {hint}" if hint else ""))
    if missing == len(paths):
        raise UserError(f"none of the {missing} image(s) is {where}; check --root")
    if not drop:
        raise UserError(f"{missing} of {len(paths)} image(s) are not {where}; check --root, or pass "
                        "--drop_missing_images to leave them out")
    log.warning("left out %d of %d X-ray(s) whose image is not %s", missing, len(paths), where)
    return exists


def classify_rows(frame, conditions):
    """(frame with uncertain (-1) written as 1.0, positive mask, normal mask, notes for the user)."""
    labels = frame[conditions]
    positive = labels.isin(POSITIVE_VALUES).any(axis=1).to_numpy()
    normal = (frame[NO_FINDING] == POSITIVE).to_numpy() & ~positive
    notes = []
    both = int(((frame[NO_FINDING] == POSITIVE).to_numpy() & positive).sum())
    if both:
        notes.append(f"{both} X-ray(s) are marked 'No Finding' and positive for a condition; they count as "
                     "positive only")
    uncertain = int((labels == UNCERTAIN).to_numpy().sum())
    if uncertain:
        notes.append(f"{uncertain} uncertain (-1) condition label(s) count as positive and are written as 1.0")
    frame = frame.assign(**{c: labels[c].replace(UNCERTAIN, POSITIVE) for c in conditions})
    return frame, positive, normal, notes


def patient_ids(frame, column):
    """The patient of every row: from ``column``, or CheXpert's .../patientNNNNN/... in 'Path' when None."""
    if column is not None:
        if column not in frame.columns:
            raise UserError(f"--patient_column {column!r}: no such column; found "
                            f"{', '.join(repr(c) for c in frame.columns)}")
        values = frame[column]
        blank = values.isna() | (values.astype(str).str.strip() == "")
        if blank.any():
            raise UserError(f"column {column!r} row {blank.idxmax()} names no patient; every X-ray needs one (or "
                            "pass --no_patient)")
        return values.astype(str).to_numpy()
    found = frame["Path"].astype(str).str.extract(PATIENT_PATTERN, expand=False)
    if found.isna().any():
        row = found.isna().idxmax()  # the row's number in the file (rows that are not written are skipped)
        candidates = [c for c in frame.columns if re.sub(r"[^a-z]", "", str(c).lower()) in
                      ("patientid", "patient", "subjectid", "subject", "patientname")]
        hint = (f"name the patient column with --patient_column (e.g. {candidates[0]!r})" if candidates else
                "name a patient column with --patient_column NAME, or pass --no_patient")
        raise UserError(f"row {row}: cannot find the patient in Path {frame['Path'][row]!r} (CheXpert's "
                        f"'.../patientNNNNN/...'); {hint}, so that each patient stays in one split")
    return found.to_numpy()


def official_split(source, frame, split_column):
    """'train' / 'val' / 'test' per row of ``frame`` from the dataset's own split, or None to draw one."""
    if split_column is not None:
        if split_column not in frame.columns:
            raise UserError(f"--split_column {split_column!r}: no such column; found "
                            f"{', '.join(repr(c) for c in frame.columns)}")
        return normalised_split(frame[split_column], f"column {split_column!r}").to_numpy()
    if source.official_split is not None:
        return source.official_split.loc[frame.index].to_numpy()
    return None


def keep_official_split(split, patients, val_frac, seed, val_frac_given):
    """(the official split per row, notes); without a validation part, ``val_frac`` of its training patients
    become one."""
    split = np.asarray(split, dtype=object).copy()
    patients = patients if patients is not None else np.arange(len(split))
    notes = []
    if (split == "val").any():
        if val_frac_given:
            notes.append("--val_frac is not used: the official split has a validation part")
    else:
        training = split == "train"
        unique = pd.unique(patients[training])
        num_val = round(val_frac * len(unique))
        if not 1 <= num_val < len(unique):
            raise UserError(f"the official split has no validation part, and {len(unique)} training patient(s) "
                            f"cannot give one with --val_frac {val_frac}")
        chosen = unique[np.random.default_rng(seed).permutation(len(unique))[:num_val]]
        split[training & np.isin(patients, chosen)] = "val"
        notes.append(f"validation split: {num_val} of the official split's {len(unique)} training patients "
                     f"(--val_frac {val_frac:g}, --seed {seed})")
    for name in SPLITS:
        if not (split == name).any():
            raise UserError(f"the official split has no {name} rows (after the filters)")
    return split, notes


def patients_in_several_splits(patients, split_of_row):
    """How many patients have X-rays in more than one split (an official split need not keep them apart)."""
    if patients is None:
        return 0
    return int((pd.Series(split_of_row).groupby(pd.Series(patients)).nunique() > 1).sum())


def split_by_patient(patients, val_frac, test_frac, seed):
    """'train' / 'val' / 'test' for every row, assigning whole patients at random (``seed``)."""
    unique = pd.unique(patients)  # in order of first appearance, so the result does not depend on sorting
    order = np.random.default_rng(seed).permutation(len(unique))
    num_val, num_test = round(val_frac * len(unique)), round(test_frac * len(unique))
    if min(num_val, num_test, len(unique) - num_val - num_test) < 1:
        raise UserError(f"{len(unique)} patient(s) cannot be split into train, val and test with --val_frac "
                        f"{val_frac} and --test_frac {test_frac}")
    split_of_patient = np.empty(len(unique), dtype=object)
    split_of_patient[order[:num_test]] = "test"
    split_of_patient[order[num_test:num_test + num_val]] = "val"
    split_of_patient[order[num_test + num_val:]] = "train"
    index = pd.Index(unique).get_indexer(patients)
    return split_of_patient[index]


def count_table(frames, patients, split_of_row, conditions):
    """Counts per split: patients (when known), positive and normal X-rays, and positives per condition."""
    table = {}
    for split in SPLITS:
        positives = frames[f"{split}_pos"]
        column = {} if patients is None else {"patients": len(set(patients[split_of_row == split]))}
        column.update({"positive X-rays": len(positives), "normal X-rays": len(frames[f"{split}_norm"])})
        for condition in conditions:
            column[condition] = int((positives[condition] == POSITIVE).sum())
        table[split] = column
    counts = pd.DataFrame(table)
    counts.index.name = "count"
    return counts


def warn_small_conditions(counts, config):
    """Warn where a split has fewer positives (or normals) than one task of the configured shape needs."""
    shape = TaskShape.from_config(config)
    need = (f"one task needs {shape.positives_needed} positives and {shape.negatives_needed} normals (pool "
            f"{shape.pool_size}, query {shape.query_size})")
    for split in SPLITS:
        used = config["ALL_COND"] if split == "test" else config["NON_HOLD_OUT"]
        for condition in (c for c in used if c in counts.index):
            if counts.loc[condition, split] < shape.positives_needed:
                log.warning("%s: '%s' has %d positives; %s", split, condition, counts.loc[condition, split], need)
        if counts.loc["normal X-rays", split] < shape.negatives_needed:
            log.warning("%s: %d normal X-rays; %s", split, counts.loc["normal X-rays", split], need)


def usable_conditions(counts, conditions, hold_out_preference, shape):
    """(NON_HOLD_OUT, HOLD_OUT) of the conditions with enough positives for one task where they are used.

    A meta-training condition needs them in train, val and test; a held-out one (those of
    ``hold_out_preference``) in test only. If only held-out ones qualify, they are meta-trained on instead.
    """
    enough = {c: {s: counts.loc[c, s] >= shape.positives_needed for s in SPLITS} for c in conditions}
    seen = [c for c in conditions if all(enough[c].values())]
    hold_out = [c for c in conditions if c in hold_out_preference and enough[c]["test"]]
    non_hold_out = [c for c in seen if c not in hold_out]
    if not non_hold_out:
        non_hold_out = [c for c in hold_out if c in seen]
        hold_out = [c for c in hold_out if c not in non_hold_out]
    return non_hold_out, hold_out


def print_settings(settings, non_hold_out, hold_out, shape):
    need = (f"{shape.positives_needed} positives for one task (pool {shape.pool_size} with {shape.pool_positives} "
            f"positive, query {shape.query_size} with {shape.query_positives} positive)")
    if settings is None:
        log.warning("no condition has %s in train, val and test: use more data, or a smaller task with --set "
                    "UNLABELED_POOL_SIZE=... --set QUERY_SET_SIZE=...", need)
        return
    print(f"\nconditions with {need} in every split that uses them:\n"
          f"  meta-training (NON_HOLD_OUT; train, val, test): {', '.join(non_hold_out)}\n"
          f"  held out (HOLD_OUT; test): {', '.join(hold_out) or '(none)'}\n"
          f"give run_selector.py (evaluate.py reads them from its checkpoint; saved in prepare_data.json):\n"
          f"  {settings}")


if __name__ == "__main__":
    run_cli(main)
