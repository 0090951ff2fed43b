"""One command that proves the GPU path: every step timed, each result file written as soon as its step ends.

    python3 bench/gpu_check.py --budget 500            # on a machine with a GPU: results under $OUT
    python3 bench/gpu_check.py --smoke                 # the same steps at tiny sizes on the CPU (a test runs it)

Steps, in this order (docs/performance.md#the-gpu-check):
 1. tests        the device-relevant tests with MEDSELECT_TEST_DEVICE set to the device (tests/conftest.py)
 2. correctness  the device against the CPU: the same seed trains a tiny selector on both (meta-val AUROCs within
                 0.01); each checkpoint evaluated on both devices (top-K: the same AUROCs); and the checks of
                 the device fixes: device syncs per training step (torch.cuda.set_sync_debug_mode), a resume
                 CPU -> GPU and GPU -> CPU, logits with TF32 on and off, two runs with the same seed
 3. train        the full default meta-training (constants.py: 10,000 tasks x 5 epochs, batch 64, pool 1000,
                 query 100, 1,000 validation tasks) on CheXpert-sized synthetic embeddings (60,000 positive and
                 20,000 normal rows, D 512): wall time and where it goes; when it would not fit the budget, a
                 measured fraction (whole validations included) is run and the rest extrapolated, and the file
                 says so
 4. embed        xray_to_hdf5.py on 5,000 CheXpert-small-sized JPEGs, MoCo ResNet-18, both decoders,
                 --num_workers = the machine's cores (images/s); the torchvision decoder against PIL by cosine;
                 torchrun: one process (NCCL on a GPU), and two processes against one (gloo on the CPU)
 5. evaluate     evaluate.py at the paper's task size (pool 1000, query 100, 1,000 tasks), every method: time per
                 method

Each step writes OUT/<device>-<step>.json (e.g. h100-train.json) with the device's name, torch, CUDA and cuDNN
versions; within a step each check is added as it finishes, so a run stopped by a time limit keeps what it did.
A check that cannot run here (a CUDA-only one on the CPU) is written as skipped, with the reason. --budget
SECONDS skips what would not fit in what is left of it and says so.
"""
import argparse
import contextlib
import glob
import importlib.util
import json
import math
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import engine  # noqa: E402
from bench.embed import write_synthetic_images  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from data.synthetic import synthetic_centres, synthetic_split, write_pair  # noqa: E402
from data.tasks import TRAIN_STREAM, TaskSampler, TaskShape, to_task_batch  # noqa: E402
from data.xray_table import load_xray_table  # noqa: E402
from evaluation.meta_test import MEDSELECT, METHODS, OVERALL  # noqa: E402
from models.classifier import MeanSimilarityClassifier  # noqa: E402
from models import checkpoint as checkpoints  # noqa: E402
from models.lstm_selector import LSTMSelector, initial_selector  # noqa: E402
from models.random_weights import moco_checkpoint  # noqa: E402
from utils.atomic import atomic_write_json  # noqa: E402
from utils.config import apply_overrides, default_config  # noqa: E402
from utils.device import resolve_device, set_fp32_arithmetic  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logs import LOGGER_NAME  # noqa: E402

# The tests that run on the chosen device in step 1 (they need no optional encoder library).
DEVICE_TESTS = ["tests/test_device.py", "tests/test_device_runs.py", "tests/test_sampling.py",
                "tests/test_run_selector.py", "tests/test_evaluate.py", "tests/test_classifier.py",
                "tests/test_learning.py", "tests/test_validation_metrics.py", "tests/test_metrics.py",
                "tests/test_embed_decoder.py", "tests/test_bit_depth.py", "tests/test_select_xrays.py"]
SMOKE_TESTS = ["tests/test_device.py"]
TARGET_TRAIN_S = 120  # the full default meta-training on one H100
TARGET_IMAGES_PER_S = 2000
AUROC_TOLERANCE = 0.01  # meta-val AUROCs of the same seed on two devices (their random streams differ)
COSINE_FLOOR = 0.999  # --decoder torchvision against pil, as docs/embedding.md promises

# Sizes of the full check and of --smoke. "tiny" is the selector that step 2 trains on both devices.
FULL = SimpleNamespace(
    tests=DEVICE_TESTS, tests_cap_s=150,
    train_rows=(60000, 20000), val_rows=(15000, 5000), test_rows=(15000, 5000), dim=512, train_settings=[],
    tiny_rows=(3000, 1000), tiny_dim=64,
    tiny_settings=["UNLABELED_POOL_SIZE=100", "QUERY_SET_SIZE=20", "K=10", "BATCH_SIZE=16",
                   "NUM_META_TRAIN_TASKS=960", "NUM_EPOCHS=2", "NUM_META_TEST_TASKS=128"],
    tiny_interrupt_step=70, images=5000, unique_images=1000, torchrun_images=64, eval_tasks=1000,
    eval_settings=[], bootstrap=1000, tf32_shape=(16, 1000, 512),
    estimates={"tests": 150, "correctness": 60, "embed": 120, "evaluate": 120})
