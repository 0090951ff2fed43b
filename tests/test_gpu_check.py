"""bench/gpu_check.py --smoke on the CPU: every step writes its file, with what it measured, so that the script is
ready (and right) for the day a GPU is lent. The CUDA-only checks must say why they did not run."""
import json
import math
import os
import re

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

import engine
from bench import gpu_check
from evaluation.meta_test import METHODS
from tests.conftest import ROOT

STEPS = ("tests", "correctness", "train", "embed", "evaluate")
CUDA_ONLY = {"correctness": ("syncs_per_training_step", "resume_across_devices", "tf32_logits"),
             "embed": ("torchrun_one_process",)}


def read_results(out):
    return {name[len("cpu-smoke-"):-len(".json")]: json.loads((out / name).read_text()) for name in os.listdir(out)}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu_check")
    # torchrun's two processes take half a minute on a busy CPU; they are checked by running the script itself
    assert gpu_check.main(["--smoke", "--out", str(folder / "out"), "--work", str(folder / "work"),
                           "--skip", "torchrun_two_processes_vs_one"]) == 0
    return read_results(folder / "out"), folder / "work"


def test_each_step_writes_a_file_naming_the_machine(smoke):
    results, _ = smoke
    assert set(results) == set(STEPS)
    for step, data in results.items():
        env = data["environment"]
        assert data["step"] == step
        assert (env["device"], env["device_name"], env["torch"], env["cuda"]) == \
               ("cpu", "cpu", torch.__version__, torch.version.cuda)
        assert env["smoke"] is True
        errors = {name: check.get("error") for name, check in data["checks"].items() if check["status"] == "error"}
        assert errors == {}, step
        for name in CUDA_ONLY.get(step, ()):
            assert data["checks"][name]["status"] == "skipped"
            assert "needs a CUDA device" in data["checks"][name]["reason"]


def test_the_tests_step_ran_the_device_tests_on_the_cpu(smoke):
    check = smoke[0]["tests"]["checks"]["pytest"]
    with open(os.path.join(ROOT, "tests", "test_device.py")) as f:
        tests = len(re.findall(r"^def test_", f.read(), flags=re.M))
    assert check["status"] == "passed" and check["test_device"] == "cpu"
    assert check["counts"] == {"passed": tests}


def test_correctness_on_one_device_is_exact(smoke):
    """On the CPU the 'other' device is the CPU too, and two runs with one seed are identical there."""
    checks = smoke[0]["correctness"]["checks"]
    both = checks["same_seed_on_both_devices"]
    assert both["status"] == "passed" and set(both["max_abs_difference"].values()) == {0.0}
    assert both["validations"] == 3  # 2 epochs of 40 steps: iterations 30 of each, and the run's last step
    assert checks["checkpoints_evaluated_on_both_devices"]["status"] == "passed"
    assert checks["same_seed_twice"]["identical"] is True


def test_training_is_timed_whole_with_its_parts(smoke):
    check = smoke[0]["train"]["checks"]["default_meta_training"]
    shapes = check["shapes"]
    steps = math.ceil(shapes["NUM_META_TRAIN_TASKS"] / shapes["BATCH_SIZE"]) * shapes["NUM_EPOCHS"]
    assert check["full_run_is"] == "measured" and check["steps"] == steps == 32
    assert check["validations"] == 1
    assert check["ms_per_step"] > 0 and check["lstm_forward_backward_ms"] > 0
    assert sum(check["parts_s"].values()) == pytest.approx(check["wall_s"])


def test_embedding_speeds_and_the_decoders_cosine(smoke):
    results, work = smoke
    checks = results["embed"]["checks"]
    speed = checks["images_per_second"]
    assert speed["images"] == 12 and all(v["images_per_s"] > 0 for v in speed["by_decoder"].values())
    # the cosine recomputed from the two files with scikit-learn
    pil, tv = (h5py.File(work / f"embedded_{d}.hdf5", "r")["dataset"][:] for d in ("pil", "torchvision"))
    expected = np.diag(cosine_similarity(pil, tv))
    assert checks["decoder_cosine"]["min_cosine"] == pytest.approx(expected.min(), abs=1e-6)
    assert checks["decoder_cosine"]["status"] == ("passed" if expected.min() >= 0.999 else "failed")
    assert checks["torchrun_two_processes_vs_one"] == {"status": "skipped", "reason": "--skip",
                                                       "seconds": checks["torchrun_two_processes_vs_one"]["seconds"]}


