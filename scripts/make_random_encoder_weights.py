"""Write RANDOM-weight files for the torchxrayvision and timm encoders, to try them without downloading.

NOT trained weights: the embeddings are meaningless, but xray_to_hdf5.py runs
exactly as with the real files (same architecture, same preprocessing, same
speed), e.g. on the demo images. Needs: pip install -r requirements-encoders.txt

    python3 scripts/make_random_encoder_weights.py --torchxrayvision_dir demo_data/xrv_weights \
        --timm_model vit_small_patch16_224 --timm_file demo_data/timm_random.pth

torchxrayvision's files go where its loader looks for them (--weights_dir), under
the names it downloads them as: its DenseNets are pickled whole models, its
ResNet a state dict. timm's file is the model's state dict with its head.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.encoders.trained_labels import TORCHXRAYVISION_WEIGHTS  # noqa: E402
from models.random_weights import write_timm_weights, write_torchxrayvision_weights  # noqa: E402
from utils.errors import run_cli  # noqa: E402

DEFAULT_TORCHXRAYVISION = ("densenet121-res224-all", "resnet50-res512-all")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torchxrayvision_dir", default=None, help="folder for torchxrayvision's files")
    parser.add_argument("--torchxrayvision_weights", nargs="+", default=list(DEFAULT_TORCHXRAYVISION),
                        choices=sorted(TORCHXRAYVISION_WEIGHTS), help="which ones (default: %(default)s)")
    parser.add_argument("--timm_model", default=None, help="timm model name, e.g. vit_small_patch16_224")
    parser.add_argument("--timm_file", default=None, help="file for the timm state dict")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights (default 0)")
    return parser


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if (args.timm_model is None) != (args.timm_file is None):
        parser.error("--timm_model and --timm_file go together")
    if args.torchxrayvision_dir:
        os.makedirs(args.torchxrayvision_dir, exist_ok=True)
        for name in args.torchxrayvision_weights:
            path = write_torchxrayvision_weights(args.torchxrayvision_dir, name, args.seed)
            print(f"RANDOM torchxrayvision {name}: {path}")
    if args.timm_model:
        print(f"RANDOM timm {args.timm_model}: {write_timm_weights(args.timm_file, args.timm_model, args.seed)}")


if __name__ == "__main__":
    run_cli(main)