SMOKE = SimpleNamespace(
    tests=SMOKE_TESTS, tests_cap_s=120,
    train_rows=(400, 150), val_rows=(200, 80), test_rows=(300, 100), dim=16,
    train_settings=["UNLABELED_POOL_SIZE=20", "QUERY_SET_SIZE=10", "K=4", "BATCH_SIZE=4",
                    "NUM_META_TRAIN_TASKS=64", "NUM_EPOCHS=2", "NUM_META_TEST_TASKS=12"],
    tiny_rows=(160, 60), tiny_dim=8,
    tiny_settings=["UNLABELED_POOL_SIZE=20", "QUERY_SET_SIZE=10", "K=4", "BATCH_SIZE=4",
                   "NUM_META_TRAIN_TASKS=160", "NUM_EPOCHS=2", "NUM_META_TEST_TASKS=12"],
    # stop after the validation at step 30 (40 steps per epoch)
    tiny_interrupt_step=35, images=12, unique_images=12, torchrun_images=6, eval_tasks=12,
    eval_settings=["UNLABELED_POOL_SIZE=20", "QUERY_SET_SIZE=10", "K=4", "BATCH_SIZE=4"], bootstrap=100,
    tf32_shape=(2, 20, 16),
    estimates={"tests": 30, "correctness": 20, "embed": 30, "evaluate": 10})


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="device to check; default: cuda when available, else cpu")
    parser.add_argument("--out", default=None,
                        help="folder for the result files; default: $OUT when set, else bench/results/gpu")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, for the CPU (a test runs it, so that the script keeps working)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="wall time this check may take in all: a step that would not fit in what is left is "
                             "skipped (and says so); meta-training runs a measured fraction instead")
    parser.add_argument("--steps", default="tests,correctness,train,embed,evaluate",
                        help="comma-separated steps to run, in the order above")
    parser.add_argument("--skip", default="", metavar="CHECK,...",
                        help="checks not to run (written as skipped), e.g. torchrun_two_processes_vs_one")
    parser.add_argument("--work", default=None, help="folder for generated data and runs (default: a temporary one)")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    device = resolve_device(args.device or ("cpu" if args.smoke else None))
    out = args.out or os.environ.get("OUT") or os.path.join(ROOT, "bench", "results", "gpu")
    os.makedirs(out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise SystemExit(f"error: --steps: unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    context = Context(device, sizes, args.smoke, out, work, Budget(args.budget), environment(device, args, argv))
    context.skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    print(f"gpu_check: {context.environment['device_name']} ({device}), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}; results in {out}", flush=True)
    try:
        for name in steps:
            STEPS[name](context)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gpu_check: done in {context.budget.elapsed():.0f} s; files: "
          f"{', '.join(sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, context.tag + '-*.json'))))}")
    return 0


class Budget:
    """What is left of --budget (None: no limit)."""

    def __init__(self, seconds):
        self.seconds, self.started = seconds, time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.started

    def left(self):
        return math.inf if self.seconds is None else self.seconds - self.elapsed()

    def fits(self, estimate_s):
        return estimate_s <= self.left()


class Context:
    def __init__(self, device, sizes, smoke, out, work, budget, environment):
        self.device, self.sizes, self.smoke, self.out, self.work = device, sizes, smoke, out, work
        self.budget, self.environment = budget, environment
        self.tag = device_tag(environment["device_name"]) + ("-smoke" if smoke else "")
        self.cache = {}  # data and runs that several steps use, made once
        self.skip = set()  # --skip

    def other_device(self):
        """The device compared with: the CPU (itself when the checked device is the CPU)."""
        return torch.device("cpu")


def device_tag(name):
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'cpu' -> 'cpu'; else the name in lower case, non-alphanumerics as '-'."""
    match = re.search(r"\b([A-Za-z]{1,2}\d{2,4})\b", name)
    if name != "cpu" and match:
        return match.group(1).lower()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def environment(device, args, argv):
    """What every result file records about the machine."""
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torchvision": importlib.import_module("torchvision").__version__,
        "python": platform.python_version(), "cpu_cores": os.cpu_count(), "platform": platform.platform(),
        # before any command of ours sets them: what TF32 would be without utils/device.set_fp32_arithmetic
        "tf32_defaults": {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                          "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32},
        "command": "python3 bench/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "smoke": args.smoke, "budget_s": args.budget,
    }


class ResultFile:
    """OUT/<tag>-<step>.json, rewritten (atomically) each time a check of the step finishes."""

    def __init__(self, context, step):
        self.path = os.path.join(context.out, f"{context.tag}-{step}.json")
        self.data = {"step": step, "environment": context.environment, "checks": {}}
        self.context = context

    def check(self, name, function, estimate_s=0, needs_cuda=False):
        """Run ``function()`` -> dict of results (with 'status' if it judges itself); record it, or why not."""
        started = time.monotonic()
        if name in self.context.skip:
            result = {"status": "skipped", "reason": "--skip"}
        elif needs_cuda and self.context.device.type != "cuda":
            result = {"status": "skipped", "reason": "needs a CUDA device (this run is on "
                                                     f"{self.context.device})"}
        elif not self.context.budget.fits(estimate_s):
            result = {"status": "skipped", "reason": f"needs about {estimate_s:.0f} s; "
                                                     f"{max(self.context.budget.left(), 0):.0f} s of --budget left"}
        else:
            try:
                result = {"status": "ok", **function()}
            except Exception as err:  # one check failing must not stop the others
                result = {"status": "error", "error": f"{type(err).__name__}: {err}",
                          "traceback": traceback.format_exc()[-3000:]}
        result["seconds"] = round(time.monotonic() - started, 3)
        self.data["checks"][name] = result
        atomic_write_json(self.data, self.path)
        print(f"  {os.path.basename(self.path)} {name}: {result['status']} ({result['seconds']:.1f} s)"
              + (f" - {result.get('reason') or result.get('error')}" if result["status"] in ("skipped", "error")
                 else ""), flush=True)
        return result


def judged(passed, **results):
    return {"status": "passed" if passed else "failed", **results}


def run_command(script, argv):
    """``python3 SCRIPT ARGV`` run in this process (runpy), as its ``__main__`` runs: the exit code. bench/ runs
    the commands and imports none of them; in one process the interpreter starts once and the timers can wrap
    the library functions a command calls (engine.train_step, ...)."""
    saved = sys.argv
    sys.argv = [os.path.join(ROOT, script), *map(str, argv)]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
        return 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved


# --- data and runs shared by the steps ---------------------------------------------------------------------------

def write_split(folder, name, rows, dim, seed):
    """{name}_pos.csv/.hdf5 and {name}_norm.csv/.hdf5 of synthetic CheXpert-like embeddings (not real X-rays)."""
    rng = np.random.default_rng(seed)
    pos, pos_emb, norm, norm_emb = synthetic_split(rows[0], rows[1], dim, rng,
                                                   centres=synthetic_centres(dim, np.random.default_rng(99)),
                                                   noise=2.0)
    os.makedirs(folder, exist_ok=True)
    paths = os.path.join(folder, f"{name}_pos.csv"), os.path.join(folder, f"{name}_norm.csv")
    write_pair(pos, pos_emb, paths[0])
    write_pair(norm, norm_emb, paths[1])
    return paths


def tiny_data(context):
    """run_selector.py's data arguments for step 2's tiny selector."""
    if "tiny" not in context.cache:
        folder = os.path.join(context.work, "tiny")
        s = context.sizes
        train = write_split(folder, "train", s.tiny_rows, s.tiny_dim, 1)
        val = write_split(folder, "val", s.tiny_rows, s.tiny_dim, 2)
        context.cache["tiny"] = ["--train_pos_csv", train[0], "--train_norm_csv", train[1],
                                 "--val_pos_csv", val[0], "--val_norm_csv", val[1]]
    return context.cache["tiny"]


def settings(items):
    return [arg for item in items for arg in ("--set", item)]


def train_tiny(context, name, device, *extra):
    """A tiny meta-training run on ``device`` (seed 0) -> its folder."""
    out = os.path.join(context.work, "runs", name)
    code = run_command("run_selector.py", [*tiny_data(context), "--out", out, "--device", device, "--overwrite",
                                           *settings(context.sizes.tiny_settings), *extra])
    assert code == 0, f"run_selector.py returned {code}"
    return out


def metrics(out):
    return pd.read_csv(os.path.join(out, "metrics.csv"))


def evaluation(context, checkpoint, device, name, methods, *extra):
    """evaluate.py on a test split like step 2's tiny data -> results.json."""
    if "tiny_test" not in context.cache:
        context.cache["tiny_test"] = write_split(os.path.join(context.work, "tiny"), "test", context.sizes.tiny_rows,
                                                 context.sizes.tiny_dim, 3)
    test = context.cache["tiny_test"]
    out = os.path.join(context.work, "evaluations", name)
    code = run_command("evaluate.py", ["--checkpoint", checkpoint, "--test_pos_csv", test[0], "--test_norm_csv",
                                       test[1], "--out", out, "--methods", methods, "--device", device,
                                       "--conditions", "seen", "--bootstrap", "100", "--overwrite", *extra])
    assert code == 0, f"evaluate.py returned {code}"
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def mean_aurocs(results):
    """results.json -> {method: mean AUROC of the 'overall' row of the seen group}."""
    return {r["method"]: r["mean_auroc"] for r in results["results"] if r["condition"] == OVERALL
            and r["group"] == "seen"}


# --- step 1 -------------------------------------------------------------------------------------------------------

def step_tests(context):
    result = ResultFile(context, "tests")
    cap = min(context.sizes.tests_cap_s, max(context.budget.left() * 0.3, 0))
    result.check("pytest", lambda: run_tests(context, cap), estimate_s=min(30, cap) if cap > 0 else 1)


def run_tests(context, timeout_s):
    files = context.sizes.tests
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    if not context.smoke and importlib.util.find_spec("xdist") is not None:
        command[4:4] = ["-n", str(min(8, os.cpu_count() or 1))]
    env = {**os.environ, "MEDSELECT_TEST_DEVICE": context.device.type, "OMP_NUM_THREADS": "1"}
    if context.device.type == "cuda":
        env.pop("CUDA_VISIBLE_DEVICES", None)
    log_path = os.path.join(context.work, "pytest.log")
    with open(log_path, "w") as log:
        try:
            code = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            code = None
    output = open(log_path).read()
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped)", output.splitlines()[-1]
                                                        if output.strip() else "")}
    return judged(code == 0, command=" ".join(command[1:]), test_device=context.device.type, exit_code=code,
                  timed_out=code is None, timeout_s=round(timeout_s), counts=counts,
                  failures=[line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))][:40],
                  output_tail=output[-4000:])


