"""The torch device of a run (--device) and the arithmetic it runs with."""
import torch

from utils.errors import UserError


def resolve_device(name, local_rank=None, benchmark_kernels=False):
    """--device NAME -> torch.device; None: cuda when available, else cpu.

    ``local_rank`` (torchrun's LOCAL_RANK) numbers a bare 'cuda', so that each process of a launch takes its
    own GPU; without it a bare 'cuda' stays 'cuda' (the current GPU). ``benchmark_kernels`` lets cuDNN time
    its kernels and keep the fastest, for runs whose every step has the same shapes (it tunes convolutions;
    cuDNN's LSTM has no such search). Any device type torch knows is accepted; cuda is refused where there is
    none, and a GPU number (given, or from ``local_rank``) that this machine does not have is refused too,
    before any command has touched its output.
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
        count = torch.cuda.device_count()
        if device.index is None and local_rank is not None:
            if local_rank >= count:
                raise UserError(f"LOCAL_RANK {local_rank}: this process would use cuda:{local_rank}, but this "
                                f"machine has {count} GPU(s); start at most {count} process(es) per machine "
                                "(torchrun --nproc_per_node)")
            device = torch.device("cuda", local_rank)
        elif device.index is not None and device.index >= count:
            raise UserError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}"
                            if count else f"--device {name}: this machine has no GPU")
        if benchmark_kernels:
            torch.backends.cudnn.benchmark = True
    return device


def set_fp32_arithmetic(device, precision="fp32"):
    """fp32 means fp32 on a GPU too: PyTorch would otherwise run convolutions and cuDNN's LSTM in TF32 (10-bit
    mantissas) on Ampere and newer GPUs. Every command calls it (run_selector.py, evaluate.py, xray_to_hdf5.py),
    so a GPU computes what the CPU computes, to float32 rounding."""
    if device.type == "cuda" and precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
