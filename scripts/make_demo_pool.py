"""Make a demo pool of "your own X-rays": one CSV + HDF5 drawn from a positive and a normal CSV/HDF5 pair.

    python3 scripts/make_demo_pool.py --pos_csv demo_data/test_pos.csv --norm_csv demo_data/test_norm.csv \
                                      --out demo_data/my_xrays.csv --size 1000

Rows are drawn without replacement from both files (in proportion to their sizes)
and shuffled; each keeps its columns, so the synthetic truth (e.g. Edema) is
there to stand in for the radiologist and to check the predictions. The
embeddings are copied row for row into the HDF5 beside --out. For the demo only.
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.csv_hdf5 import embedding_shape, hdf5_path_for, read_csv, read_embeddings_into  # noqa: E402
from data.synthetic import write_pair  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description="Make one demo pool CSV + HDF5 from a positive and a normal pair.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pos_csv", required=True, help="positive CSV (HDF5 beside it)")
    parser.add_argument("--norm_csv", required=True, help="normal CSV (HDF5 beside it)")
    parser.add_argument("--out", required=True, help="pool CSV to write; its HDF5 goes beside it")
    parser.add_argument("--size", type=int, default=1000, help="X-rays in the pool")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw and the shuffle")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    frames, embeddings = [], []
    for csv_path in (args.pos_csv, args.norm_csv):
        frame = read_csv(csv_path)
        table = np.empty((len(frame), embedding_shape(hdf5_path_for(csv_path))[1]), dtype=np.float32)
        read_embeddings_into(hdf5_path_for(csv_path), table, len(frame), csv_path)
        frames.append(frame)
        embeddings.append(table)
    frame, table = pd.concat(frames, ignore_index=True), np.concatenate(embeddings)
    if not 1 <= args.size <= len(frame):
        raise UserError(f"--size must be between 1 and {len(frame)} (the rows of both CSVs), got {args.size}")
    rows = np.random.default_rng(args.seed).choice(len(frame), args.size, replace=False)  # drawn and shuffled
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_pair(frame.iloc[rows].reset_index(drop=True), table[rows], args.out)
    print(f"wrote a pool of {args.size} X-rays to {args.out} and {hdf5_path_for(args.out)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