# --- step 2 -------------------------------------------------------------------------------------------------------

def step_correctness(context):
    result = ResultFile(context, "correctness")
    estimate = context.sizes.estimates["correctness"]
    result.check("same_seed_on_both_devices", lambda: check_both_devices(context), estimate_s=estimate / 3)
    result.check("checkpoints_evaluated_on_both_devices", lambda: check_cross_evaluation(context),
                 estimate_s=estimate / 6)
    result.check("same_seed_twice", lambda: check_same_seed_twice(context), estimate_s=estimate / 6)
    result.check("syncs_per_training_step", lambda: check_syncs(context), estimate_s=5, needs_cuda=True)
    result.check("resume_across_devices", lambda: check_resume_across_devices(context), estimate_s=estimate / 3,
                 needs_cuda=True)
    result.check("tf32_logits", lambda: check_tf32(context), estimate_s=5, needs_cuda=True)


def check_both_devices(context):
    device, other = context.device, context.other_device()
    runs = {str(device): train_tiny(context, f"tiny-{device.type}", device)}
    runs[str(other)] = runs[str(device)] if other == device else train_tiny(context, f"tiny-{other.type}", other)
    context.cache["tiny_runs"] = runs
    a, b = metrics(runs[str(device)]), metrics(runs[str(other)])
    columns = ["val_auroc", "val_topk_auroc", "val_random_auroc"]
    differences = {c: float(np.max(np.abs(a[c].to_numpy() - b[c].to_numpy()))) for c in columns}
    judged_columns = ("val_auroc", "val_topk_auroc")  # the selector's; the random baseline's draws are reported
    return judged(all(differences[c] <= AUROC_TOLERANCE for c in judged_columns), devices=list(runs),
                  validations=len(a), max_abs_difference=differences, tolerance=AUROC_TOLERANCE,
                  final={d: {c: float(metrics(r)[c].iloc[-1]) for c in columns} for d, r in runs.items()},
                  note="the devices' random streams differ (CUDA and CPU generators), so the runs are not "
                       "identical; the tolerance is the issue's" if other != device else
                       "one device only: both runs are the same")


