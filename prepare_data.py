"""Make the split CSVs run_selector.py reads from CheXpert's train.csv (SPEC §3).

    python3 prepare_data.py --train_csv CheXpert-v1.0-small/train.csv --out data/medselect

writes {train,val,test}_{pos,norm}.csv into --out, split by patient (no patient
in two splits). Positive: at least one of the eight conditions (constants.ALL_COND)
is 1 or -1; uncertain (-1) counts as positive and is written as 1.0. Normal:
'No Finding' is 1. Every CheXpert column is kept. A table of counts per condition
and split is printed and saved as counts.csv, with a warning for any condition
that has fewer positives than one task needs.
"""
import argparse
import logging
import os
import re

import numpy as np
import pandas as pd

from data.asl import LATERALITY_COLUMNS
from data.csv_hdf5 import hdf5_path_for, read_csv
from data.labels import LABEL_VALUES, POSITIVE, POSITIVE_VALUES, UNCERTAIN
from data.tasks import TaskShape
from utils.atomic import atomic_write_json, atomic_write_text
from utils.config import apply_overrides, default_config
from utils.errors import UserError, run_cli
from utils.logs import setup_logging

SPLITS = ("train", "val", "test")
KINDS = ("pos", "norm")
NO_FINDING = "No Finding"
PATIENT_PATTERN = re.compile(r"(patient\d+)")  # CheXpert paths: .../train/patient00001/study1/view1_frontal.jpg

log = logging.getLogger("medselect")


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Split CheXpert's train.csv by patient into the positive and normal CSVs of each split "
                    "(train, val, test) that xray_to_hdf5.py and run_selector.py read.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--train_csv", required=True, help="CheXpert's train.csv (Path relative to the folder "
                                                          "holding CheXpert-v1.0-small/)")
    parser.add_argument("--valid_csv", default=None,
                        help="CheXpert's valid.csv, added to train.csv's rows before the split (its patients are "
                             "different ones)")
    parser.add_argument("--out", required=True, help="output folder for the split CSVs (created if missing)")
    parser.add_argument("--val_frac", type=float, default=0.1, help="fraction of patients in the validation split")
    parser.add_argument("--test_frac", type=float, default=0.1, help="fraction of patients in the test split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random assignment of patients to splits")
    parser.add_argument("--frontal_only", action="store_true", help="keep only frontal views (Frontal/Lateral)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="constants.py values for the per-task size check, as given to run_selector.py "
                             "(e.g. --set UNLABELED_POOL_SIZE=200); repeatable")
    parser.add_argument("--overwrite", action="store_true", help="replace split CSVs already in --out")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    setup_logging()
    config = apply_overrides(default_config(), args.overrides)
    conditions = config["ALL_COND"]
    if not (0 < args.val_frac < 1 and 0 < args.test_frac < 1 and args.val_frac + args.test_frac < 1):
        raise UserError(f"--val_frac {args.val_frac} and --test_frac {args.test_frac}: each must be above 0 and "
                        "together below 1, leaving patients for training")
    outputs = {f"{split}_{kind}": os.path.join(args.out, f"{split}_{kind}.csv") for split in SPLITS for kind in KINDS}
    existing = [path for path in outputs.values() if os.path.exists(path)]
    if existing and not args.overwrite:
        raise UserError(f"--out {args.out}: already holds split CSVs ({os.path.basename(existing[0])}, ...); pass "
                        "--overwrite to replace them")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out}: exists and is not a folder")

    frame = read_chexpert([args.train_csv] + ([args.valid_csv] if args.valid_csv else []), conditions,
                          args.frontal_only)
    positive, normal, notes = classify_rows(frame, conditions)
    split_of_row = split_by_patient(patient_ids(frame), args.val_frac, args.test_frac, args.seed)
    frames = {}
    for split in SPLITS:
        in_split = split_of_row == split
        frames[f"{split}_pos"] = frame[positive & in_split]
        frames[f"{split}_norm"] = frame[normal & in_split]
        for kind in KINDS:
            if len(frames[f"{split}_{kind}"]) == 0:
                raise UserError(f"no {'positive' if kind == 'pos' else 'normal'} X-rays left in the {split} split "
                                f"({int(in_split.sum())} rows); use more data or larger fractions")

    for note in notes:
        log.info("%s", note)
    os.makedirs(args.out, exist_ok=True)
    for name, path in outputs.items():
        atomic_write_text(frames[name].to_csv(index=False), path)
    counts = count_table(frames, frame, split_of_row, conditions)
    atomic_write_text(counts.to_csv(), os.path.join(args.out, "counts.csv"))
    atomic_write_json({"train_csv": os.path.abspath(args.train_csv),
                       "valid_csv": os.path.abspath(args.valid_csv) if args.valid_csv else None,
                       "val_frac": args.val_frac, "test_frac": args.test_frac, "seed": args.seed,
                       "frontal_only": args.frontal_only, "conditions": conditions},
                      os.path.join(args.out, "prepare_data.json"))
    print(counts.to_string())
    warn_small_conditions(counts, config)
    stale = [hdf5_path_for(p) for p in outputs.values() if os.path.exists(hdf5_path_for(p))]
    if stale:
        log.warning("%d HDF5 file(s) in %s were made from the previous CSVs (e.g. %s): remake them with "
                    "xray_to_hdf5.py --overwrite", len(stale), args.out, os.path.basename(stale[0]))
    log.info("wrote %s to %s (counts in counts.csv)", ", ".join(f"{n}.csv" for n in outputs), args.out)
    return 0


