"""Write a small SYNTHETIC dataset (not real X-rays) in MedSelect's CSV/HDF5 layout for the demo."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.synthetic import SYNTHETIC_NOTE, write_synthetic_dataset  # noqa: E402
from utils.help_format import DefaultsHelpFormatter  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--out", default="demo_data", help="output folder")
    parser.add_argument("--positives", type=int, default=2000, help="positive X-rays per split")
    parser.add_argument("--normals", type=int, default=1200, help="normal X-rays per split")
    parser.add_argument("--dim", type=int, default=512, help="embedding size")
    parser.add_argument("--noise", type=float, default=2.0, help="noise per dimension (larger = harder tasks)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    paths = write_synthetic_dataset(args.out, args.positives, args.normals, args.dim, args.seed, args.noise)
    print(f"{SYNTHETIC_NOTE}\nwrote {len(paths)} CSV/HDF5 pairs to {args.out}/")


if __name__ == "__main__":
    main()