def check_cross_evaluation(context):
    """Each run's best.pt evaluated on both devices: top-K selection is deterministic, so the AUROCs agree."""
    runs = context.cache.get("tiny_runs") or {str(context.device): train_tiny(context, "tiny-x", context.device)}
    devices = [context.device] + ([context.other_device()] if context.other_device() != context.device else [])
    aurocs = {}
    for trained_on, run in runs.items():
        for device in devices:
            results = evaluation(context, os.path.join(run, "best.pt"), device, f"{trained_on}-on-{device}",
                                 "medselect-topk,random", "--selection", "topk")
            aurocs[f"trained on {trained_on}, evaluated on {device}"] = mean_aurocs(results)
    differences = {}  # of medselect-topk: deterministic given the logits ('random' is shown, not judged)
    for trained_on in runs:
        values = [aurocs[f"trained on {trained_on}, evaluated on {d}"]["medselect-topk"] for d in devices]
        differences[trained_on] = max(abs(v - values[0]) for v in values)
    return judged(all(d <= 1e-4 for d in differences.values()), mean_aurocs=aurocs,
                  max_abs_difference_between_devices=differences, tolerance=1e-4)


def check_same_seed_twice(context):
    """Two runs with the same seed on the device: identical on a CPU; on a GPU cuDNN's LSTM backward may not be."""
    first = (context.cache.get("tiny_runs") or {}).get(str(context.device)) \
        or train_tiny(context, "same-seed-1", context.device)
    second = train_tiny(context, "same-seed-2", context.device)
    a, b = metrics(first), metrics(second)
    columns = [c for c in a.select_dtypes("number").columns if c != "elapsed_s"]  # the numbers of each validation
    names = [c for c in a.columns if c not in columns and c != "elapsed_s"]  # the checkpoints each one saved
    same_checkpoints = a[names].fillna("").equals(b[names].fillna(""))
    difference = float(np.nanmax(np.abs(a[columns].to_numpy(float) - b[columns].to_numpy(float))))
    weights = [torch.load(os.path.join(run, "last.pt"), map_location="cpu", weights_only=False)["model_state_dict"]
               for run in (first, second)]
    weight_difference = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    identical = difference == 0 and weight_difference == 0 and same_checkpoints
    return judged(identical, max_abs_difference_metrics=difference, max_abs_difference_weights=weight_difference,
                  same_checkpoints_saved=same_checkpoints, identical=identical)


