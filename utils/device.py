"""The torch device of a run (--device) and the arithmetic it runs with."""
import torch

from utils.errors import UserError


def resolve_device(name, local_rank=None, benchmark_kernels=False):
    """--device NAME -> torch.device; None: cuda when available, else cpu.

    ``local_rank`` (torchrun's LOCAL_RANK) numbers a bare 'cuda', so that each process of a launch takes its
    own GPU; without it a bare 'cuda' stays 'cuda' (the current GPU). ``benchmark_kernels`` lets cuDNN time
    its kernels and keep the fastest, for runs whose every step has the same shapes (the BiLSTM in training
    and evaluation). Any device type torch knows is accepted; cuda is refused where there is none.
    """
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
        if benchmark_kernels:
            torch.backends.cudnn.benchmark = True
    return device


def set_fp32_arithmetic(device, precision):
    """fp32 means fp32 on a GPU too: PyTorch would otherwise run convolutions in TF32."""
    if device.type == "cuda" and precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
