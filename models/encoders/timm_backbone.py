"""--encoder timm: any timm backbone, from a local weights file or the Hugging Face hub.

The model is built with ``num_classes=0``, so its output is the pooled
embedding (timm's own pooling and pre-logits for the architecture). The
preprocessing is timm's evaluation transform for the model's pretrained
configuration (``timm.data.resolve_data_config`` then ``create_transform``),
so ``--model`` should name the tag the weights come from when its mean, std or
input size differ, e.g. ``vit_small_patch16_224.dino``.

The weights are loaded strictly: every parameter of the backbone must come
from the file (a classifier head in the file is dropped), so a file made for
another architecture stops the run instead of leaving random weights in place.
"""
import os
import socket
import urllib.parse

import torch

from data.images import DECODED, ImagePipeline
from models.encoders import Encoder, import_optional
from utils.errors import UserError
from utils.torch_files import unreadable_reason

HUB_ENDPOINT = "https://huggingface.co"  # huggingface_hub's default; HF_ENDPOINT replaces it
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the files timm's hub loader reads
HUB_TIMEOUT_S = 10  # to wait for the hub before saying it cannot be reached
HUB_PREFIX = "hf-hub:"  # --weights hf-hub:ORG/NAME: a Hugging Face hub repository, as timm names them
KEYS_SHOWN = 3  # parameter names quoted in an error message


def load(model_name, weights):
    timm = import_optional("timm")
    try:
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
    except RuntimeError as err:  # timm: "Unknown model (...)"
        raise UserError(f"--model {model_name}: {str(err).splitlines()[0]} (timm.list_models() lists them)") from None
    state, weights_file = read_weights(timm, weights)
    load_backbone_weights(model, state, weights, model_name)
    model.eval()
    config = timm.data.resolve_data_config(model=model)
    pipeline = TimmPipeline(timm.data.create_transform(**config, is_training=False), config)
    with torch.inference_mode():
        dim = model(torch.zeros(1, *pipeline.shape)).shape[-1]  # the pooled (pre-logits) size of this model
    _, height, width = pipeline.shape
    return Encoder(name="timm", model_name=model_name, model=model, dim=int(dim), pipeline=pipeline,
                   weights=weights if weights_file is None else os.path.basename(weights),
                   weights_file=weights_file, summary=f"timm {model_name} (weights {weights}, {height}x{width})",
                   attrs={"library": f"timm {timm.__version__}"})


def read_weights(timm, weights):
    """(state dict, local file or None) for --weights: a file, or hf-hub:ORG/NAME downloaded by timm."""
    if weights.startswith(HUB_PREFIX):
        hub_id = weights[len(HUB_PREFIX):]
        check_hub_reachable(weights)
        try:
            return timm.models.load_state_dict_from_hf(hub_id), None
        except Exception as err:  # no network, no such repository, no weights file in it: many kinds
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(f"--weights {weights}: cannot get the weights from the Hugging Face hub ({reason})") \
                from None
    if not os.path.isfile(weights):
        raise UserError(f"--weights {weights}: file not found (a Hugging Face hub model is written "
                        f"{HUB_PREFIX}ORG/NAME)")
    try:
        # timm's reader: a state dict or a checkpoint holding one ('state_dict_ema' first, then 'state_dict',
        # 'model'), .safetensors too, with any 'module.' prefix of multi-GPU training removed.
        return timm.models.load_state_dict(weights), weights
    except Exception as err:  # torch.load and safetensors raise many kinds for a foreign file
        raise UserError(f"--weights {weights}: not a readable weights file ({unreadable_reason(weights, err)})") \
            from None


def check_hub_reachable(weights):
    """Refuse at once, when the Hugging Face hub cannot be reached, what huggingface_hub would otherwise retry
    for about a minute before failing. Offline mode (HF_HUB_OFFLINE=1) and weights already in the local cache
    (which huggingface_hub falls back to) are left alone."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or _in_hub_cache(weights):
        return
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=HUB_TIMEOUT_S).close()
    except OSError as err:
        raise UserError(f"--weights {weights}: cannot reach {host} ({err.strerror or err}); without internet, "
                        "download the weights file elsewhere and give it as --weights FILE, or set "
                        "HF_HUB_OFFLINE=1 to use weights already in the Hugging Face cache") from None


def _in_hub_cache(weights):
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    hub_id = weights[len(HUB_PREFIX):]
    return any(isinstance(try_to_load_from_cache(hub_id, name), str) for name in HUB_WEIGHT_FILES)


def load_backbone_weights(model, state, source, model_name):
    """Load ``state`` into the headless ``model``: its classifier head is dropped, anything else must match."""
    classifiers = model.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    own = model.state_dict()
    body = {k: v for k, v in state.items()
            if k in own or not any(k == c or k.startswith(c + ".") for c in classifiers)}
    try:
        missing, unexpected = model.load_state_dict(body, strict=False)
    except RuntimeError as err:  # a shape mismatch
        sizes = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise UserError(f"--weights {source}: does not fit timm model {model_name}: "
                        f"{sizes[0] if sizes else str(err).splitlines()[0]}") from None
    if missing or unexpected:
        raise UserError(f"--weights {source}: does not fit timm model {model_name}: {len(missing)} of its "
                        f"parameters are missing ({_some(missing)}) and {len(unexpected)} are unexpected "
                        f"({_some(unexpected)}); --model must name the architecture the weights were trained with")


def _some(keys):
    return ", ".join(keys[:KEYS_SHOWN]) + (", ..." if len(keys) > KEYS_SHOWN else "")


class TimmPipeline(ImagePipeline):
    """timm's evaluation transform on the decoded image as RGB: a normalised float32 (3, H, W)."""
    dtype = torch.float32

    def __init__(self, transform, config):
        self.timm_transform = transform
        self.shape = tuple(config["input_size"])
        settings = ", ".join(f"{key} {value}" for key, value in sorted(config.items()))
        self.description = (f"RGB, {DECODED}; timm.data.create_transform(is_training=False) with "
                            f"resolve_data_config: {settings}")

    def transform(self, image):
        return self.timm_transform(image.convert("RGB"))  # (3, H, W) float32, normalised

    def model_input(self, batch, device, channels_last=False):
        batch = batch.to(device, non_blocking=True)  # (B, 3, H, W) float32
        return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
