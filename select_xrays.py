"""Choose which of your own X-rays a radiologist should label (MedSelect, or a baseline for comparison).

    python3 select_xrays.py --checkpoint CKPT --pool_csv my_xrays.csv -k 20 --out to_label.csv

The pool's embeddings are read from the HDF5 beside the CSV (my_xrays.hdf5, made
by xray_to_hdf5.py). to_label.csv gets the K chosen rows with all their columns,
plus the selector's score and rank, best first.
"""
import argparse
import logging

from medselect.output import write_csv
from medselect.selection import (DEFAULT_LARGE_POOL, DEFAULT_SELECTION, LARGE_POOL_STRATEGIES, MEDSELECT, METHODS,
                                 SELECTIONS, select)
from models.blocked_baselines import CLARA_SAMPLE_SIZE, CLARA_SAMPLES, FACILITY_CLIENTS_MAX, KMEDOIDS_EXACT_MAX
from models.pool_blocks import DENSE_POOL_MAX
from utils.errors import UserError, run_cli
from utils.help_format import DefaultsHelpFormatter
from utils.logs import LOGGER_NAME, setup_logging
from utils.memory import parse_size
from utils.output_location import check_output_file

log = logging.getLogger(LOGGER_NAME)

BASELINE_ALGORITHMS = f"""label-free baselines (--method) and the algorithm each uses at each pool size:
  pools up to {DENSE_POOL_MAX:,} X-rays: the papers' algorithms on full pool x pool matrices (evaluate.py's code).
  larger pools, one pool at a time from blocks of distances, never a pool x pool matrix (memory grows
  with the pool, not its square; the same algorithms, so the same picks up to rounding, except the
  samples named below):
    typiclust          K-means, then typicality from each cluster's nearest neighbours, block by block
    probcover          radius from blocked nearest other-cluster distances; greedy coverage with ball
                       counts updated block by block
    coreset            k-center greedy, distances to each pick a block of rows at a time
    facility-location  greedy by lazy evaluation (only candidates that can still win are recomputed);
                       above {FACILITY_CLIENTS_MAX:,} X-rays every X-ray is a candidate but the objective sums
                       over a random sample of {FACILITY_CLIENTS_MAX:,} (exact greedy costs P^2: hours at 300,000)
    kmeans-nearest     K-means (never needs a pool x pool matrix), the X-ray nearest each centroid
    kmedoids           the paper's k-medoids++ and alternating updates from blocks up to {KMEDOIDS_EXACT_MAX:,} X-rays
                       (exact, but each update sums distances within clusters: slow beyond); above,
                       CLARA around it: the same algorithm on {CLARA_SAMPLES} random samples of
                       {CLARA_SAMPLE_SIZE:,}, the medoids with the least total distance over the pool
    kmedoids-fasterpam FasterPAM needs the whole matrix: above {DENSE_POOL_MAX:,}, FasterCLARA (FasterPAM on {CLARA_SAMPLES}
                       samples of {CLARA_SAMPLE_SIZE:,}, kept as for kmedoids)
  Before starting, the peak memory is estimated from the pool size; above the available memory (or
  --max_memory) the run stops with one line naming a --subsample that fits and lighter methods.
  Measured times and memory: docs/performance.md; details: docs/own_xrays.md."""


class HelpFormatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each default stated once (utils/help_format.py), and the epilog's table as written."""


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Choose the K X-rays of a pool that a radiologist should label first.",
        epilog=BASELINE_ALGORITHMS, formatter_class=HelpFormatter)
    parser.add_argument("--pool_csv", required=True,
                        help="CSV of unlabeled X-rays (column Path); embeddings in the .hdf5 of the same name "
                             "beside it")
    parser.add_argument("--out", required=True, help="CSV to write: the chosen rows, best first")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out (refused without it: it may hold labels already entered)")
    parser.add_argument("--checkpoint", default=None,
                        help="selector checkpoint of run_selector.py (or the original code); required for "
                             "--method medselect")
    parser.add_argument("-k", "--k", type=int, default=None,
                        help="X-rays to choose; default: the K the checkpoint was trained with (constants.py's K "
                             "without a checkpoint)")
    parser.add_argument("--method", choices=METHODS, default=MEDSELECT,
                        help="medselect (the trained selector) or a label-free baseline")
    parser.add_argument("--selection", choices=SELECTIONS, default=None,
                        help="sample: K distinct X-rays drawn from the selector's softmax with --seed (what "
                             "training optimises; docs/evaluation.md compares the modes); topk: the K highest selector "
                             "scores (medselect only). Default: the mode whose meta-validation AUROC minus random was "
                             f"higher for this checkpoint (recorded by run_selector.py), else {DEFAULT_SELECTION}")
    parser.add_argument("--exclude", default=None, metavar="CSV",
                        help="CSV of X-rays already labelled (matched on Path), never chosen again")
    parser.add_argument("--large_pool", choices=LARGE_POOL_STRATEGIES, default=DEFAULT_LARGE_POOL,
                        help="pool larger than the selector's training pool: chunks of the trained size with "
                             "proportional picks, or one sequence over the whole pool (docs/own_xrays.md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="change a value of the checkpoint's configuration (constants.py's for the original's "
                             "checkpoints, which record none), e.g. --set USE_ASL=True for an original checkpoint "
                             "trained with Age/Sex/Laterality (repeatable)")
    parser.add_argument("--subsample", type=int, default=None, metavar="N",
                        help="choose among N X-rays drawn at random (with --seed) from the pool, after --exclude; "
                             "for a pool too large for a method's memory")
    parser.add_argument("--max_memory", default=None, metavar="SIZE",
                        help="memory a baseline may use, e.g. 8G or 500M; default: the machine's available memory. "
                             "A method estimated to need more stops before starting, with one line saying what fits")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the pool's reading order, of --selection sample and of the baselines")
    return parser


# The options that shape the trained selector's choice: meaningless with a label-free --method.
SELECTOR_ONLY = ("selection", "large_pool")


def main(argv=None):
    parser = get_args_parser()
    parser.set_defaults(**dict.fromkeys(SELECTOR_ONLY))  # None: not given (the documented defaults apply)
    args = parser.parse_args(argv)
    given = [name for name in SELECTOR_ONLY if getattr(args, name) is not None]
    if args.method != MEDSELECT and given:
        raise UserError(f"--{given[0]} applies to --method {MEDSELECT} only (the trained selector's choice); "
                        f"--method {args.method} does not use it: leave it out")
    args.large_pool = args.large_pool or DEFAULT_LARGE_POOL  # selection None: select() picks the checkpoint's mode
    setup_logging()
    check_output_file(args.out, "--out", {"--pool_csv": ("pool", args.pool_csv), "--exclude": ("exclude", args.exclude),
                                          "--checkpoint": ("checkpoint", args.checkpoint)}, overwrite=args.overwrite)
    chosen = select(args.pool_csv, checkpoint=args.checkpoint, k=args.k, method=args.method,
                    selection=args.selection, seed=args.seed, exclude=args.exclude, large_pool=args.large_pool,
                    overrides=args.overrides, subsample=args.subsample,
                    max_memory=None if args.max_memory is None else parse_size(args.max_memory))
    write_csv(chosen, args.out)
    log.info("wrote the %d X-rays to label (%s) to %s", len(chosen), args.method, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
