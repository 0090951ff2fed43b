"""utils/device.py: --device resolution for every command, and fp32 meaning fp32 on a GPU."""
import pytest
import torch

from utils.device import resolve_device, set_fp32_arithmetic
from utils.errors import UserError


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def with_cuda(monkeypatch):
    """A machine that reports a GPU (torch.device('cuda', n) needs none to exist); cuDNN flags restored after."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


def test_cpu_and_the_default_without_a_gpu(no_cuda):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(None, local_rank=3) == torch.device("cpu")


def test_unknown_names_and_missing_cuda_are_one_line_each(no_cuda):
    with pytest.raises(UserError, match=r"^--device: unknown device 'gpu' \(use cpu, cuda or cuda:N\)$"):
        resolve_device("gpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match=rf"^--device {name}: CUDA is not available on this machine$"):
            resolve_device(name)


def test_other_torch_device_types_are_accepted(no_cuda):
    """run_selector.py and evaluate.py passed any device type torch knows; that stays so for every command."""
    assert resolve_device("mps") == torch.device("mps")


def test_a_bare_cuda_is_numbered_only_under_a_local_rank(with_cuda):
    assert resolve_device("cuda") == torch.device("cuda")  # run_selector/evaluate record 'cuda'
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 3)  # torchrun's LOCAL_RANK 3
    assert resolve_device(None, local_rank=2) == torch.device("cuda", 2)
    assert resolve_device("cuda:1", local_rank=3) == torch.device("cuda", 1)  # an explicit index wins
    assert torch.backends.cudnn.benchmark is False


def test_benchmark_kernels_switches_cudnn_benchmarking_on_for_cuda_only(with_cuda):
    resolve_device("cpu", benchmark_kernels=True)
    assert torch.backends.cudnn.benchmark is False
    resolve_device("cuda", benchmark_kernels=True)
    assert torch.backends.cudnn.benchmark is True


def test_fp32_turns_tf32_off_on_cuda_only():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        set_fp32_arithmetic(torch.device("cpu"), "fp32")
        set_fp32_arithmetic(torch.device("cuda", 0), "bf16")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        set_fp32_arithmetic(torch.device("cuda", 0), "fp32")
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:  # torch.backends.cuda.matmul's flags are properties that monkeypatch cannot restore
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
