"""Classify the rest of a pool from the X-rays a radiologist labelled (MedSelect's cosine classifier by default).

    python3 classify_xrays.py --labeled labeled.csv --label_column Edema --unlabeled my_xrays.csv --out predictions.csv

labeled.csv holds Path and a 0/1 column (to_label.csv of select_xrays.py, with
the radiologist's labels filled in). predictions.csv gets every other X-ray of
the pool with all its columns plus 'score' (higher = more likely positive);
predictions.csv.json beside it records the classifier and the inputs.
--classifier picks another classifier (docs/own_xrays.md#which-classifier).
With --ground_truth, the AUROC of the scores and a bootstrap CI are reported.
"""
import argparse
import logging
import os

from medselect.classification import BOOTSTRAP_RESAMPLES, classify, ground_truth_auroc
from medselect.output import sidecar_path, write_csv, write_sidecar
from models.classifiers import CLASSIFIERS, DEFAULT_CLASSIFIER
from utils.errors import UserError, run_cli
from utils.help_format import DefaultsHelpFormatter
from utils.logs import LOGGER_NAME, setup_logging
from utils.output_location import check_output_file

log = logging.getLogger(LOGGER_NAME)


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Score every unlabelled X-ray of a pool with the classifier built from the labelled ones.",
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--labeled", required=True,
                        help="CSV of labelled X-rays: Path (as in the pool) and --label_column with 1 or 0")
    parser.add_argument("--label_column", required=True, help="the labelled finding, e.g. Edema")
    parser.add_argument("--unlabeled", required=True,
                        help="the pool CSV (column Path); embeddings in the .hdf5 of the same name beside it")
    parser.add_argument("--out", required=True,
                        help="CSV to write: the pool's unlabelled rows with a 'score' column")
    parser.add_argument("--classifier", choices=CLASSIFIERS, default=DEFAULT_CLASSIFIER,
                        help="cosine: the paper's (mean cosine similarity to the labelled positives minus to the "
                             "negatives); logistic: logistic regression on the labelled X-rays; label-spreading and "
                             "self-training also use the pool's unlabelled X-rays (docs/own_xrays.md#which-classifier)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (refused without it)")
    parser.add_argument("--ground_truth", default=None, metavar="CSV",
                        help="CSV with Path and --label_column as ground truth (1 or -1 positive, 0 or blank "
                             "negative; may be the pool CSV): report the AUROC with a bootstrap CI")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_RESAMPLES,
                        help="bootstrap resamples for the AUROC's 95%% CI")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    setup_logging()
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    check_output_file(args.out, "--out", {"--labeled": ("labeled", args.labeled),
                                          "--unlabeled": ("unlabeled", args.unlabeled),
                                          "--ground_truth": ("ground truth", args.ground_truth)},
                      overwrite=args.overwrite)
    check_output_file(sidecar_path(args.out), "--out", overwrite=args.overwrite, kind="a CSV file name")
    predictions = classify(args.labeled, args.label_column, args.unlabeled, classifier=args.classifier)
    estimate = None
    if args.ground_truth is not None:
        estimate = ground_truth_auroc(predictions, args.ground_truth, args.label_column,
                                      resamples=args.bootstrap, seed=args.seed)
    write_csv(predictions, args.out)
    write_sidecar({"classifier": args.classifier, "labeled": os.path.abspath(args.labeled),
                   "label_column": args.label_column, "unlabeled": os.path.abspath(args.unlabeled),
                   "num_scored": len(predictions), "ground_truth_auroc": vars(estimate) if estimate else None},
                  args.out)
    log.info("wrote %d X-rays scored by the %s classifier to %s (and %s)", len(predictions), args.classifier,
             args.out, sidecar_path(args.out))
    if estimate is not None:
        print(f"{args.label_column}: {estimate}")
    return 0


if __name__ == "__main__":
    run_cli(main)
