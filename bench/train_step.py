"""Benchmark one meta-training step and one meta-validation, ours against the original's path, in one process.

    python3 bench/train_step.py                      # CheXpert-like sizes on the CPU
    python3 bench/train_step.py --device cuda        # the same on a GPU
    python3 bench/train_step.py --quick              # small sizes, a smoke run
    python3 bench/train_step.py --options            # one whole step per selector option, and parameter counts

Data are generated in memory (60,000 positive and 20,000 normal rows, D = 512 by
default); the original's path is re-created faithfully in bench/reference.py.
Every part is timed with a warm-up and repetitions and reported as the median;
ratios are original / ours. Results also go to bench/results/train_step.json.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.reference import (ReferenceTaskDataset, reference_aurocs, reference_collate,  # noqa: E402
                             reference_gather, reference_random_baseline, reference_sample_once,
                             reference_scores)
from bench.timing import median_ms  # noqa: E402
from data.tasks import FixedTaskSet, TaskSampler, TaskShape  # noqa: E402
from data.xray_table import XrayTable  # noqa: E402
from engine import random_selection, sample_selection, selection_auroc, train_step, validation_count  # noqa: E402
from bench.selector_option_sets import OPTION_SETS  # noqa: E402
from models.selector import build_selector, parameter_count  # noqa: E402
from utils.config import apply_overrides, default_config  # noqa: E402
from models.lstm_selector import LSTMSelector  # noqa: E402
from models.classifier import MeanSimilarityClassifier  # noqa: E402
from utils.results_fragment import run_writing_report  # noqa: E402
from constants import NUM_EPOCHS, NUM_META_TRAIN_TASKS  # noqa: E402

CONDITIONS = ["Consolidation", "Lung Opacity", "Pleural Effusion", "Pneumothorax",
              "Enlarged Cardiomediastinum", "Cardiomegaly"]


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positives", type=int, default=60000, help="rows of the positive CSV (default 60000)")
    parser.add_argument("--normals", type=int, default=20000, help="rows of the normal CSV (default 20000)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size (default 512)")
    parser.add_argument("--batch", type=int, default=64, help="tasks per step (default 64)")
    parser.add_argument("--pool", type=int, default=1000, help="pool size (default 1000)")
    parser.add_argument("--query", type=int, default=100, help="query-set size (default 100)")
    parser.add_argument("--k", type=int, default=20, help="selected X-rays (default 20)")
    parser.add_argument("--val_tasks", type=int, default=1000, help="meta-validation tasks (default 1000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per part (default 7)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--skip_lstm", action="store_true", help="do not time the BiLSTM forward/backward")
    parser.add_argument("--skip_memory", action="store_true", help="do not measure peak memory")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats: a smoke run")
    parser.add_argument("--options", action="store_true",
                        help="time one whole REINFORCE step (selector forward and backward, draws, rewards, update) "
                             "for the paper's selector and each selector option (docs/training.md#selector-options), "
                             "with their parameter counts, instead of the comparison with the original; results in "
                             "bench/results/train_step_options.json and docs/results/selector_step.md")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "train_step.json"),
                        help="JSON file for the results (default bench/results/train_step.json)")
    parser.add_argument("--docs_fragment", metavar="FILE",
                        help="also write the printed report as a docs fragment (docs/results/train_step.md for "
                             "docs/performance.md; then make docs-numbers). Default: none")
    return parser


def make_frames(num_positive, num_normal, rng):
    """CSV frames with condition columns (1.0 positive, NaN otherwise), as the original read them."""
    labels = rng.random((num_positive, len(CONDITIONS))) < 0.3
    positive = pd.DataFrame({"Path": [f"p{i}.jpg" for i in range(num_positive)]})
    for j, condition in enumerate(CONDITIONS):
        positive[condition] = np.where(labels[:, j], 1.0, np.nan)
    normal = pd.DataFrame({"Path": [f"n{i}.jpg" for i in range(num_normal)]})
    return positive, normal


def make_table(positive_frame, positive_emb, normal_emb):
    embeddings = torch.from_numpy(np.concatenate([positive_emb, normal_emb]))
    positive_rows = {c: np.flatnonzero(positive_frame[c].to_numpy() == 1.0) for c in CONDITIONS}
    return XrayTable(embeddings, None, positive_rows, {c: 0 for c in CONDITIONS}, len(positive_emb),
                     len(normal_emb), "positives.csv", "normals.csv")


class OursStep:
    """The parts of our training step outside the selector, on ``device``."""

    def __init__(self, table, shape, args, device):
        self.table, self.args, self.device = table, args, device
        self.sampler = TaskSampler(table, CONDITIONS, shape, seed=0, stream=0)
        self.classifier = MeanSimilarityClassifier()
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.tasks = self.draw()
        self.logits = torch.randn(args.batch, args.pool, device=device, requires_grad=True)

    def draw(self):
        return self.sampler.draw(range(self.args.batch), self.device)

    def gather(self):
        return self.table.selector_input(self.tasks.pool_rows, reuse_buffer=True)

    def select(self):
        return sample_selection(self.logits, self.args.k, self.generator)

    def reward(self, selection):
        return selection_auroc(self.table, self.tasks, selection, self.classifier)

    def baseline(self):
        selection = random_selection(self.args.batch, self.args.pool, self.args.k, self.generator, self.device)
        return selection_auroc(self.table, self.tasks, selection, self.classifier)


def time_step_parts(args, positive_frame, normal_frame, positive_emb, normal_emb, table, shape):
    repeats, device = args.repeats, args.device
    reference = ReferenceTaskDataset(positive_frame, normal_frame, positive_emb, normal_emb, args.pool, 0.5,
                                     args.query, 0.5, CONDITIONS)
    task_list = [reference[i] for i in range(args.batch)]
    batch = reference_collate(task_list)
    logits = torch.randn(args.batch, args.pool)
    idx, _ = reference_sample_once(logits, args.k)
    selected, selected_labels = reference_gather(batch["pool"], batch["pool_labels"], idx)

    def original_select():
        i, _ = reference_sample_once(logits, args.k)
        return reference_gather(batch["pool"], batch["pool_labels"], i)

    original = {
        "draw tasks": median_ms(lambda: [reference[i] for i in range(args.batch)], max(3, repeats // 2), "cpu"),
        "collate / gather pool": median_ms(lambda: reference_collate(task_list), repeats, "cpu"),
        "selection (multinomial + index loops)": median_ms(original_select, repeats, "cpu"),
        "reward (classifier + AUROC)": median_ms(lambda: reference_aurocs(
            batch["query_labels"], reference_scores(selected, selected_labels, batch["query"])), repeats, "cpu"),
        "random baseline": median_ms(lambda: reference_random_baseline(batch, args.k, args.pool), repeats, "cpu"),
    }
    table.to(device)
    ours_step = OursStep(table, shape, args, device)
    selection, _ = ours_step.select()
    ours = {
        "draw tasks": median_ms(ours_step.draw, repeats, device),
        "collate / gather pool": median_ms(ours_step.gather, repeats, device),
        "selection (multinomial + index loops)": median_ms(ours_step.select, repeats, device),
        "reward (classifier + AUROC)": median_ms(lambda: ours_step.reward(selection), repeats, device),
        "random baseline": median_ms(ours_step.baseline, repeats, device),
    }
    lstm_ms = lstm_forward_ms = None
    if not args.skip_lstm:
        selector = LSTMSelector(args.dim).to(device)
        pool_input = ours_step.gather()

        def lstm_forward_backward():
            selector.zero_grad(set_to_none=True)
            selector(pool_input).sum().backward()

        def lstm_forward():  # what meta-validation runs per batch
            with torch.no_grad():
                selector(pool_input)
        lstm_ms = median_ms(lstm_forward_backward, max(2, repeats // 3), device)
        lstm_forward_ms = median_ms(lstm_forward, max(2, repeats // 3), device)
    return original, ours, lstm_ms, lstm_forward_ms


def default_training_hours(args, step_ms, validation_ms):
    """Hours of the default meta-training (constants.py's epochs and tasks, run_selector.py's validation
    schedule) at the measured step time and time per meta-validation: (steps, validations, hours)."""
    steps_per_epoch = math.ceil(NUM_META_TRAIN_TASKS / args.batch)
    validations = validation_count(steps_per_epoch, NUM_EPOCHS)
    steps = NUM_EPOCHS * steps_per_epoch
    return steps, validations, (steps * step_ms + validations * validation_ms) / 3.6e6


def time_draw_scaling(args, rng):
    """Ours at 20,000 and 200,000 rows per CSV (and the original at 2,000 and 20,000)."""
    shape = TaskShape(args.pool, math.ceil(args.pool / 2), args.query, math.ceil(args.query / 2))
    sizes = (2000, 20000) if args.quick else (20000, 200000)
    ours, original = {}, {}
    for rows in sizes:
        positive, normal = make_frames(rows, rows, rng)
        dim = 4  # drawing a task touches row numbers only; the embedding size does not matter here
        embeddings = np.zeros((rows, dim), np.float32)
        table = make_table(positive, embeddings, embeddings)
        sampler = TaskSampler(table, CONDITIONS, shape, seed=0, stream=0)
        ours[rows] = median_ms(lambda: sampler.draw_arrays(range(args.batch)), args.repeats, "cpu")
        reference = ReferenceTaskDataset(positive, normal, embeddings, embeddings, args.pool, 0.5, args.query, 0.5,
                                         CONDITIONS)
        original_rows = rows // 10
        if original_rows >= shape.positives_needed * 4:
            positive_small, normal_small = make_frames(original_rows, original_rows, rng)
            reference = ReferenceTaskDataset(positive_small, normal_small, embeddings[:original_rows],
                                             embeddings[:original_rows], args.pool, 0.5, args.query, 0.5, CONDITIONS)
            original[original_rows] = median_ms(lambda: [reference[i] for i in range(args.batch)], 3, "cpu")
    return ours, original


def time_validation(args, positive_frame, normal_frame, positive_emb, normal_emb, table, shape):
    """Meta-validation over ``val_tasks`` tasks, everything but the BiLSTM (random logits stand in for it)."""
    device = args.device
    sampler = TaskSampler(table, CONDITIONS, shape, seed=0, stream=1)
    start = time.perf_counter()
    task_set = FixedTaskSet(sampler, args.val_tasks)
    draw_once_ms = (time.perf_counter() - start) * 1000
    classifier = MeanSimilarityClassifier()

    def ours():
        generator = torch.Generator(device=device).manual_seed(0)
        for tasks in task_set.batches(args.batch, device):
            table.selector_input(tasks.pool_rows, reuse_buffer=True)
            logits = torch.randn(len(tasks), args.pool, device=device)
            selection, _ = sample_selection(logits, args.k, generator)
            selection_auroc(table, tasks, selection, classifier)

    reference = ReferenceTaskDataset(positive_frame, normal_frame, positive_emb, normal_emb, args.pool, 0.5,
                                     args.query, 0.5, CONDITIONS)

    def original():
        for start in range(0, args.val_tasks, args.batch):
            batch = reference_collate([reference[i] for i in range(start, min(start + args.batch, args.val_tasks))])
            idx, _ = reference_sample_once(torch.randn(len(batch["cond"]), args.pool), args.k)
            selected, labels = reference_gather(batch["pool"], batch["pool_labels"], idx)
            reference_aurocs(batch["query_labels"], reference_scores(selected, labels, batch["query"]))

    ours_ms = median_ms(ours, max(3, args.repeats // 2), device)
    original_ms = median_ms(original, 1, "cpu", warmup=0)
    return {"ours_ms": ours_ms, "original_ms": original_ms, "ours_draw_once_ms": draw_once_ms}


MEMORY_PROBE = r"""
import os, sys, tempfile, h5py, numpy as np, pandas as pd
sys.path.insert(0, {root!r})
import torch
from data.xray_table import load_xray_table
from data.tasks import FixedTaskSet, TaskSampler, TaskShape
def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
folder = sys.argv[1]
before = peak_kib()
conditions = {conditions!r}
train = load_xray_table(os.path.join(folder, "train_pos.csv"), os.path.join(folder, "train_norm.csv"), conditions)
val = load_xray_table(os.path.join(folder, "val_pos.csv"), os.path.join(folder, "val_norm.csv"), conditions)
shape = TaskShape({pool}, {pool} // 2, {query}, {query} // 2)
val_tasks = FixedTaskSet(TaskSampler(val, conditions, shape, 0, 1), {val_tasks})
sampler = TaskSampler(train, conditions, shape, 0, 0)
batches = [sampler.draw(range(i * {batch}, (i + 1) * {batch})) for i in range(3)]
after_tasks = peak_kib()
for tasks in batches:
    train.selector_input(tasks.pool_rows, reuse_buffer=True)
after_gather = peak_kib()
data_bytes = train.embeddings.numel() * 4 + val.embeddings.numel() * 4
print((after_tasks - before) * 1024, (after_gather - before) * 1024, data_bytes)
"""


def measure_memory(args, rng):
    """Peak resident memory added by loading train + val data and drawing batches, in a fresh process."""
    import tempfile
    from data.synthetic import write_pair
    folder = tempfile.mkdtemp(prefix="medselect_bench_")
    val_positive, val_normal = args.positives // 4, args.normals // 4
    for split, (num_positive, num_normal) in (("train", (args.positives, args.normals)),
                                              ("val", (val_positive, val_normal))):
        positive, normal = make_frames(num_positive, num_normal, rng)
        write_pair(positive, rng.normal(size=(num_positive, args.dim)).astype(np.float32),
                   os.path.join(folder, f"{split}_pos.csv"))
        write_pair(normal, rng.normal(size=(num_normal, args.dim)).astype(np.float32),
                   os.path.join(folder, f"{split}_norm.csv"))
    code = MEMORY_PROBE.format(root=ROOT, conditions=CONDITIONS, pool=args.pool, query=args.query,
                               val_tasks=args.val_tasks, batch=args.batch)
    result = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe failed:\n{result.stderr}")
    peak_tasks, peak_gather, data_bytes = map(int, result.stdout.split())
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)
    return {"peak_added_by_data_and_tasks_bytes": peak_tasks, "peak_added_with_lstm_input_bytes": peak_gather,
            "embedding_bytes": data_bytes}


def time_options(args, table, shape):
    """{option set: {'settings', 'parameters', 'step_ms'}}: one whole train_step of each OPTION_SETS entry."""
    sampler = TaskSampler(table, CONDITIONS, shape, seed=0, stream=0)
    tasks = sampler.draw(range(args.batch), args.device)
    classifier = MeanSimilarityClassifier()
    results = {}
    for name, settings in OPTION_SETS.items():
        config = apply_overrides(default_config(), settings)
        selector = build_selector(config, args.dim, seed=0).to(args.device)
        optimizer = torch.optim.Adam(selector.parameters(), lr=config["LEARNING_RATE"])
        generators = [torch.Generator(device=args.device).manual_seed(i) for i in range(2)]

        def step():
            train_step(selector, optimizer, classifier, table, tasks, args.k, *generators, policy=config["POLICY"],
                       samples_per_task=config["SAMPLES_PER_TASK"], reward_baseline=config["REWARD_BASELINE"])
        results[name] = {"settings": settings, "parameters": parameter_count(selector),
                         "step_ms": median_ms(step, args.repeats, args.device)}
    return results


def options_markdown(results, args, machine):
    command = "python3 bench/train_step.py --options " + " ".join(
        f"--{name} {getattr(args, name)}" for name in ("batch", "pool", "dim", "k", "repeats", "positives", "normals"))
    lines = [f"<!-- made by: {command}; machine: {machine} -->",
             f"One REINFORCE step (batch {args.batch} tasks, pool {args.pool}, D={args.dim}, K={args.k}; median "
             f"of {args.repeats}) on {args.device}:", "",
             "| selector | settings (--set) | parameters | step (ms) | vs the paper's |",
             "| --- | --- | ---: | ---: | ---: |"]
    paper_ms = next(iter(results.values()))["step_ms"]
    for name, result in results.items():
        lines.append(f"| {name} | {' '.join(result['settings']) or '(defaults)'} | {result['parameters']:,} | "
                     f"{result['step_ms']:.0f} | {result['step_ms'] / paper_ms:.2f}x |")
    return "\n".join(lines) + "\n"


def main_options(args):
    machine = f"{os.cpu_count()}-core CPU" if args.device == "cpu" else torch.cuda.get_device_name()
    print(f"machine: {machine}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    rng = np.random.default_rng(0)
    positive_frame, normal_frame = make_frames(args.positives, args.normals, rng)
    table = make_table(positive_frame, rng.normal(size=(args.positives, args.dim)).astype(np.float32),
                       rng.normal(size=(args.normals, args.dim)).astype(np.float32)).to(args.device)
    shape = TaskShape(args.pool, math.ceil(args.pool / 2), args.query, math.ceil(args.query / 2))
    results = time_options(args, table, shape)
    markdown = options_markdown(results, args, machine)
    print(markdown)
    out = os.path.join(os.path.dirname(args.out), "train_step_options.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=2)
    fragment = os.path.join(ROOT, "docs", "results", "selector_step.md")
    os.makedirs(os.path.dirname(fragment), exist_ok=True)
    with open(fragment, "w") as f:
        f.write(markdown)
    print(f"results saved to {out} and {fragment}")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.options:
        return main_options(args)
    if args.quick:
        args.positives, args.normals, args.val_tasks, args.repeats = 12000, 6000, 128, 3
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print(f"data: {args.positives} positive + {args.normals} normal rows, D={args.dim}; batch {args.batch}, "
          f"pool {args.pool}, query {args.query}, K {args.k}; medians of {args.repeats} repetitions\n")
    positive_frame, normal_frame = make_frames(args.positives, args.normals, rng)
    positive_emb = rng.normal(size=(args.positives, args.dim)).astype(np.float32)
    normal_emb = rng.normal(size=(args.normals, args.dim)).astype(np.float32)
    table = make_table(positive_frame, positive_emb, normal_emb)
    shape = TaskShape(args.pool, math.ceil(args.pool / 2), args.query, math.ceil(args.query / 2))

    original, ours, lstm_ms, lstm_forward_ms = time_step_parts(args, positive_frame, normal_frame, positive_emb,
                                                               normal_emb, table, shape)
    print("| part of one training step | original (ms) | ours (ms) | original / ours |")
    print("| --- | ---: | ---: | ---: |")
    for part in original:
        print(f"| {part} | {original[part]:.1f} | {ours[part]:.2f} | {original[part] / ours[part]:.0f}x |")
    total_original, total_ours = sum(original.values()), sum(ours.values())
    print(f"| **everything but the BiLSTM** | **{total_original:.1f}** | **{total_ours:.2f}** | "
          f"**{total_original / total_ours:.0f}x** |")
    if lstm_ms is not None:
        print(f"| BiLSTM forward + backward (the method's own cost, same in both) | {lstm_ms:.0f} | {lstm_ms:.0f} | |")
        print(f"\nours outside the BiLSTM: {100 * total_ours / (total_ours + lstm_ms):.1f} % of the step")

    scaling_ours, scaling_original = time_draw_scaling(args, rng)
    (small, ms_small), (large, ms_large) = scaling_ours.items()
    print(f"\ndrawing {args.batch} tasks, ours: {ms_small:.2f} ms at {small} rows per CSV, {ms_large:.2f} ms at "
          f"{large} rows ({ms_large / ms_small:.2f}x for {large // small}x the rows)")
    for rows, ms in scaling_original.items():
        print(f"drawing {args.batch} tasks, original: {ms:.0f} ms at {rows} rows per CSV")

    validation = time_validation(args, positive_frame, normal_frame, positive_emb, normal_emb, table, shape)
    print(f"\nmeta-validation over {args.val_tasks} tasks, everything but the BiLSTM: original "
          f"{validation['original_ms'] / 1000:.2f} s, ours {validation['ours_ms'] / 1000:.3f} s "
          f"({validation['original_ms'] / validation['ours_ms']:.0f}x); ours draws the fixed task set once per run "
          f"in {validation['ours_draw_once_ms'] / 1000:.2f} s")

    if lstm_ms is not None:
        validation_ms = validation["ours_ms"] + math.ceil(args.val_tasks / args.batch) * lstm_forward_ms
        steps, validations, hours = default_training_hours(args, total_ours + lstm_ms, validation_ms)
        print(f"\nthe default meta-training at these times: {steps} steps of {args.batch} tasks "
              f"({(total_ours + lstm_ms) / 1000:.2f} s each) and {validations} meta-validations on {args.val_tasks} "
              f"tasks ({validation_ms / 1000:.1f} s each, the BiLSTM forward {lstm_forward_ms:.0f} ms per batch): "
              f"about {hours:.1f} hours" + ("" if (args.pool, args.query, args.k, args.dim) == (1000, 100, 20, 512)
                                              else " (at this bench's shapes, not the paper's)"))

    memory = None
    if not args.skip_memory:
        memory = measure_memory(args, rng)
        embedding_mib = memory["embedding_bytes"] / 2**20
        tasks_mib = memory["peak_added_by_data_and_tasks_bytes"] / 2**20
        gather_mib = memory["peak_added_with_lstm_input_bytes"] / 2**20
        print(f"\npeak memory added by loading train + val data ({embedding_mib:.0f} MiB of embeddings), the "
              f"validation task set and 3 training batches of tasks: {tasks_mib:.0f} MiB "
              f"({tasks_mib / embedding_mib:.2f}x the embeddings); with the BiLSTM's input batch gathered as well: "
              f"{gather_mib:.0f} MiB ({gather_mib / embedding_mib:.2f}x)")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "original_ms": original, "ours_ms": ours, "lstm_ms": lstm_ms,
                   "lstm_forward_ms": lstm_forward_ms,
                   "draw_scaling_ours_ms": scaling_ours, "draw_scaling_original_ms": scaling_original,
                   "validation": validation, "memory": memory}, f, indent=2)
    print(f"\nresults saved to {args.out}")


def main_writing_fragment(argv=None):
    """main(), and with --docs_fragment its printed report (from the table on) as a docs fragment."""
    args = get_args_parser().parse_args(argv)
    run_writing_report(main, argv, args.docs_fragment, "bench/train_step.py", args.device,
                       first="| part of one training step", last="\nresults saved")


if __name__ == "__main__":
    main_writing_fragment()
