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
    """A machine that reports four GPUs (torch.device('cuda', n) needs none to exist); cuDNN flags restored after."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
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


def test_a_gpu_number_the_machine_lacks_is_one_line(with_cuda):
    assert resolve_device("cuda:3") == torch.device("cuda", 3)
    with pytest.raises(UserError, match=r"^--device cuda:4: this machine has 4 GPU\(s\), cuda:0 to cuda:3$"):
        resolve_device("cuda:4")
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 3)
    with pytest.raises(UserError, match=r"^LOCAL_RANK 4: this process would use cuda:4, but this machine has 4 "
                                        r"GPU\(s\); start at most 4 process\(es\) per machine"):
        resolve_device(None, local_rank=4)


def test_torchrun_refuses_an_explicit_gpu_number_and_a_rank_beyond_the_gpus(with_cuda, monkeypatch):
    """Every process of a launch given --device cuda:0 would share GPU 0: refused before any process group."""
    from utils.distributed import Ranks
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda **kwargs: pytest.fail("a process group was started"))
    with pytest.raises(UserError, match=r"^--device cuda:0: under torchrun every process takes its own GPU, "
                                        r"cuda:LOCAL_RANK; pass --device cuda"):
        Ranks.from_environment("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "5")
    with pytest.raises(UserError, match=r"^LOCAL_RANK 5: .* this machine has 4 GPU"):
        Ranks.from_environment(None)
    # six processes on this machine: rank 0, whose GPU exists, says so as well
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "6")
    with pytest.raises(UserError, match=r"^torchrun started 6 processes on this machine, which has 4 GPU\(s\): "
                                        r"pass --nproc_per_node 4 at most$"):
        Ranks.from_environment("cuda")


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
