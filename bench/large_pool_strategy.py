"""Which strategy should select_xrays.py use for a pool larger than the selector's training pools?

    .venv/bin/python bench/large_pool_strategy.py                     # train a small selector, then compare
    .venv/bin/python bench/large_pool_strategy.py --checkpoint CKPT   # compare with an existing selector

On SYNTHETIC data (data/synthetic.py; not X-rays) a small selector is meta-trained
in a few CPU minutes (pools of 100, K = 10; --train_set to change) unless
--checkpoint is given.
Then, on held-out meta-test tasks (test split, data/tasks.py TEST_STREAM, all
eight conditions) whose pools hold 1x, 5x and 10x the trained pool size, it
compares the strategies of medselect/selection.py, each with the 'topk' and the
'sample' selection of select_xrays.py:

* chunks: the shuffled pool split into near-equal chunks of at most the trained
  size, each picking a share of the K proportional to its size;
* whole:  the BiLSTM reads the whole pool as one sequence;

with random and k-medoids (the paper's and FasterPAM) selections as references,
by mean query AUROC over identical deterministic tasks (same pools, same query
sets, same reading order for both strategies), with 95% bootstrap CIs and paired
differences (utils/stats.py, as evaluate.py). Results: --out/results.md and results.json.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import constants  # noqa: E402
from data.synthetic import write_synthetic_dataset  # noqa: E402
from data.tasks import TEST_STREAM, FixedTaskSet, TaskSampler, TaskShape  # noqa: E402
from data.xray_table import load_xray_table  # noqa: E402
from engine import selection_auroc  # noqa: E402
from medselect.selection import choose_with_selector  # noqa: E402
from models.baselines import select_baseline  # noqa: E402
from models.checkpoint import (LAST_CHECKPOINT, checkpoint_config, load_checkpoint,  # noqa: E402
                               selector_from_checkpoint)
from models.classifier import MeanSimilarityClassifier  # noqa: E402
from utils.errors import run_cli  # noqa: E402
from utils.results_fragment import command_line, machine_description, write_fragment  # noqa: E402
from utils.seeding import SELECT_XRAYS, derived_seed  # noqa: E402
from utils.stats import mean_with_ci, paired_difference  # noqa: E402

# A meta-training small enough for a few CPU minutes: pools of 100, K = 10.
TRAINING = ["UNLABELED_POOL_SIZE=100", "QUERY_SET_SIZE=50", "K=10", "NUM_META_TRAIN_TASKS=1920",
            "NUM_META_TEST_TASKS=200", "NUM_EPOCHS=3", "BATCH_SIZE=16", "LEARNING_RATE=1e-3"]
STRATEGIES = ("chunks", "whole")
SELECTIONS = ("topk", "sample")
REFERENCES = ("random", "kmedoids", "kmedoids-fasterpam")
GROUPS = {"seen": constants.NON_HOLD_OUT, "unseen": constants.HOLD_OUT}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "large_pool"),
                        help="folder for data, the trained selector and results (default bench/results/large_pool)")
    parser.add_argument("--checkpoint", default=None, help="selector to compare with (default: train one here)")
    parser.add_argument("--positives", type=int, default=6000,
                        help="positive X-rays per synthetic split; pools of 10x200 need about 1000 per condition "
                             "(default 6000)")
    parser.add_argument("--normals", type=int, default=2400, help="normal X-rays per synthetic split (default 2400)")
    parser.add_argument("--dim", type=int, default=64, help="embedding size (default 64)")
    parser.add_argument("--noise", type=float, default=2.0, help="noise of the synthetic data (default 2.0)")
    parser.add_argument("--train_set", action="append", default=None, metavar="NAME=VALUE",
                        help=f"meta-training settings (repeatable; default {' '.join(TRAINING)})")
    parser.add_argument("--multiples", default="1,5,10",
                        help="pool sizes to test, as multiples of the trained pool size (default 1,5,10)")
    parser.add_argument("--query", type=int, default=100, help="query X-rays per task (default 100)")
    parser.add_argument("--num_tasks", type=int, default=200, help="tasks per pool size and group (default 200)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training, tasks and selections (default 0)")
    parser.add_argument("--docs_fragment", metavar="FILE",
                        help="also write the report and the run time as a docs fragment (docs/results/"
                             "large_pool_strategy.md for docs/own_xrays.md; then make docs-numbers). Default: none")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    run_started = time.time()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    data = prepare_data(args)
    checkpoint_path = args.checkpoint or train_selector(args, data)
    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint_config(checkpoint)
    table = load_xray_table(data["test_pos"], data["test_norm"], constants.ALL_COND, config["USE_ASL"])
    selector = selector_from_checkpoint(checkpoint, table.selector_input_size, checkpoint_path).eval()
    trained_size, k = config["UNLABELED_POOL_SIZE"], config["K"]
    multiples = [int(m) for m in args.multiples.split(",")]
    print(f"selector {checkpoint_path}: trained on pools of {trained_size}, K={k}; "
          f"{args.num_tasks} tasks per pool size and group", flush=True)

    per_task = {}
    for multiple in multiples:
        pool_size = multiple * trained_size
        shape = TaskShape(pool_size=pool_size, pool_positives=int(np.ceil(pool_size * config["UNLABELED_POS_FRAC"])),
                          query_size=args.query, query_positives=int(np.ceil(args.query * config["QUERY_POS_FRAC"])))
        for group, conditions in GROUPS.items():
            started = time.time()
            tasks = FixedTaskSet(TaskSampler(table, conditions, shape, args.seed, TEST_STREAM), args.num_tasks)
            per_task[(pool_size, group)] = score_strategies(selector, table, tasks, k, trained_size, args.seed)
            print(f"pool {pool_size} ({multiple}x), {group}: {time.time() - started:.0f} s", flush=True)

    rows = summarize(per_task, args.bootstrap, args.seed)
    report = markdown(rows, checkpoint_path, trained_size, k, args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(report)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"checkpoint": os.path.abspath(checkpoint_path), "trained_pool_size": trained_size, "k": k,
                   "args": vars(args), "rows": rows,
                   "per_task": {f"{size}/{group}": {m: v.tolist() for m, v in scores.items()}
                                for (size, group), scores in per_task.items()}}, f, indent=1)
    print(report)
    if args.docs_fragment:
        minutes, seconds = divmod(round(time.time() - run_started), 60)
        took = f"The whole run (data, training, {len(multiples)} pool sizes) took {minutes} min {seconds} s."
        write_fragment(args.docs_fragment, f"{report}\n{took}", command_line("bench/large_pool_strategy.py", argv),
                       machine_description())


def prepare_data(args):
    """The synthetic train/val/test CSV/HDF5 pairs in --out/data (generated once)."""
    folder = os.path.join(args.out, "data")
    paths = {f"{split}_{kind}": os.path.join(folder, f"{split}_{kind}.csv")
             for split in ("train", "val", "test") for kind in ("pos", "norm")}
    if not all(os.path.exists(p) for p in paths.values()):
        write_synthetic_dataset(folder, num_positive=args.positives, num_normal=args.normals, dim=args.dim,
                                seed=args.seed, noise=args.noise)
    return paths


def train_selector(args, data):
    """Meta-train with run_selector.py (settings TRAINING or --train_set); returns the best checkpoint's path.

    run_selector.py runs as a process of its own, as bench/embed.py runs xray_to_hdf5.py: its log lines go
    to the same terminal, and its failure (one 'error:' line) ends this benchmark with its exit status.
    """
    run = os.path.join(args.out, "selector")
    last = os.path.join(run, LAST_CHECKPOINT)
    command = [sys.executable, os.path.join(ROOT, "run_selector.py"),
               "--train_pos_csv", data["train_pos"], "--train_norm_csv", data["train_norm"],
               "--val_pos_csv", data["val_pos"], "--val_norm_csv", data["val_norm"], "--out", run, "--device", "cpu"]
    if not os.path.exists(last):
        command += (["--overwrite", "--seed", str(args.seed)]
                    + [part for setting in (args.train_set or TRAINING) for part in ("--set", setting)])
    else:  # continue an interrupted run (returns at once when it is complete)
        command += ["--resume", last]
    returncode = subprocess.run(command).returncode
    if returncode != 0:
        raise SystemExit(returncode)
    best = load_checkpoint(last)["progress"]["best_checkpoint"]
    return os.path.join(run, best) if best else sorted(glob.glob(os.path.join(run, "model_epoch*")))[-1]


@torch.no_grad()
def score_strategies(selector, table, task_set, k, trained_size, seed):
    """Per-task query AUROC of every strategy x selection and of the references: {name: (tasks,)}."""
    classifier = MeanSimilarityClassifier("cosine")
    scores = {f"{strategy}-{selection}": [] for strategy in STRATEGIES for selection in SELECTIONS}
    scores.update({name: [] for name in REFERENCES})
    first = 0
    for tasks in task_set.batches(16):
        pools = table.selector_input(tasks.pool_rows)  # (B, P, D')
        for name in scores:
            if name in REFERENCES:
                selection = select_baseline(name, table.classifier_input(tasks.pool_rows), k, seed,
                                            task_ids=range(first, first + len(tasks)))  # (B, K)
            else:
                strategy, mode = name.split("-")
                # Task i reads its pool in the same random order under every strategy.
                selection = torch.stack([choose_with_selector(
                    selector, pool, k, trained_size, mode, strategy,
                    torch.Generator().manual_seed(derived_seed(seed, SELECT_XRAYS) + first + b))[0]
                    for b, pool in enumerate(pools)])  # (B, K)
            scores[name].append(selection_auroc(table, tasks, selection, classifier))
        first += len(tasks)
    return {name: torch.cat(values).numpy().astype(np.float64) for name, values in scores.items()}


def summarize(per_task, resamples, seed):
    """One row per pool size x group (and both groups) x method; chunks - whole paired per selection."""
    cells = {}
    for (size, group), scores in per_task.items():
        cells[(size, group)] = scores
        both = cells.setdefault((size, "all"), {})
        for name, values in scores.items():
            both[name] = np.concatenate([both[name], values]) if name in both else values
    rows = []
    for (size, group), scores in sorted(cells.items()):
        for name, values in scores.items():
            row = {"pool_size": size, "group": group, "method": name, **mean_with_ci(values, resamples, seed)}
            if name.startswith("chunks-"):
                whole = scores[name.replace("chunks-", "whole-")]
                row["chunks_minus_whole"] = paired_difference(values, whole, resamples, seed)
            row["minus_random"] = paired_difference(values, scores["random"], resamples, seed)
            rows.append(row)
    return rows


def markdown(rows, checkpoint_path, trained_size, k, args):
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [f"Mean query AUROC [95% bootstrap CI over tasks]; selector trained on pools of {trained_size}, K={k}, "
             f"query {args.query}, {args.num_tasks} tasks per pool size and group (seen, unseen), seed {args.seed}; "
             f"SYNTHETIC data, D={args.dim}, noise {args.noise}.", "",
             "| pool | group | " + " | ".join(methods) + " |", "|---:|---|" + "---:|" * len(methods)]
    by_cell = {}
    for row in rows:
        by_cell.setdefault((row["pool_size"], row["group"]), {})[row["method"]] = row
    for (size, group), cell in by_cell.items():
        lines.append(f"| {size} | {group} | " + " | ".join(
            f"{cell[m]['mean']:.4f} [{cell[m]['ci_low']:.4f}, {cell[m]['ci_high']:.4f}]" for m in methods) + " |")
    lines += ["", "chunks minus whole, paired on the same tasks [95% CI], paired t-test p:", "",
              "| pool | group | topk | sample |", "|---:|---|---:|---:|"]
    for (size, group), cell in by_cell.items():
        lines.append(f"| {size} | {group} | " + " | ".join(
            _difference(cell[f"chunks-{mode}"]["chunks_minus_whole"]) for mode in SELECTIONS) + " |")
    return "\n".join(lines) + "\n"


def _difference(paired):
    p = paired["p_value"]
    return (f"{paired['diff']:+.4f} [{paired['diff_ci_low']:+.4f}, {paired['diff_ci_high']:+.4f}] "
            f"p={'<0.001' if p < 0.001 else f'{p:.3f}'}")


if __name__ == "__main__":
    run_cli(main)
