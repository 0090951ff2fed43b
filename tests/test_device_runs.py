"""Commands on another device than expected: a resume across device types, a GPU the machine lacks, and fp32
(never TF32) on a GPU for every command. CPU-runnable: a CUDA generator state and GPUs are faked."""
import ast
import glob
import os

import numpy as np
import pandas as pd
import pytest
import torch

import evaluate
import run_selector
import xray_to_hdf5
from tests.conftest import ROOT, TINY_SETTINGS
from tests.embedding_fixtures import write_checkpoint, write_csv, write_images
from tests.evaluate_helpers import write_test_split
from utils.errors import run_cli
from utils.seeding import RANDOM_BASELINE, SELECTION

SETTINGS = [arg for item in (*TINY_SETTINGS, "NUM_META_TRAIN_TASKS=160") for arg in ("--set", item)]
CUDA_STATE_BYTES = 16  # len(torch.Generator("cuda").get_state()): a seed and an offset, 8 bytes each


def train(tiny_data, out, *extra):
    return run_cli(run_selector.main, [*tiny_data, "--out", str(out), *extra])


def stop_in_epoch_two(monkeypatch):
    """Stop the next run at its 65th step (after the validation at epoch 2's iter 30, which wrote last.pt)."""
    real_step, calls = run_selector.train_step, {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 65:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)
    monkeypatch.setattr(run_selector, "train_step", step)


def test_a_last_pt_of_a_gpu_run_resumes_on_the_cpu(tiny_data, tmp_path, monkeypatch):
    """A GPU run's last.pt holds 16-byte CUDA generator states: on a CPU the run goes on (no traceback), with
    generators derived from the seed and step, and says so."""
    out = tmp_path / "run"
    stop_in_epoch_two(monkeypatch)
    with pytest.raises(SystemExit):
        train(tiny_data, out, "--device", "cpu", *SETTINGS)
    monkeypatch.undo()
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["progress"]["generator_device"] == "cpu"
    assert len(last["progress"]["selection_generator"]) == len(torch.Generator().get_state())
    step = last["progress"]["step"]
    # What a GPU run leaves (an older last.pt has no generator_device: the state's size tells).
    for key in ("selection_generator", "baseline_generator"):
        last["progress"][key] = torch.arange(CUDA_STATE_BYTES, dtype=torch.uint8)
    del last["progress"]["generator_device"]
    torch.save(last, out / "last.pt")

    drawn = []  # the generators the resumed run's steps draw with
    real_step = run_selector.train_step
    monkeypatch.setattr(run_selector, "train_step",  # its two generators follow the selector, ..., k
                        lambda *args, **kwargs: drawn.append(args[6:8]) or real_step(*args, **kwargs))
    assert train(tiny_data, out, "--device", "cpu", "--resume", str(out / "last.pt")) == 0
    log = (out / "train.log").read_text()
    assert f"last.pt holds the random state of a cuda run, and this run is on cpu: the selection and baseline " \
           f"draws continue from new generators seeded by the seed and step {step}" in log
    assert len(drawn) == 80 - step and pd.read_csv(out / "metrics.csv")["step"].iloc[-1] == 80
    # The generators are seeded by (seed 0, purpose, step): one 63-bit number from numpy's SeedSequence.
    for generator, purpose in zip(drawn[0], (SELECTION, RANDOM_BASELINE)):
        entropy = np.random.SeedSequence([0, purpose, step]).generate_state(1, dtype=np.uint64)[0]
        assert generator.initial_seed() == int(entropy) >> 1
    assert torch.load(out / "last.pt", weights_only=False)["progress"]["generator_device"] == "cpu"


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine that reports one GPU, cuda:0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


def test_a_gpu_the_machine_lacks_is_refused_before_the_run_folder_is_touched(tiny_data, tmp_path, one_gpu, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # an earlier run, which --overwrite would remove
    with pytest.raises(SystemExit) as exit_info:
        train(tiny_data, out, "--device", "cuda:1", "--overwrite", *SETTINGS)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --device cuda:1: this machine has 1 GPU(s), cuda:0 to cuda:0"
    assert sorted(os.listdir(out)) == ["config.json"]  # not emptied, no lock left


class Stop(Exception):
    """Raised by the spy once it has seen the call."""


def spy_fp32(monkeypatch, module):
    calls = []

    def spy(device, precision="fp32"):
        calls.append((device, precision))
        raise Stop
    monkeypatch.setattr(module, "set_fp32_arithmetic", spy)
    return calls


def test_every_command_with_a_device_runs_fp32_on_it(tiny_data, tmp_path, monkeypatch, test_device):
    """TF32 is off for the BiLSTM (training, evaluation) as for the encoder: each command sets fp32 for the
    device it resolved (the test device: no --device is given), before any work."""
    calls = spy_fp32(monkeypatch, run_selector)
    with pytest.raises(Stop):
        run_selector.main([*tiny_data, "--out", str(tmp_path / "run"), *SETTINGS])
    assert [(d.type, p) for d, p in calls] == [(test_device.type, "fp32")] and not (tmp_path / "run").exists()

    calls = spy_fp32(monkeypatch, evaluate)
    test_pos, test_norm = write_test_split(tmp_path / "test")
    with pytest.raises(Stop):
        evaluate.main(["--test_pos_csv", test_pos, "--test_norm_csv", test_norm, "--methods", "random",
                       "--out", str(tmp_path / "eval")])
    assert [(d.type, p) for d, p in calls] == [(test_device.type, "fp32")]

    calls = spy_fp32(monkeypatch, xray_to_hdf5)
    csv = write_csv(tmp_path / "x.csv", write_images(tmp_path / "images", 2))
    checkpoint = write_checkpoint(tmp_path / "moco.pth.tar", queue_length=16)
    with pytest.raises(Stop):
        xray_to_hdf5.main(["-d", str(csv), "-o", str(tmp_path / "x.hdf5"), "-c", str(checkpoint),
                           "--num_workers", "0"])
    assert [(d.type, p) for d, p in calls] == [(test_device.type, "fp32")]


def test_every_entry_point_that_picks_a_device_sets_its_arithmetic():
    """A new command that resolves a device (resolve_device, or torchrun's Ranks) must also call
    set_fp32_arithmetic, or its GPU runs would silently use TF32."""
    for path in sorted(glob.glob(os.path.join(ROOT, "*.py"))):
        names = {node.id if isinstance(node, ast.Name) else node.attr
                 for node in ast.walk(ast.parse(open(path).read())) if isinstance(node, (ast.Name, ast.Attribute))}
        if names & {"resolve_device", "Ranks"}:
            assert "set_fp32_arithmetic" in names, os.path.basename(path)
