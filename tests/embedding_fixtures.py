"""Helpers for the embedding tests: tiny images, MoCo-layout checkpoints, and an independent reference.

The reference embedding is computed the plain way, sharing no code with
xray_to_hdf5.py: PIL (16-bit grey scaled to 8 bits) -> torchvision Resize(320)
-> CenterCrop(320) -> ToTensor -> Normalize(0.5020, 0.085585), and a
torchvision model built with MoCo's head, loaded strictly from encoder_q, whose
head is then replaced by Identity.
"""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from data.embedding_writer import EmbeddingWriter
from models.random_weights import moco_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD_NAMES = {"resnet18": "fc", "resnet50": "fc", "densenet121": "classifier"}
# (width, height, format, mode): portrait, landscape, square, odd sizes; grey JPEG as in CheXpert, and others.
IMAGE_SPECS = [(60, 74, "jpg", "L"), (80, 41, "png", "RGB"), (47, 47, "png", "L"), (77, 64, "jpg", "RGB"),
               (53, 70, "png", "P"), (66, 50, "png", "RGBA"), (70, 45, "jpg", "L"), (41, 80, "png", "I;16")]


def write_images(folder, count, seed=0, specs=IMAGE_SPECS):
    """Write ``count`` small random images of varied size, format and mode; return their paths."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        width, height, fmt, mode = specs[i % len(specs)]
        pixels = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
        smooth = (pixels.astype(np.float32) + np.roll(pixels, 1, axis=0) + np.roll(pixels, 1, axis=1)) / 3
        if mode == "I;16":
            image = Image.fromarray((smooth[..., 0] * 250).astype(np.uint16))
        else:
            source = Image.fromarray(smooth.astype(np.uint8), mode="RGBA")
            image = (source if mode == "RGBA" else source.convert("RGB")).convert(mode)
        path = os.path.join(folder, f"img{i:03d}.{fmt}")
        image.save(path)
        paths.append(path)
    return paths


def write_csv(path, image_paths, **columns):
    pd.DataFrame({"Path": image_paths, **columns}).to_csv(path, index=False)
    return path


def write_checkpoint(path, arch="resnet18", head="mlp", queue_length=4096, seed=0):
    """A random-weight MoCo-layout checkpoint; big encoders share encoder_k's tensors to keep the file small."""
    torch.save(moco_checkpoint(arch, head, queue_length, seed, share_momentum_encoder=arch != "resnet18"), path)
    return path


def reference_embeddings(image_paths, checkpoint_path, arch, head):
    """(rows, D) float32 by the plain torchvision pipeline, independent of the code under test."""
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "module.encoder_q."
    encoder_q = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    model = getattr(torchvision.models, arch)(num_classes=128)
    head_name = HEAD_NAMES[arch]
    if head == "mlp":
        linear = getattr(model, head_name)
        setattr(model, head_name, torch.nn.Sequential(torch.nn.Linear(linear.in_features, linear.in_features),
                                                      torch.nn.ReLU(), linear))
    model.load_state_dict(encoder_q, strict=True)
    setattr(model, head_name, torch.nn.Identity())
    model.eval()
    preprocess = transforms.Compose([transforms.Resize(320), transforms.CenterCrop(320), transforms.ToTensor(),
                                     transforms.Normalize([0.5020] * 3, [0.085585] * 3)])
    with torch.no_grad():
        batch = torch.stack([preprocess(open_as_rgb(p)) for p in image_paths])
        return model(batch).numpy()


def open_as_rgb(path):
    """The image as 8-bit RGB; a 16-bit grey one scaled from [0, 65535] to [0, 255] (value / 257, rounded)."""
    image = Image.open(path)
    if image.mode.startswith("I;16"):
        image = Image.fromarray(np.round(np.asarray(image, dtype=np.float64) / 257).astype(np.uint8))
    return image.convert("RGB")


def read_hdf5(path):
    import h5py
    with h5py.File(path, "r") as f:
        return f["dataset"][()], {k: f.attrs[k] for k in f.attrs}


def relative_error(actual, expected):
    """Largest per-row ||actual - expected|| / ||expected||."""
    return float((np.linalg.norm(actual - expected, axis=1) / np.linalg.norm(expected, axis=1)).max())


def run_script(args, env=None, timeout=300):
    """Run a repository script in a fresh Python process (its own process group); returns CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


def interrupt_after_writes(monkeypatch, batches=1, action=_raise_keyboard_interrupt):
    """Make an embedding run stop (``action``, Ctrl-C by default) right after its ``batches``-th batch is
    written; ``monkeypatch.undo()`` lets the next run go through."""
    original = EmbeddingWriter.write
    calls = []

    def write(self, lo, embeddings):
        original(self, lo, embeddings)
        calls.append(lo)
        if len(calls) == batches:
            action()
    monkeypatch.setattr(EmbeddingWriter, "write", write)
