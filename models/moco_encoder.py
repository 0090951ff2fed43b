"""The MoCo-CXR query encoder without its head: the image embedding the paper uses (docs/embedding.md).

A MoCo checkpoint (facebookresearch/moco as modified by MoCo-CXR) is a
``torch.save`` dict whose ``state_dict`` holds the query encoder
``module.encoder_q.<torchvision keys>``, the momentum encoder
``module.encoder_k.*`` and the queue ``module.queue`` (128 x queue length) with
``module.queue_ptr``. Only ``encoder_q`` is used. Its projection head (``fc``
for a ResNet, ``classifier`` for a DenseNet: one Linear to 128, or MoCo v2's
Linear-ReLU-Linear stored as ``.0`` and ``.2``) is dropped, so the embedding is
the global-average-pooled feature vector. The queue length differs between the
published checkpoints and is never needed.
"""
import pickle
import re
from dataclasses import dataclass

import torch
from torch import nn
from torchvision import models

from utils.errors import UserError
from utils.torch_files import unreadable_reason

# name -> (torchvision constructor, head attribute, embedding size D). The published MoCo-CXR
# families: r8w-* (ResNet-18), r5w-* (ResNet-50), d1w-* (DenseNet-121).
ARCHITECTURES = {
    "resnet18": (models.resnet18, "fc", 512),
    "resnet50": (models.resnet50, "fc", 2048),
    "densenet121": (models.densenet121, "classifier", 1024),
}
# Signatures read from the keys: (family, blocks per stage) -> name.
_SIGNATURES = {
    ("resnet-basic", (2, 2, 2, 2)): "resnet18",
    ("resnet-bottleneck", (3, 4, 6, 3)): "resnet50",
    ("densenet", (6, 12, 24, 16)): "densenet121",
}
QUERY_ENCODER_PREFIXES = ("module.encoder_q.", "encoder_q.")  # multi-GPU (DDP) and single-GPU MoCo training


@dataclass
class Encoder:
    """A loaded encoder and what it is, for logging and for the HDF5 attributes."""
    model: nn.Module  # eval mode, head replaced by Identity: (B, 3, H, W) -> (B, D)
    arch: str
    dim: int
    head: str  # "mlp", "linear" or "none" (already stripped)
    queue_length: int | None


def load_moco_encoder(checkpoint_path, arch=None):
    """Read a MoCo checkpoint and build its query encoder without head; ``arch`` overrides detection."""
    state = read_moco_state_dict(checkpoint_path)
    prefix = next((p for p in QUERY_ENCODER_PREFIXES if any(k.startswith(p) for k in state)), None)
    if prefix is None:
        raise UserError(f"{checkpoint_path}: expected a MoCo checkpoint whose 'state_dict' holds the query encoder "
                        f"as 'module.encoder_q.*' (with encoder_k, queue, queue_ptr); found {describe_keys(state)}")
    encoder_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    queue = state.get(prefix.replace("encoder_q.", "queue"))
    queue_length = int(queue.shape[-1]) if isinstance(queue, torch.Tensor) and queue.ndim == 2 else None
    if arch is None:
        arch = detect_architecture(encoder_state, checkpoint_path)
    elif arch not in ARCHITECTURES:
        raise UserError(f"--arch {arch}: unknown architecture; choose one of {', '.join(ARCHITECTURES)}")
    model, head = build_encoder(encoder_state, arch, checkpoint_path)
    return Encoder(model=model, arch=arch, dim=ARCHITECTURES[arch][2], head=head, queue_length=queue_length)


