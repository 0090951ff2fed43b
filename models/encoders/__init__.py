"""The image encoders xray_to_hdf5.py can embed X-rays with, behind one small interface.

An ``Encoder`` is the module that maps a preprocessed batch to (B, D)
embeddings, the ``ImagePipeline`` (data/images.py) that preprocesses image
files for it, and what to record about it in the HDF5 file. Everything else
is shared by all encoders: the resumable writer (data/embedding_writer.py),
torchrun sharding (utils/distributed.py), and the CSV, --check and progress
bars (xray_to_hdf5.py).

* ``moco``: a MoCo-CXR checkpoint (the paper's encoder; the default), moco.py
* ``torchxrayvision``: torchxrayvision's DenseNet-121 and ResNet-50 weights, xrv.py
* ``timm``: any timm backbone from a weights file or the Hugging Face hub, timm_backbone.py

torchxrayvision and timm are optional: they are imported only when chosen,
and a missing one is named with the command that installs it.
"""
import importlib
from dataclasses import dataclass, field

from torch import nn

from data.images import ImagePipeline
from utils.errors import UserError

ENCODERS = ("moco", "torchxrayvision", "timm")
DEFAULT_ENCODER = "moco"
# Optional libraries: import name -> pinned requirement, as in requirements-encoders.txt.
OPTIONAL_LIBRARIES = {"torchxrayvision": "torchxrayvision==1.5.7", "timm": "timm==1.0.31"}


@dataclass
class Encoder:
    """A loaded encoder: the network, its preprocessing, and its provenance."""
    name: str               # one of ENCODERS (--encoder)
    model_name: str         # the architecture, e.g. resnet18, densenet121, vit_small_patch16_224
    model: nn.Module        # eval mode: pipeline.model_input(batch) (B, C, H, W) float32 -> (B, dim)
    dim: int                # embedding size D
    pipeline: ImagePipeline
    weights: str            # what the weights are called: a file name, torchxrayvision's name, a hub id
    weights_file: str | None  # the local file holding them, hashed into the HDF5 (None: nothing local to hash)
    summary: str            # one phrase for the log, e.g. "MoCo-CXR resnet18 (mlp head, queue 65536)"
    attrs: dict = field(default_factory=dict)  # encoder-specific HDF5 attributes
    hash_attrs: tuple = ("weights_sha256",)  # the attributes that receive the SHA-256 of weights_file


def load_encoder(name, *, checkpoint_path=None, arch=None, decoder="pil", weights=None, weights_dir=None,
                 model_name=None, device=None):
    """Build the encoder ``name`` from the options that concern it (xray_to_hdf5.py refuses the others)."""
    if name == "moco":
        from models.encoders import moco
        return moco.load(checkpoint_path, arch, decoder, device)
    if name == "torchxrayvision":
        from models.encoders import xrv
        return xrv.load(weights, weights_dir)
    if name == "timm":
        from models.encoders import timm_backbone
        return timm_backbone.load(model_name, weights)
    raise UserError(f"--encoder {name}: unknown encoder; choose one of {', '.join(ENCODERS)}")


def import_optional(library):
    """Import an optional library, or stop with one line giving the command that installs it."""
    try:
        return importlib.import_module(library)
    except ImportError:
        raise UserError(f"--encoder {library} needs the {library} package, which is not installed: "
                        f"pip install {OPTIONAL_LIBRARIES[library]}") from None
