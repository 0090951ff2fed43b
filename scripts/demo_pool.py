"""Stand-ins for a user of the SYNTHETIC demo: a pool of "my X-rays", and a radiologist who labels the chosen ones.

    python3 scripts/demo_pool.py pool --splits demo_data/splits --size 100 --out demo_data/my_xrays.csv
    python3 scripts/demo_pool.py label --to_label to_label.csv --label_column Edema --out labeled.csv

pool:  a random sample of the test split's X-rays (positives and normals, never seen in
       meta-training), with all their columns; embed it with xray_to_hdf5.py, then choose from it
       with select_xrays.py.
label: the synthetic ground truth plays the radiologist: the label column of the chosen rows becomes
       1 (CheXpert's 1 or -1, uncertain counts as positive) or 0, as classify_xrays.py expects.
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.labels import POSITIVE_VALUES  # noqa: E402
from utils.atomic import atomic_write_text  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pool = commands.add_parser("pool", help="sample the pool CSV from the test split")
    pool.add_argument("--splits", required=True, help="folder of prepare_data.py's split CSVs (test_pos, test_norm)")
    pool.add_argument("--size", type=int, default=100, help="X-rays in the pool (default: 100)")
    pool.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    pool.add_argument("--out", required=True, help="pool CSV to write (replaced if it exists)")
    label = commands.add_parser("label", help="fill in the chosen X-rays' labels from the synthetic truth")
    label.add_argument("--to_label", required=True, help="select_xrays.py's output (the pool's columns, with truth)")
    label.add_argument("--label_column", required=True, help="the finding to label, e.g. Edema")
    label.add_argument("--out", required=True, help="labelled CSV to write, for classify_xrays.py --labeled")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.command == "pool":
        frame = pd.concat([pd.read_csv(os.path.join(args.splits, f"test_{kind}.csv")) for kind in ("pos", "norm")],
                          ignore_index=True)
        if not 1 <= args.size <= len(frame):
            raise UserError(f"--size {args.size}: the test split of {args.splits} has {len(frame)} X-rays")
        rows = np.sort(np.random.default_rng(args.seed).choice(len(frame), args.size, replace=False))
        atomic_write_text(frame.iloc[rows].to_csv(index=False), args.out)
        print(f"wrote a pool of {args.size} test-split X-rays to {args.out}")
    else:
        frame = pd.read_csv(args.to_label)
        if args.label_column not in frame.columns:
            raise UserError(f"{args.to_label}: no column '{args.label_column}' holding the synthetic truth")
        frame[args.label_column] = frame[args.label_column].isin(POSITIVE_VALUES).astype(int)
        atomic_write_text(frame.to_csv(index=False), args.out)
        print(f"labelled {len(frame)} X-rays for {args.label_column} from the synthetic truth "
              f"({frame[args.label_column].sum()} positive): {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