def read_moco_state_dict(checkpoint_path):
    """The ``state_dict`` of a checkpoint file, loaded on the CPU without running pickled code."""
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{checkpoint_path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise UserError(f"{checkpoint_path}: is a folder, expected a checkpoint file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as err:
        raise UserError(f"{checkpoint_path}: not a readable PyTorch checkpoint "
                        f"({unreadable_reason(checkpoint_path, err)})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        found = (f"keys {', '.join(repr(k) for k in list(checkpoint)[:8])}" if isinstance(checkpoint, dict)
                 else f"a {type(checkpoint).__name__}")
        raise UserError(f"{checkpoint_path}: expected a MoCo checkpoint, a dict with 'state_dict' (and 'epoch', "
                        f"'arch', 'optimizer'); found {found}")
    return checkpoint["state_dict"]


def detect_architecture(encoder_state, source="checkpoint"):
    """Name of the torchvision architecture whose keys ``encoder_state`` has (see ``_SIGNATURES``)."""
    keys = list(encoder_state)
    if any(k.startswith("features.denseblock") for k in keys):
        family = "densenet"
        blocks = _count_blocks(keys, r"features\.denseblock(\d+)\.denselayer(\d+)\.", first_index=1)
    elif any(k.startswith("layer1.") for k in keys):
        family = "resnet-bottleneck" if "layer1.0.conv3.weight" in encoder_state else "resnet-basic"
        blocks = _count_blocks(keys, r"layer(\d+)\.(\d+)\.", first_index=0)
    else:
        raise UserError(f"{source}: encoder_q is neither a ResNet nor a DenseNet; found {describe_keys(keys)}")
    arch = _SIGNATURES.get((family, blocks))
    if arch is None:
        raise UserError(f"{source}: encoder_q is a {family} with {blocks} blocks per stage, which is not a supported "
                        f"architecture ({', '.join(ARCHITECTURES)})")
    return arch


def _count_blocks(keys, pattern, first_index):
    """Blocks in each stage, e.g. (2, 2, 2, 2) for ResNet-18; ``pattern`` captures (stage, block index)."""
    highest = {}
    for key in keys:
        match = re.match(pattern, key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            highest[stage] = max(highest.get(stage, 0), block)
    return tuple(highest[stage] + 1 - first_index for stage in sorted(highest))


def build_encoder(encoder_state, arch, source="checkpoint"):
    """(eval-mode torchvision ``arch`` with its head replaced by Identity, head kind) from ``encoder_state``."""
    constructor, head_name, dim = ARCHITECTURES[arch]
    model = constructor(weights=None)
    setattr(model, head_name, nn.Identity())
    head_keys = [k for k in encoder_state if k == head_name or k.startswith(head_name + ".")]
    body = {k: v for k, v in encoder_state.items() if k not in head_keys}
    try:
        missing, unexpected = model.load_state_dict(body, strict=False)
    except RuntimeError as err:  # a shape mismatch
        sizes = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise UserError(f"{source}: encoder_q does not fit {arch}: {sizes[0] if sizes else str(err).splitlines()[0]}"
                        " (--arch overrides the detected architecture)") from None
    if missing or unexpected:
        raise UserError(f"{source}: encoder_q does not fit {arch}: {len(missing)} missing key(s) "
                        f"{', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}; {len(unexpected)} unexpected "
                        f"key(s) {', '.join(unexpected[:3])}{'...' if len(unexpected) > 3 else ''}")
    return model.eval(), head_kind(encoder_state, head_name, head_keys, dim, source)


def head_kind(encoder_state, head_name, head_keys, dim, source):
    """'mlp' (``.0``/``.2``), 'linear', or 'none' for the projection head; refuse anything else."""
    keys = set(head_keys)
    if not keys:
        return "none"
    if keys == {f"{head_name}.weight", f"{head_name}.bias"}:
        kind, first = "linear", f"{head_name}.weight"
    elif keys == {f"{head_name}.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}:
        kind, first = "mlp", f"{head_name}.0.weight"
    else:
        raise UserError(f"{source}: expected the head '{head_name}' to be one Linear or MoCo v2's MLP "
                        f"('{head_name}.0', '{head_name}.2'); found {', '.join(sorted(keys))}")
    if encoder_state[first].ndim != 2 or encoder_state[first].shape[1] != dim:
        raise UserError(f"{source}: head '{first}' has shape {tuple(encoder_state[first].shape)}, expected "
                        f"(*, {dim}) after the pooled features")
    return kind


def describe_keys(keys, limit=8):
    """'N keys: a.*, b.*, ...' — the distinct leading name parts, for error messages."""
    keys = list(keys)
    prefixes = []
    for key in keys:
        parts = key.split(".")
        prefix = ".".join(parts[:2 if parts[0] == "module" else 1]) + (".*" if len(parts) > 1 else "")
        if prefix not in prefixes:
            prefixes.append(prefix)
    shown = ", ".join(prefixes[:limit]) + (", ..." if len(prefixes) > limit else "")
    return f"{len(keys)} key(s): {shown or 'none'}"
