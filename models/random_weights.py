"""RANDOM-weight encoder files in the real layouts, for the demo, the tests and the benchmarks.

NOT trained weights: the embeddings they give are meaningless, but xray_to_hdf5.py reads and runs them
exactly as the real files (same architecture, preprocessing and speed), which cannot ship with this
repository. A MoCo(-CXR) checkpoint (moco_checkpoint, with calibrate_batch_norm for usable embeddings), and
the files torchxrayvision and timm load (write_torchxrayvision_weights, write_timm_weights; these need
requirements-encoders.txt).
"""
import os

import torch

from data.images import load_xray, normalize
from models.encoders import import_optional
from models.moco_encoder import ARCHITECTURES, QUERY_ENCODER_PREFIXES, build_encoder

MOCO_DIM = 128  # MoCo's projection size (the queue's rows)


def moco_checkpoint(arch="resnet18", head="mlp", queue_length=65536, seed=0, share_momentum_encoder=False):
    """A random-weight checkpoint in the MoCo(-CXR) layout: {'epoch', 'arch', 'state_dict', 'optimizer'}.

    ``state_dict`` holds module.encoder_q.* (a torchvision ``arch`` whose head is
    one Linear to 128, or MoCo v2's Linear-ReLU-Linear), module.encoder_k.* (a
    different random encoder, or the same tensors when ``share_momentum_encoder``
    to keep big test files small), module.queue (128 x queue_length) and
    module.queue_ptr. Batch-norm running statistics are random too, so that a
    model left in training mode would give different embeddings.
    """
    generator = torch.Generator().manual_seed(seed)
    constructor, head_name, dim = ARCHITECTURES[arch]

    def random_encoder():
        model = constructor(weights=None, num_classes=MOCO_DIM)
        if head == "mlp":
            setattr(model, head_name, torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(),
                                                          getattr(model, head_name)))
        state = model.state_dict()
        for key, value in state.items():
            if key.endswith("running_mean"):
                value.copy_(0.1 * torch.randn(value.shape, generator=generator))
            elif key.endswith("running_var"):
                value.copy_(0.5 + torch.rand(value.shape, generator=generator))
            elif value.is_floating_point():
                value.add_(0.01 * torch.randn(value.shape, generator=generator))  # differ from the default init
        return state

    torch.manual_seed(seed)
    query = random_encoder()
    key = query if share_momentum_encoder else random_encoder()
    state_dict = {f"module.encoder_q.{k}": v for k, v in query.items()}
    state_dict.update({f"module.encoder_k.{k}": v for k, v in key.items()})
    state_dict["module.queue"] = torch.nn.functional.normalize(torch.randn(MOCO_DIM, queue_length,
                                                                           generator=generator), dim=0)
    state_dict["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    optimizer = {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4,
                                                "params": list(range(len(query)))}]}
    return {"epoch": 20, "arch": arch, "state_dict": state_dict, "optimizer": optimizer}


def calibrate_batch_norm(checkpoint, image_paths, batch_size=32):
    """Set the query encoder's batch-norm running statistics to those of ``image_paths``, in place.

    A trained MoCo encoder carries the running statistics of its training images. Random ones leave
    the activations unnormalised: the demo images' embeddings come out about 20 times larger than
    with calibrated statistics (norm ~380 instead of ~19, every dimension positive, cosine
    similarity ~0.9999 between any two), which saturates the selector's LSTM gates (most input
    pre-activations beyond +-2), so that it cannot tell one X-ray from another and learns nothing.
    Calibrated, the checkpoint still has random weights, but its embeddings vary as an encoder's should.
    """
    prefix = QUERY_ENCODER_PREFIXES[0]
    state = checkpoint["state_dict"]
    model, _ = build_encoder({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                             checkpoint["arch"], "random checkpoint")
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over all batches
    model.train()
    with torch.no_grad():
        for start in range(0, len(image_paths), batch_size):
            model(normalize(torch.stack([load_xray(p) for p in image_paths[start:start + batch_size]])))
    for name, value in model.state_dict().items():
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
            state[prefix + name].copy_(value)  # also the momentum encoder's when it shares the tensors


def write_torchxrayvision_weights(folder, name, seed=0):
    """Random weights for torchxrayvision's ``name``, as the file it would download into ``folder``."""
    xrv = import_optional("torchxrayvision")
    torch.manual_seed(seed)
    path = os.path.join(folder, os.path.basename(xrv.models.model_urls[name]["weights_url"]))
    if name.startswith("densenet"):
        torch.save(xrv.models.DenseNet(weights=None), path)
    else:  # torchxrayvision's ResNet: a torchvision ResNet-50 with one input channel and 18 outputs
        import torchvision
        resnet = torchvision.models.resnet50(num_classes=len(xrv.models.model_urls[name]["labels"]))
        resnet.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        torch.save(resnet.state_dict(), path)
    return path


def write_timm_weights(path, model_name, seed=0):
    """A random-weight state dict of the timm model ``model_name`` (with its classifier head)."""
    timm = import_optional("timm")
    torch.manual_seed(seed)
    torch.save(timm.create_model(model_name, pretrained=False).state_dict(), path)
    return path