def test_evaluation_times_every_method(smoke):
    check = smoke[0]["evaluate"]["checks"]["all_methods_paper_size"]
    methods = [m for m in METHODS if m != "medselect"]
    assert check["methods"] == methods and set(check["seconds_per_method"]) == set(methods)
    assert check["tasks"] == 12 and all(s > 0 for s in check["seconds_per_method"].values())


def test_a_budget_skips_what_would_not_fit(tmp_path):
    out = tmp_path / "out"
    assert gpu_check.main(["--smoke", "--budget", "0", "--out", str(out), "--work", str(tmp_path / "work")]) == 0
    assert len(os.listdir(out)) == len(STEPS)
    for step, data in read_results(out).items():
        for name, check in data["checks"].items():
            assert check["status"] == "skipped", (step, name)
            assert "--budget left" in check["reason"] or name in CUDA_ONLY.get(step, ()), (step, name)


def test_the_training_plan_runs_whole_or_a_fraction_of_whole_validation_intervals():
    config = {"NUM_META_TRAIN_TASKS": 10000, "BATCH_SIZE": 64, "NUM_EPOCHS": 5}
    # 157 steps per epoch: validations at iterations 30, 60, 90, 120, 150 of each epoch, and at the last step
    assert engine.validation_count(157, 5) == 26
    estimate = 10 + 785 * 0.1 + 26 * 1.0
    assert gpu_check.plan_training(config, 0.1, 1.0, 10, 200) == (10000, 5, pytest.approx(estimate))
    # 50 s left: (50 - 10) // (30 x 0.1 + 1) = 10 intervals = 300 steps, at most one epoch's 157
    assert gpu_check.plan_training(config, 0.1, 1.0, 10, 50)[:2] == (10000, 1)
    assert gpu_check.plan_training(config, 0.1, 1.0, 10, 20)[:2] == (2 * 30 * 64, 1)
    assert gpu_check.plan_training(config, 0.1, 1.0, 10, 5)[:2] == (30 * 64, 1)  # at least one interval


def test_device_names_become_file_tags():
    assert gpu_check.device_tag("NVIDIA H100 80GB HBM3") == "h100"
    assert gpu_check.device_tag("NVIDIA H200") == "h200"
    assert gpu_check.device_tag("NVIDIA A100-SXM4-40GB") == "a100"
    assert gpu_check.device_tag("cpu") == "cpu"


def test_the_cuda_only_checks_run_through_on_the_cpu(tmp_path, monkeypatch):
    """Their first real run will be on a lent GPU: run their code here (the CPU standing in, with the CUDA-only
    calls stubbed), so that it cannot fail there on a slip."""
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    context = gpu_check.Context(torch.device("cpu"), gpu_check.SMOKE, True, str(tmp_path), str(tmp_path / "work"),
                                gpu_check.Budget(None), {"device_name": "cpu"})
    syncs = gpu_check.check_syncs(context)
    assert syncs["steps"] == 5 and syncs["syncs_per_step"] == 0  # no CUDA here: nothing to count
    tf32 = gpu_check.check_tf32(context)
    assert max(tf32["max_abs_error_vs_float64"].values()) < 1e-5
    resume = gpu_check.check_resume_across_devices(context)["runs"]
    assert set(resume) == {"resume-cpu-to-cpu"}  # both directions are the CPU here: one run folder, twice
    run = resume["resume-cpu-to-cpu"]
    assert (run["stopped_exit_code"], run["exit_code"], run["rows"]) == (130, 0, 3)
    assert run["note"] is None  # a resume on the same device type sets the saved generator states