def read_chexpert(csv_paths, conditions, frontal_only):
    """The rows of CheXpert-style CSVs, validated; condition values checked to be 1, 0, -1 or blank."""
    frames = []
    for csv_path in csv_paths:
        frame = read_csv(csv_path, required_columns=["Path", NO_FINDING, *conditions])
        for column in [NO_FINDING, *conditions]:
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column].notna() & ~values.isin(LABEL_VALUES)
            if bad.any():
                row = int(np.argmax(bad.to_numpy()))
                raise UserError(f"{csv_path}: column {column!r} row {row} is {frame[column].iloc[row]!r}; expected "
                                "1, 0, -1 (uncertain) or blank")
            frame[column] = values
        if frontal_only:
            laterality = next((c for c in LATERALITY_COLUMNS if c in frame.columns), None)
            if laterality is None:
                raise UserError(f"{csv_path}: --frontal_only needs the column 'Frontal/Lateral'")
            frame = frame[frame[laterality] == "Frontal"]
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if len(frame) == 0:
        raise UserError(f"no rows left in {', '.join(csv_paths)}{' after --frontal_only' if frontal_only else ''}")
    return frame


def classify_rows(frame, conditions):
    """(positive mask, normal mask, notes for the user); writes uncertain (-1) as 1.0 in ``frame``, in place."""
    labels = frame[conditions]
    positive = labels.isin(POSITIVE_VALUES).any(axis=1).to_numpy()
    normal = (frame[NO_FINDING] == 1.0).to_numpy() & ~positive
    notes = []
    both = int(((frame[NO_FINDING] == 1.0).to_numpy() & positive).sum())
    if both:
        notes.append(f"{both} X-ray(s) are marked 'No Finding' and positive for a condition; they count as "
                     "positive only")
    uncertain = int((labels == UNCERTAIN).to_numpy().sum())
    if uncertain:
        notes.append(f"{uncertain} uncertain (-1) condition label(s) count as positive and are written as 1.0")
    frame[conditions] = labels.replace(UNCERTAIN, POSITIVE)
    return positive, normal, notes


def patient_ids(frame):
    """The patient of every row, read from 'Path' (CheXpert's .../patientNNNNN/...)."""
    found = frame["Path"].astype(str).str.extract(PATIENT_PATTERN, expand=False)
    if found.isna().any():
        row = int(np.argmax(found.isna().to_numpy()))
        raise UserError(f"row {row}: cannot find the patient in Path {frame['Path'].iloc[row]!r} (expected "
                        "CheXpert's '.../patientNNNNN/...'); the split must keep each patient in one split")
    return found.to_numpy()


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


def count_table(frames, frame, split_of_row, conditions):
    """Counts per split: patients, positive and normal X-rays, and positives per condition."""
    patients = patient_ids(frame)
    table = {}
    for split in SPLITS:
        positives = frames[f"{split}_pos"]
        column = {"patients": len(set(patients[split_of_row == split])), "positive X-rays": len(positives),
                  "normal X-rays": len(frames[f"{split}_norm"])}
        for condition in conditions:
            column[condition] = int((positives[condition] == 1.0).sum())
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
        for condition in used:
            if counts.loc[condition, split] < shape.positives_needed:
                log.warning("%s: '%s' has %d positives; %s", split, condition, counts.loc[condition, split], need)
        if counts.loc["normal X-rays", split] < shape.negatives_needed:
            log.warning("%s: %d normal X-rays; %s", split, counts.loc["normal X-rays", split], need)


if __name__ == "__main__":
    run_cli(main)