def check_syncs(context):
    """Device synchronisations per training step, counted by torch.cuda.set_sync_debug_mode('warn')."""
    device, s = context.device, context.sizes
    data = tiny_data(context)
    config = apply_overrides(default_config(), s.tiny_settings)
    table = load_xray_table(data[1], data[3], config["NON_HOLD_OUT"])
    sampler = TaskSampler(table, config["NON_HOLD_OUT"], TaskShape.from_config(config), 0, TRAIN_STREAM)
    table.to(device)
    selector = initial_selector(table.selector_input_size, 0).to(device)
    optimizer = torch.optim.Adam(selector.parameters(), lr=1e-4)
    classifier = MeanSimilarityClassifier("cosine")
    generators = [torch.Generator(device=device).manual_seed(i) for i in (0, 1)]
    batch, k, steps = config["BATCH_SIZE"], config["K"], 5
    batches = [to_task_batch(sampler.draw_arrays(range(i * batch, (i + 1) * batch)), device) for i in range(steps + 1)]
    engine.train_step(selector, optimizer, classifier, table, batches[0], k, *generators)  # warm-up: allocations
    torch.cuda.synchronize(device)
    places = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for tasks in batches[1:]:
                engine.train_step(selector, optimizer, classifier, table, tasks, k, *generators)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    for w in syncs:
        place = f"{os.path.relpath(w.filename, ROOT)}:{w.lineno}"
        places[place] = places.get(place, 0) + 1
    per_step = len(syncs) / steps
    return judged(per_step <= 1, syncs_per_step=per_step, steps=steps, where=places,
                  expected="1 per step: the stats read at the end of engine.train_step")


def check_resume_across_devices(context):
    """A run stopped on one device resumes on the other (CPU <-> GPU) and finishes."""
    outcomes = {}
    directions = {(context.device.type, "cpu"): (context.device, torch.device("cpu")),
                  ("cpu", context.device.type): (torch.device("cpu"), context.device)}  # one on a CPU-only run
    for first, second in directions.values():
        name = f"resume-{first.type}-to-{second.type}"
        out = os.path.join(context.work, "runs", name)
        with stopped_at_step(context.sizes.tiny_interrupt_step):
            stopped = run_command("run_selector.py", [*tiny_data(context), "--out", out, "--device", first,
                                                      "--overwrite", *settings(context.sizes.tiny_settings)])
        code = run_command("run_selector.py", [*tiny_data(context), "--out", out, "--device", second, "--resume",
                                               os.path.join(out, "last.pt")])
        log = open(os.path.join(out, "train.log")).read()
        outcomes[name] = {"stopped_exit_code": stopped, "exit_code": code, "rows": len(metrics(out)),
                          "note": next((line for line in log.splitlines() if "random state of a" in line), None)}
    return judged(all(o["exit_code"] == 0 and o["note"] for o in outcomes.values()), runs=outcomes)


