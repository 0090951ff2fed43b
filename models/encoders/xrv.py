"""--encoder torchxrayvision: the DenseNet-121 and ResNet-50 chest X-ray models of the torchxrayvision library.

The embedding is the pooled feature vector before the classifier, as the
library computes it: ``features2`` of its DenseNet (ReLU, global average pool;
1024 values) and ``features`` of its ResNet (global average pool after
layer4; 2048 values). The preprocessing is the library's own, as its README
does it: 8-bit pixels scaled to [-1024, 1024] by ``xrv.datasets.normalize``,
colour channels averaged into one, ``XRayCenterCrop`` (the central square) and
``XRayResizer`` to the resolution the weights were trained at (224, or 512
for resnet50-res512-all).

These weights are supervised classifiers: see trained_labels.py for the labels
each was trained with, and why that matters for held-out conditions.
"""
import importlib
import os

import numpy as np
import torch
from torch import nn

from data.images import DECODED, ImagePipeline
from models.encoders import Encoder, import_optional
from models.encoders.trained_labels import TORCHXRAYVISION_WEIGHTS, canonical_weights_name
from utils.errors import UserError


def load(weights, weights_dir=None):
    """The torchxrayvision model ``weights`` (a name of TORCHXRAYVISION_WEIGHTS), read from or downloaded to
    ``weights_dir`` (default: the library's ~/.torchxrayvision/models_data/)."""
    name = canonical_weights_name(weights)
    if name is None:
        raise UserError(f"--weights {weights}: not a torchxrayvision weights name; choose one of "
                        f"{', '.join(TORCHXRAYVISION_WEIGHTS)}")
    xrv = import_optional("torchxrayvision")
    if weights_dir is not None and not os.path.isdir(weights_dir):
        raise UserError(f"--weights_dir {weights_dir}: folder not found")
    try:
        library_model = xrv.models.get_model(name, cache_dir=weights_dir)
    except Exception as err:  # a failed download or an unreadable file: the library raises many kinds
        url = xrv.models.model_urls[name]["weights_url"]
        folder = weights_dir or xrv.utils.get_cache_dir()
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        cached = os.path.join(folder, os.path.basename(url))
        if os.path.isfile(cached):  # the download is there: the file is what fails (an interrupted download?)
            raise UserError(f"--weights {name}: the cached file {cached} cannot be read ({reason}); it is probably "
                            "damaged (an interrupted download): delete it to download it again") from None
        raise UserError(f"--weights {name}: cannot load torchxrayvision's weights ({reason}); without internet, "
                        f"download {url} into {folder}") from None
    library_model.eval()
    size = int(library_model.input_resolution)
    is_densenet = hasattr(library_model, "features2")
    dim = library_model.classifier.in_features if is_densenet else library_model.model.fc.in_features
    arch = name.split("-")[0]  # densenet121-res224-all -> densenet121
    return Encoder(
        name="torchxrayvision", model_name=arch, model=XrvFeatures(library_model).eval(), dim=dim,
        pipeline=XrvPipeline(size), weights=name, weights_file=library_model.weights_filename_local,
        summary=f"torchxrayvision {name} ({arch}, {size}x{size})",
        attrs={"library": f"torchxrayvision {xrv.__version__}"})


class XrvFeatures(nn.Module):
    """(B, 1, S, S) in [-1024, 1024] -> (B, D): torchxrayvision's pooled features before its classifier."""

    def __init__(self, library_model):
        super().__init__()
        self.library_model = library_model

    def forward(self, x):
        if hasattr(self.library_model, "features2"):  # DenseNet: features -> ReLU -> global average pool
            return self.library_model.features2(x)  # (B, 1024)
        return self.library_model.features(x)  # ResNet: layer4 -> global average pool, (B, 2048)


class XrvPipeline(ImagePipeline):
    """torchxrayvision's preprocessing, with its own functions: one float32 channel in [-1024, 1024]."""
    dtype = torch.float32

    def __init__(self, size):
        self.size = size
        self.shape = (1, size, size)
        self.description = (f"grey or RGB, {DECODED}; torchxrayvision's: xrv.datasets.normalize(pixels, 255) to "
                            f"[-1024, 1024]; colour channels averaged; XRayCenterCrop (central square); "
                            f"XRayResizer({size}) (skimage, anti-aliased); one channel, float32")

    def transform(self, image):
        xrv = importlib.import_module("torchxrayvision")  # imported already by load(); this runs in workers
        pixels = xrv.datasets.normalize(np.asarray(image), 255)  # (H, W) or (H, W, 3) float32 in [-1024, 1024]
        if pixels.ndim == 3:
            pixels = pixels.mean(2)  # (H, W): one channel, as the library's README does
        pixels = xrv.datasets.XRayCenterCrop()(pixels[None])  # (1, s, s), s = the shorter side
        pixels = xrv.datasets.XRayResizer(self.size)(pixels)  # (1, size, size) float32
        return torch.from_numpy(pixels)

    def model_input(self, batch, device, channels_last=False):
        batch = batch.to(device, non_blocking=True)  # (B, 1, size, size) float32
        return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
