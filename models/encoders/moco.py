"""--encoder moco (the default): the query encoder of a MoCo-CXR checkpoint, as the paper used.

The checkpoint is read by models/moco_encoder.py; the preprocessing is
data/images.py's MoCo pipeline (320 x 320, CheXpert mean and std), with PIL or
torchvision decoding (--decoder).
"""
import os

from data.images import moco_pipeline
from models.encoders import Encoder
from models.moco_encoder import load_moco_encoder


def load(checkpoint_path, arch=None, decoder="pil", device=None):
    encoder = load_moco_encoder(checkpoint_path, arch)
    queue = f", queue {encoder.queue_length}" if encoder.queue_length else ""
    name = os.path.basename(checkpoint_path)
    return Encoder(
        name="moco", model_name=encoder.arch, model=encoder.model, dim=encoder.dim,
        pipeline=moco_pipeline(decoder, device), weights=name, weights_file=checkpoint_path,
        summary=f"MoCo-CXR {encoder.arch} ({encoder.head} head{queue})",
        # The attributes files had before other encoders existed, kept for the scripts that read them.
        attrs={"checkpoint_file": name, "arch": encoder.arch, "head_removed": encoder.head},
        hash_attrs=("weights_sha256", "checkpoint_sha256"))
