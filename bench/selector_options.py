"""Does a selector that can see the pool select better? The paper's selector and each option, measured.

    python3 bench/selector_options.py                 # 6 selectors x 3 seeds on planted data, a few CPU minutes
    python3 bench/selector_options.py --quick         # 2 selectors x 1 seed, short training: a smoke run

On planted data (data/planted.py: near-duplicate bursts, dense normals beside sparse positives, a site
shift per split), every selector of bench/selector_option_sets.py is meta-trained with run_selector.py
for each seed, and its best checkpoint is evaluated with evaluate.py's machinery
(evaluation/meta_test.py) on the same meta-test tasks as the label-free baselines, for the conditions
seen in meta-training and the held-out ones. Per task, each selector's AUROC is the mean over its seeds;
differences are paired over tasks with bootstrap 95% intervals. 'all-pool-labels' (the classifier from
every pool label) shows how much room there is. Writes docs/results/selector_options.md (and .csv beside
--work's runs).
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import constants  # noqa: E402
from bench.selector_option_sets import OPTION_SETS  # noqa: E402
from data.planted import write_planted_dataset  # noqa: E402
from data.tasks import TaskShape  # noqa: E402
from data.xray_table import load_xray_table  # noqa: E402
from evaluation.meta_test import evaluate_methods, meta_test_tasks  # noqa: E402
from evaluation.references import ALL_POOL_LABELS as ALL_POOL, all_pool_labels_auroc  # noqa: E402
from models.checkpoint import load_checkpoint, selector_from_checkpoint  # noqa: E402
from models.classifier import MeanSimilarityClassifier  # noqa: E402
from models.selector import parameter_count  # noqa: E402
from utils.config import apply_overrides, default_config  # noqa: E402
from utils.stats import paired_difference  # noqa: E402

TASK_SETTINGS = ["UNLABELED_POOL_SIZE=40", "UNLABELED_POS_FRAC=0.25", "QUERY_SET_SIZE=40", "K=6",
                 "BATCH_SIZE=16", "LEARNING_RATE=3e-3", "NUM_META_TEST_TASKS=128"]
BASELINES = ("random", "kmedoids", "typiclust", "probcover")
MODES = {"sample-distinct": "medselect-sample-distinct", "topk": "medselect-topk"}  # what select_xrays.py offers
RESAMPLES = 2000


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    parser.add_argument("--options", default=",".join(OPTION_SETS),
                        help="comma-separated names of bench/selector_option_sets.py (default: all)")
    parser.add_argument("--train_tasks", type=int, default=1600, help="meta-training tasks per epoch (default 1600)")
    parser.add_argument("--epochs", type=int, default=3, help="meta-training epochs (default 3)")
    parser.add_argument("--num_tasks", type=int, default=200, help="meta-test tasks per group (default 200)")
    parser.add_argument("--work", default=None,
                        help="folder for the planted data, the runs and the per-task CSV, replaced (default "
                             "bench/results/selector_options, with --quick bench/results/selector_options_quick)")
    parser.add_argument("--fragment", default=None,
                        help="markdown results fragment (default docs/results/selector_options.md; with --quick "
                             "bench/results/selector_options_quick.md, leaving the docs' numbers alone)")
    parser.add_argument("--quick", action="store_true", help="2 selectors, 1 seed, short training: a smoke run")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.quick:
        args.seeds, args.options = "0", "paper (BiLSTM),combined"
        args.train_tasks, args.epochs, args.num_tasks = 160, 1, 32
    name = "selector_options" + ("_quick" if args.quick else "")
    args.work = args.work or os.path.join(ROOT, "bench", "results", name)
    args.fragment = args.fragment or (os.path.join(ROOT, "bench", "results", f"{name}.md") if args.quick else
                                      os.path.join(ROOT, "docs", "results", "selector_options.md"))
    seeds = [int(s) for s in args.seeds.split(",")]
    options = args.options.split(",")
    unknown = [o for o in options if o not in OPTION_SETS]
    if unknown:
        raise SystemExit(f"error: --options: unknown {unknown}; choose from {list(OPTION_SETS)}")
    torch.set_num_threads(1)
    shutil.rmtree(args.work, ignore_errors=True)
    paths = write_planted_dataset(os.path.join(args.work, "data"), constants.ALL_COND, dim=32, seed=0)
    settings = [*TASK_SETTINGS, f"NUM_META_TRAIN_TASKS={args.train_tasks}", f"NUM_EPOCHS={args.epochs}"]
    config = apply_overrides(default_config(), settings)

    table = load_xray_table(paths["test_pos"], paths["test_norm"], config["ALL_COND"])
    groups = {"seen": config["NON_HOLD_OUT"], "unseen": config["HOLD_OUT"]}
    task_sets = meta_test_tasks(table, groups, TaskShape.from_config(config), 0, args.num_tasks)
    k, device = config["K"], torch.device("cpu")
    scores = {m: per_group(evaluate_methods(BASELINES, task_sets, table, {}, [k], 64, "sample", 0, device,
                                            description="baselines")[k]["auroc"], m) for m in BASELINES}
    scores[ALL_POOL] = all_pool_labels(table, task_sets)

    info = {}
    for option in options:
        per_seed = {mode: [] for mode in MODES}
        started = time.time()
        for seed in seeds:
            out = os.path.join(args.work, "runs", f"{slug(option)}_seed{seed}")
            data = [f"--{split}_csv={path}" for split, path in paths.items() if not split.startswith("test")]
            # run_selector.py as a user runs it (bench/ may not import an entry point)
            command = [sys.executable, os.path.join(ROOT, "run_selector.py"), *data, "--out", out, "--seed",
                       str(seed), "--overwrite", *[a for s in [*settings, *OPTION_SETS[option]] for a in ("--set", s)]]
            result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if result.returncode != 0:
                raise SystemExit(f"error: training {option} seed {seed} failed:\n{result.stderr[-2000:]}")
            best = os.path.join(out, "best.pt")
            selector = selector_from_checkpoint(load_checkpoint(best), table.selector_input_size, best)
            outcome = evaluate_methods(tuple(MODES.values()), task_sets, table, dict.fromkeys(MODES.values(), selector),
                                       [k], 64, "sample", 0, device, description=f"{option} seed {seed}")[k]
            for mode, method in MODES.items():
                per_seed[mode].append(per_group(outcome["auroc"], method))
        for mode in MODES:
            scores[(option, mode)] = {g: np.mean([s[g] for s in per_seed[mode]], axis=0) for g in per_seed[mode][0]}
            info[(option, mode)] = {"seed_means": [float(s["all"].mean()) for s in per_seed[mode]]}
        info[option] = {"parameters": parameter_count(selector), "minutes": (time.time() - started) / 60 / len(seeds)}

    markdown = report(scores, info, options, seeds, args, config)
    print(markdown)
    os.makedirs(os.path.dirname(args.fragment), exist_ok=True)
    with open(args.fragment, "w") as f:
        f.write(markdown)
    per_task = pd.DataFrame({name if isinstance(name, str) else f"{name[0]} [{name[1]}]": s["all"]
                             for name, s in scores.items()})
    per_task.to_csv(os.path.join(args.work, "per_task_auroc.csv"), index=False)
    print(f"results saved to {args.fragment} and {os.path.join(args.work, 'per_task_auroc.csv')}")


def per_group(auroc, method):
    """{group: (N,) AUROC of ``method``} plus 'all': the seen tasks then the unseen ones."""
    groups = {g: by_method[method] for g, by_method in auroc.items()}
    return {**groups, "all": np.concatenate(list(groups.values()))}


@torch.no_grad()
def all_pool_labels(table, task_sets):
    """{group: (N,)} query AUROC of the classifier built from every pool X-ray's label (the headroom's top)."""
    classifier = MeanSimilarityClassifier("cosine")
    auroc = {}
    for group, task_set in task_sets.items():
        batches = list(task_set.batches(64, torch.device("cpu")))
        auroc[group] = torch.cat([all_pool_labels_auroc(table, tasks, classifier, table.classifier_input(
            tasks.query_rows)) for tasks in batches]).numpy().astype(np.float64)
    return {**auroc, "all": np.concatenate(list(auroc.values()))}


def slug(option):
    return "".join(c if c.isalnum() else "-" for c in option).strip("-")


def report(scores, info, options, seeds, args, config):
    """The markdown fragment: references and baselines, then every selector x mode against them."""
    command = "python3 bench/selector_options.py" + (" --quick" if args.quick else "")
    if not args.quick and (args.seeds, args.train_tasks, args.epochs, args.num_tasks) != ("0,1,2", 1600, 3, 200):
        command += (f" --seeds {args.seeds} --train_tasks {args.train_tasks} --epochs {args.epochs} "
                    f"--num_tasks {args.num_tasks}")
    random, top = scores["random"]["all"], scores[ALL_POOL]["all"]
    headroom = float(top.mean() - random.mean())
    baseline_means = {m: scores[m]["all"].mean() for m in BASELINES if m != "random"}
    best_baseline = max(baseline_means, key=baseline_means.get)
    n = len(random)

    def diff(a, b):
        d = paired_difference(a, b, RESAMPLES, 0)
        return f"{d['diff']:+.3f} [{d['diff_ci_low']:+.3f}, {d['diff_ci_high']:+.3f}]"

    lines = [f"<!-- made by: {command}; machine: {os.cpu_count()}-core CPU -->",
             f"Planted data (data/planted.py: near-duplicate bursts of 40 images per patient, dense normals beside "
             f"sparse positives, a site shift per split; D=32). Tasks: pool {config['UNLABELED_POOL_SIZE']} "
             f"({config['UNLABELED_POS_FRAC']:.0%} positive), query {config['QUERY_SET_SIZE']}, K={config['K']}; "
             f"{n // 2} meta-test tasks per group (seen: {len(config['NON_HOLD_OUT'])} conditions of meta-training, "
             f"unseen: {len(config['HOLD_OUT'])} held out), the same tasks for every row. Each selector meta-trained "
             f"{args.epochs} epochs x {args.train_tasks} tasks (batch {config['BATCH_SIZE']}, learning rate "
             f"{config['LEARNING_RATE']:g}) for seeds {', '.join(map(str, seeds))}; its per-task AUROC is the mean "
             f"over seeds. Differences are paired over the {n} tasks (bootstrap 95% CI). Headroom "
             f"(all-pool-labels - random): {headroom:+.3f}.", "",
             "| method | seen | unseen | all - random [95% CI] | share of headroom |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for method in (ALL_POOL, *BASELINES):
        s = scores[method]
        lines.append(f"| {method + (' (reference)' if method == ALL_POOL else '')} | {s['seen'].mean():.3f} | "
                     f"{s['unseen'].mean():.3f} | {diff(s['all'], random) if method != 'random' else ''} | "
                     f"{(s['all'].mean() - random.mean()) / headroom:.0%} |")
    lines += ["", f"| selector | mode | seen | unseen | seed means (all) | - random | - paper, same mode | "
                  f"- {best_baseline} (best baseline) |", "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    paper = next(iter(OPTION_SETS))
    for option in options:
        for mode in MODES:
            s = scores[(option, mode)]
            seed_means = ", ".join(f"{v:.3f}" for v in info[(option, mode)]["seed_means"])
            compared = option != paper and (paper, mode) in scores
            versus_paper = diff(s["all"], scores[(paper, mode)]["all"]) if compared else ""
            lines.append(f"| {option} | {mode} | {s['seen'].mean():.3f} | {s['unseen'].mean():.3f} | {seed_means} | "
                         f"{diff(s['all'], random)} | {versus_paper} | "
                         f"{diff(s['all'], scores[best_baseline]['all'])} |")
    lines += ["", "Settings of each selector (--set), parameters, and minutes per seed (meta-training and "
                  "evaluation) on this machine:", ""]
    lines += [f"* {option}: {' '.join(OPTION_SETS[option]) or '(defaults)'}; {info[option]['parameters']:,} "
              f"parameters; {info[option]['minutes']:.1f} min" for option in options]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