@contextlib.contextmanager
def stopped_at_step(step):
    """run_selector.py's training stops with Ctrl-C at its ``step``-th step (after a last.pt was written)."""
    real, calls = engine.train_step, [0]

    def stopping(*args, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    engine.train_step = stopping  # what the command's 'from engine import train_step' takes
    try:
        yield
    finally:
        engine.train_step = real


def check_tf32(context):
    """The BiLSTM's logits with TF32 allowed and with fp32 (set_fp32_arithmetic), against float64 on the CPU."""
    device = context.device
    batch, pool, dim = context.sizes.tf32_shape
    torch.manual_seed(0)
    selector = LSTMSelector(dim).eval()
    x = torch.randn(batch, pool, dim)
    with torch.no_grad():
        reference = selector.double()(x.double())
        selector.float()
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
            tf32 = selector.to(device)(x.to(device)).double().cpu()
            set_fp32_arithmetic(device)
            flags_after = [torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32]
            fp32 = selector(x.to(device)).double().cpu()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    errors = {"tf32": float((tf32 - reference).abs().max()), "fp32": float((fp32 - reference).abs().max())}
    return judged(not any(flags_after) and errors["fp32"] <= errors["tf32"], shape=[batch, pool, dim],
                  max_abs_error_vs_float64=errors, tf32_flags_after_set_fp32_arithmetic=flags_after)


# --- step 3 -------------------------------------------------------------------------------------------------------

def step_train(context):
    # its estimate is that of the smallest fraction: the data, the BiLSTM timed alone and one validation interval
    ResultFile(context, "train").check("default_meta_training", lambda: run_default_training(context),
                                       estimate_s=5 if context.smoke else 40)


def plan_training(config, step_s, validation_s, setup_s, left_s):
    """(NUM_META_TRAIN_TASKS, NUM_EPOCHS) to run in ``left_s``: the whole run when its estimate fits, else one
    epoch of as many steps as fit (a multiple of the validation interval, at least one interval)."""
    steps_per_epoch = math.ceil(config["NUM_META_TRAIN_TASKS"] / config["BATCH_SIZE"])
    validations = engine.validation_count(steps_per_epoch, config["NUM_EPOCHS"])
    estimate = setup_s + steps_per_epoch * config["NUM_EPOCHS"] * step_s + validations * validation_s
    if estimate <= left_s:
        return config["NUM_META_TRAIN_TASKS"], config["NUM_EPOCHS"], estimate
    interval = engine.VALIDATE_EVERY
    per_interval = interval * step_s + validation_s
    intervals = max(1, int((left_s - setup_s) // per_interval))
    steps = min(intervals * interval, steps_per_epoch)
    return min(steps * config["BATCH_SIZE"], config["NUM_META_TRAIN_TASKS"]), 1, estimate


def run_default_training(context):
    s, device = context.sizes, context.device
    folder = os.path.join(context.work, "big")
    started = time.monotonic()
    train = write_split(folder, "train", s.train_rows, s.dim, 1)
    val = write_split(folder, "val", s.val_rows, s.dim, 2)
    data_s = time.monotonic() - started
    config = apply_overrides(default_config(), s.train_settings)
    pool, batch = config["UNLABELED_POOL_SIZE"], config["BATCH_SIZE"]

    # The BiLSTM alone, at the run's shapes: what a step cannot go below.
    selector = LSTMSelector(s.dim).to(device)
    set_fp32_arithmetic(device)
    pools = torch.randn(batch, pool, s.dim, device=device)

    def forward_backward():
        selector.zero_grad(set_to_none=True)
        selector(pools).sum().backward()

    def forward():
        with torch.no_grad():
            selector(pools)
    lstm_ms = median_ms(forward_backward, 3, device)
    lstm_forward_ms = median_ms(forward, 3, device)
    del selector, pools
    validation_batches = math.ceil(config["NUM_META_TEST_TASKS"] / batch)
    step_estimate = 1.5 * lstm_ms / 1000 + 0.02
    validation_estimate = validation_batches * (2 * lstm_forward_ms / 1000 + 0.01)
    tasks, epochs, estimate = plan_training(config, step_estimate, validation_estimate, 20,
                                            context.budget.left() - 5)
    fraction = (tasks, epochs) != (config["NUM_META_TRAIN_TASKS"], config["NUM_EPOCHS"])

    timings = {"train_step": [], "validation": [], "random_baseline": [], "checkpoint_write": []}
    out = os.path.join(context.work, "runs", "default")
    argv = ["--train_pos_csv", train[0], "--train_norm_csv", train[1], "--val_pos_csv", val[0],
            "--val_norm_csv", val[1], "--out", out, "--device", str(device), "--overwrite",
            *settings(s.train_settings + ([f"NUM_META_TRAIN_TASKS={tasks}", f"NUM_EPOCHS={epochs}"] if fraction
                                          else []))]
    with timed(engine, "train_step", timings["train_step"]), \
            timed(engine, "evaluate_selector", timings["validation"]), \
            timed(engine, "evaluate_random_selection", timings["random_baseline"]), \
            timed(checkpoints, "save_checkpoint", timings["checkpoint_write"]):
        started = time.monotonic()
        code = run_command("run_selector.py", argv)
        wall_s = time.monotonic() - started
    assert code == 0, f"run_selector.py returned {code}"
    context.cache["default_run"] = out
    steps, validations = len(timings["train_step"]), len(timings["validation"])
    step_s, checkpoint_s = sum(timings["train_step"]), sum(timings["checkpoint_write"])
    validation_s = sum(timings["validation"]) + sum(timings["random_baseline"])  # the baseline: first one only
    parts = {"BiLSTM forward + backward (timed alone, x steps)": steps * lstm_ms / 1000,
             "rest of the training steps": step_s - steps * lstm_ms / 1000,
             "meta-validation (selector and random baseline)": validation_s,
             "checkpoint writes (last.pt and the best ones)": checkpoint_s,
             "the rest (reading data, drawing validation tasks, metrics.csv, set-up)":
                 wall_s - step_s - validation_s - checkpoint_s}
    full_steps = math.ceil(config["NUM_META_TRAIN_TASKS"] / batch) * config["NUM_EPOCHS"]
    full_validations = engine.validation_count(math.ceil(config["NUM_META_TRAIN_TASKS"] / batch), config["NUM_EPOCHS"])
    setup_s = parts["the rest (reading data, drawing validation tasks, metrics.csv, set-up)"]
    full_s = setup_s + full_steps * step_s / steps + full_validations * (validation_s + checkpoint_s) / validations
    return judged(full_s <= TARGET_TRAIN_S, wall_s=wall_s, full_run_s=full_s,
                  full_run_is="measured" if not fraction else
                  f"extrapolated from {steps} of {full_steps} steps and {validations} of {full_validations} "
                  "validations (the full run would not fit the --budget)",
                  target_s=TARGET_TRAIN_S, steps=steps, validations=validations,
                  ms_per_step=1000 * step_s / steps, s_per_validation=validation_s / validations,
                  s_per_checkpoint_write=checkpoint_s / max(len(timings["checkpoint_write"]), 1),
                  parts_s=parts, lstm_forward_backward_ms=lstm_ms, lstm_forward_ms=lstm_forward_ms,
                  estimated_before_s=estimate, data_generation_s=data_s,
                  shapes={"train_rows": list(s.train_rows), "val_rows": list(s.val_rows), "dim": s.dim,
                          **{k: config[k] for k in ("NUM_META_TRAIN_TASKS", "NUM_EPOCHS", "BATCH_SIZE",
                                                    "UNLABELED_POOL_SIZE", "QUERY_SET_SIZE", "K",
                                                    "NUM_META_TEST_TASKS")}})


@contextlib.contextmanager
def timed(owner, name, seconds):
    """Time every call of ``owner.name`` (a function or method) into the list ``seconds``, synchronising CUDA."""
    real = getattr(owner, name)

    def timing(*args, **kwargs):
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
    setattr(owner, name, timing)
    try:
        yield
    finally:
        setattr(owner, name, real)


# --- step 4 -------------------------------------------------------------------------------------------------------

def step_embed(context):
    result = ResultFile(context, "embed")
    estimate = context.sizes.estimates["embed"]
    result.check("images_per_second", lambda: check_embedding_speed(context), estimate_s=estimate / 2)
    result.check("decoder_cosine", lambda: check_decoder_cosine(context), estimate_s=1)
    result.check("torchrun_one_process", lambda: check_torchrun_one(context), estimate_s=20, needs_cuda=True)
    result.check("torchrun_two_processes_vs_one", lambda: check_torchrun_two(context), estimate_s=30)


def images(context):
    if "images" not in context.cache:
        folder = os.path.join(context.work, "images")
        os.makedirs(folder, exist_ok=True)
        csv = write_synthetic_images(SimpleNamespace(full_size=False, num_images=context.sizes.images,
                                                     unique=context.sizes.unique_images), folder)
        checkpoint = os.path.join(folder, "moco_random_resnet18.pth.tar")
        torch.save(moco_checkpoint("resnet18", "mlp", queue_length=1024, share_momentum_encoder=True), checkpoint)
        context.cache["images"] = (csv, folder, checkpoint)
    return context.cache["images"]


class LogLines:
    """Collects the 'medselect' logger's messages while it is installed (a filter survives setup_logging)."""

    def __init__(self):
        self.lines = []

    def filter(self, record):
        self.lines.append(record.getMessage())
        return True


def embed(context, csv, root, checkpoint, output, decoder, device, workers):
    import logging
    lines = LogLines()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addFilter(lines)
    try:
        started = time.monotonic()
        code = run_command("xray_to_hdf5.py", ["-d", csv, "-o", output, "-c", checkpoint, "--root", root,
                                               "--decoder", decoder, "--device", device, "--num_workers", workers,
                                               "--overwrite"])
        wall_s = time.monotonic() - started
    finally:
        logger.removeFilter(lines)
    assert code == 0, f"xray_to_hdf5.py returned {code}"
    logged = next((float(m) for line in lines.lines for m in re.findall(r"([\d.]+) images/s", line)), None)
    return {"images_per_s": logged, "wall_s": wall_s}


def check_embedding_speed(context):
    csv, root, checkpoint = images(context)
    workers = os.cpu_count() or 1
    speeds = {}
    for decoder in ("pil", "torchvision"):
        output = os.path.join(context.work, f"embedded_{decoder}.hdf5")
        speeds[decoder] = embed(context, csv, root, checkpoint, output, decoder, context.device, workers)
        context.cache[f"embedded_{decoder}"] = output
    best = max(v["images_per_s"] or 0 for v in speeds.values())
    return judged(best >= TARGET_IMAGES_PER_S, images=context.sizes.images,
                  distinct_files=context.sizes.unique_images, num_workers=workers, by_decoder=speeds,
                  target_images_per_s=TARGET_IMAGES_PER_S,
                  note="images/s as xray_to_hdf5.py logs it (model loading excluded); 320 x 390 grey JPEGs")


def read_embeddings(path):
    import h5py
    with h5py.File(path, "r") as f:
        return f["dataset"][:]


def check_decoder_cosine(context):
    """--decoder torchvision on the device (nvjpeg on a GPU) against pil: cosine similarity per row."""
    if "embedded_pil" not in context.cache:
        raise RuntimeError("needs the embeddings of the images_per_second check")
    pil, tv = (read_embeddings(context.cache[f"embedded_{d}"]) for d in ("pil", "torchvision"))
    cosine = (pil * tv).sum(1) / (np.linalg.norm(pil, axis=1) * np.linalg.norm(tv, axis=1))
    return judged(float(cosine.min()) >= COSINE_FLOOR, rows=len(cosine), min_cosine=float(cosine.min()),
                  mean_cosine=float(cosine.mean()), floor=COSINE_FLOOR, decoder_device=str(context.device))


def small_csv(context):
    csv, root, checkpoint = images(context)
    small = os.path.join(context.work, "images", "small.csv")
    pd.read_csv(csv).head(context.sizes.torchrun_images).to_csv(small, index=False)
    return small, root, checkpoint


def torchrun(processes, csv, root, checkpoint, output, device, timeout_s=240):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               os.path.join(ROOT, "xray_to_hdf5.py"), "-d", csv, "-o", output, "-c", checkpoint, "--root", root,
               "--num_workers", "0", "--overwrite", *(["--device", device] if device else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    return run, time.monotonic() - started


def check_torchrun_one(context):
    small, root, checkpoint = small_csv(context)
    output = os.path.join(context.work, "torchrun1.hdf5")
    run, wall_s = torchrun(1, small, root, checkpoint, output, None)
    return judged(run.returncode == 0 and os.path.exists(output), exit_code=run.returncode, wall_s=wall_s,
                  process_group="none: with one process utils/distributed.Ranks starts none (NCCL needs two "
                                "processes, and two on one GPU are refused)", stderr_tail=run.stderr[-2000:])


def check_torchrun_two(context):
    """Two processes (gloo on the CPU) write the same embeddings as one; with fewer GPUs than processes, a cuda
    launch is refused in one line (utils/device.py)."""
    small, root, checkpoint = small_csv(context)
    one = os.path.join(context.work, "one_process.hdf5")
    embed(context, small, root, checkpoint, one, "pil", torch.device("cpu"), 0)
    two = os.path.join(context.work, "torchrun2.hdf5")
    run, wall_s = torchrun(2, small, root, checkpoint, two, "cpu")
    results = {"exit_code": run.returncode, "wall_s": wall_s, "rows": context.sizes.torchrun_images,
               "stderr_tail": run.stderr[-1500:]}
    same = False
    if run.returncode == 0:
        difference = float(np.abs(read_embeddings(one) - read_embeddings(two)).max())
        results["max_abs_difference_vs_one_process"] = difference
        same = difference <= 1e-5
    if context.device.type == "cuda" and torch.cuda.device_count() < 2:
        refused, _ = torchrun(2, small, root, checkpoint, os.path.join(context.work, "refused.hdf5"), "cuda")
        errors = sorted({line for line in refused.stderr.splitlines() if line.startswith("error: ")})
        results["two_processes_on_one_gpu"] = {"exit_code": refused.returncode, "error_lines": errors}
    return judged(same, **results)


# --- step 5 -------------------------------------------------------------------------------------------------------

def step_evaluate(context):
    ResultFile(context, "evaluate").check("all_methods_paper_size", lambda: run_evaluation(context),
                                          estimate_s=context.sizes.estimates["evaluate"])


def run_evaluation(context):
    s, device = context.sizes, context.device
    test = write_split(os.path.join(context.work, "big"), "test", s.test_rows, s.dim, 3)
    checkpoint = context.cache.get("default_run") and os.path.join(context.cache["default_run"], "best.pt")
    if not checkpoint or not os.path.exists(checkpoint):  # step 3 did not run: an untrained selector will do
        checkpoint = os.path.join(context.work, "untrained.pt")
        config = apply_overrides(default_config(), s.eval_settings)
        selector = initial_selector(s.dim + (3 if config["USE_ASL"] else 0), 0)
        checkpoints.save_checkpoint(checkpoint, selector, torch.optim.Adam(selector.parameters()), 0, config, seed=0)
    methods = [m for m in METHODS if m != MEDSELECT]  # 'medselect' is the --selection alias of a variant
    out = os.path.join(context.work, "evaluations", "paper-size")
    started = time.monotonic()
    code = run_command("evaluate.py", ["--checkpoint", checkpoint, "--test_pos_csv", test[0], "--test_norm_csv",
                                       test[1], "--out", out, "--methods", ",".join(methods), "--device", device,
                                       "--conditions", "seen", "--num_tasks", s.eval_tasks, "--bootstrap",
                                       s.bootstrap, "--overwrite", *settings(s.eval_settings)])
    wall_s = time.monotonic() - started
    assert code == 0, f"evaluate.py returned {code}"
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    per_task = results["seconds_per_task"]
    return {"wall_s": wall_s, "tasks": s.eval_tasks, "methods": methods,
            "seconds_per_method": {m: per_task[m] * s.eval_tasks for m in methods},
            "ms_per_task": {m: 1000 * per_task[m] for m in methods}, "mean_auroc": mean_aurocs(results)}


STEPS = {"tests": step_tests, "correctness": step_correctness, "train": step_train, "embed": step_embed,
         "evaluate": step_evaluate}

if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
