"""Write a SYNTHETIC CheXpert-like image folder and a random-weight MoCo-CXR-layout checkpoint for the demo.

NOT real chest X-rays and NOT a trained encoder: grey-scale pictures with a
crude chest shape, where each condition adds a bright or dark patch at its own
place, and a ResNet with random weights (its batch-norm statistics taken from
the images). They exercise the real pipeline (prepare_data.py -> xray_to_hdf5.py
-> run_selector.py -> evaluate.py) end to end without CheXpert or the MoCo-CXR
weights, which cannot ship with this repository.

So that a learned selection has something to learn, a structure is PLANTED (see
POOR_ACQUISITION_NOTE): a share of the studies come from a poor acquisition
source whose pictures carry a bright border and a burned-in marker and do not
show their findings. The CSV's extra column 'Synthetic Acquisition' names them;
no MedSelect command reads it.

    OUT/CheXpert-v1.0-small/train.csv          CheXpert's columns; Path relative to OUT
    OUT/CheXpert-v1.0-small/train/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg
    OUT/moco_random_resnet18.pth.tar          (--checkpoint) the MoCo layout: encoder_q, encoder_k, queue

The images are drawn by data/synthetic_images.py, the weights by models/random_weights.py.
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.synthetic import ACQUISITION_COLUMN, POOR  # noqa: E402
from data.synthetic_images import (IMAGE_SIZES, POOR_ACQUISITION_NOTE, POOR_FRACTION, SYNTHETIC_NOTE,  # noqa: E402
                                   write_chexpert_like_folder)
from models.random_weights import calibrate_batch_norm, moco_checkpoint  # noqa: E402
from utils.help_format import DefaultsHelpFormatter  # noqa: E402

CALIBRATION_IMAGES = 64  # images whose statistics become the random encoder's batch-norm statistics


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--out", default="demo_data/chexpert", help="output folder (CheXpert-v1.0-small/ goes inside)")
    parser.add_argument("--patients", type=int, default=200, help="synthetic patients (1-2 studies, 1-2 views each)")
    parser.add_argument("--checkpoint", default=None,
                        help="where to write the random MoCo checkpoint; default: OUT/moco_random_resnet18.pth.tar")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images, labels and weights")
    parser.add_argument("--poor_fraction", type=float, default=POOR_FRACTION,
                        help="share of studies from the planted poor acquisition source (0 to 1; 0: none)")
    parser.add_argument("--image_size", default=None, metavar="WxH",
                        help="give every image this size (e.g. 320x390, CheXpert-small's usual shape); "
                             f"default: several sizes {IMAGE_SIZES}")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    sizes = IMAGE_SIZES
    if args.image_size:
        try:
            sizes = [tuple(int(n) for n in args.image_size.lower().split("x"))]
        except ValueError:
            sizes = [()]
        if len(sizes[0]) != 2 or min(sizes[0]) < 1:
            raise SystemExit(f"error: --image_size {args.image_size}: expected WIDTHxHEIGHT, e.g. 320x390")
    if not 0 <= args.poor_fraction <= 1:
        raise SystemExit(f"error: --poor_fraction {args.poor_fraction}: expected a number from 0 to 1")
    csv_path = write_chexpert_like_folder(args.out, args.patients, args.seed, sizes, args.poor_fraction)
    checkpoint = args.checkpoint or os.path.join(args.out, "moco_random_resnet18.pth.tar")
    frame = pd.read_csv(csv_path)
    moco = moco_checkpoint("resnet18", "mlp", queue_length=16384, seed=args.seed, share_momentum_encoder=True)
    calibration = np.random.default_rng(args.seed).choice(len(frame), min(len(frame), CALIBRATION_IMAGES),
                                                           replace=False)
    calibrate_batch_norm(moco, [os.path.join(args.out, frame["Path"].iloc[i]) for i in sorted(calibration)])
    torch.save(moco, checkpoint)
    print(f"{SYNTHETIC_NOTE}\nwrote {len(frame)} images and {csv_path}; random MoCo checkpoint {checkpoint}")
    if args.poor_fraction:
        print(f"{POOR_ACQUISITION_NOTE}: here {(frame[ACQUISITION_COLUMN] == POOR).sum()} of {len(frame)} images.")


if __name__ == "__main__":
    main()
