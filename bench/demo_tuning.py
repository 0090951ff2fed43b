"""The demo's tuning runs: meta-training as `make demo` does at two learning rates, three run seeds each.

    python3 bench/demo_tuning.py --docs_fragment docs/results/demo_tuning.md   # 2 rates x 3 seeds (docs/evaluation.md)
    python3 bench/demo_tuning.py --learning_rates 1e-3 --seeds 0 --train_tasks 80 --num_tasks 50   # a smoke run

On the demo's prepared data (what `make demo` leaves in demo_data/splits: the six split CSVs, each with its
HDF5), every (learning rate, run seed) is meta-trained with run_selector.py as `make demo` trains (the
Makefile's DEMO_TASKS and DEMO_TRAINING settings, read from it, with LEARNING_RATE replaced, and --seed),
and its best.pt evaluated with evaluate.py as `make demo` evaluates it, on the held-out conditions only
(--conditions unseen; 300 tasks, evaluation seed 0: the same tasks for every run). Both run as subprocesses
with OMP_NUM_THREADS=1, their folders in --work_dir (default: a temporary folder, removed at the end);
demo_runs/ is never touched. The report (printed, saved to --out, and with --docs_fragment the docs
fragment): each run's paired differences on the held-out tasks, from evaluate.py's results.csv, and its
meta-validation AUROCs at every validated step, from run_selector.py's metrics.csv.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import constants  # noqa: E402
from evaluation.report import read_paired_difference  # noqa: E402
from utils.atomic import atomic_write_text  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.progress import progress_bar  # noqa: E402
from utils.results_fragment import command_line, machine_description, write_fragment  # noqa: E402

MAKEFILE = os.path.join(ROOT, "Makefile")
DEMO_SETTINGS = ("DEMO_TASKS", "DEMO_TRAINING")  # the Makefile variables holding the demo's --set options
SPLIT_FILES = ("train_pos", "train_norm", "val_pos", "val_norm", "test_pos", "test_norm")
METHODS = ("medselect-sample", "medselect-topk", "medselect-untrained", "random")  # evaluate.py adds untrained-topk
# (column, first, second): first − second on the held-out tasks; 'untrained' is the run's initial weights in
# the same selection mode as the trained selector it is compared with.
DIFFERENCES = (("`sample` − untrained", "medselect-sample", "medselect-untrained"),
               ("`sample` − `random`", "medselect-sample", "random"),
               ("`topk` − untrained `topk`", "medselect-topk", "medselect-untrained-topk"),
               ("`topk` − `random`", "medselect-topk", "random"))
HELD_OUT = "unseen"  # evaluate.py's name of the held-out group


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", default=os.path.join(ROOT, "demo_data", "splits"),
                        help="the demo's prepared data: prepare_data.py's --out, with the six split CSVs and their "
                             "HDF5s (default: demo_data/splits, as make demo leaves it)")
    parser.add_argument("--learning_rates", default="1e-3,1e-4",
                        help="comma-separated LEARNING_RATE values (default 1e-3,1e-4: the demo's and the paper's)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds, run_selector.py --seed "
                                                         "(default 0,1,2)")
    parser.add_argument("--train_tasks", type=int, default=None,
                        help="NUM_META_TRAIN_TASKS of each run (default: the demo's, from the Makefile); fewer for a "
                             "smoke run")
    parser.add_argument("--num_tasks", type=int, default=300,
                        help="held-out meta-test tasks of each evaluation (default 300, as make demo's evaluate.py)")
    parser.add_argument("--work_dir", default=None,
                        help="folder for the runs, kept (one LR_seedN folder each, replaced); default: a temporary "
                             "folder removed at the end")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "demo_tuning.md"),
                        help="Markdown file for the report (default bench/results/demo_tuning.md)")
    parser.add_argument("--docs_fragment", metavar="FILE",
                        help="also write the report as a docs fragment (docs/results/demo_tuning.md for "
                             "docs/evaluation.md; then make docs-numbers). Default: none")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    learning_rates = comma_list(args.learning_rates, float, "--learning_rates")
    seeds = [int(seed) for seed in comma_list(args.seeds, int, "--seeds")]
    args.splits = os.path.abspath(args.splits)  # the subprocesses run in the repository root
    check_demo_data(args.splits)
    if args.work_dir and inside(args.work_dir, os.path.join(ROOT, "demo_runs")):
        raise UserError(f"--work_dir {args.work_dir}: inside demo_runs/, which this benchmark never touches")
    with open(MAKEFILE, encoding="utf-8") as f:
        settings = makefile_settings(f.read())
    if args.train_tasks is not None:
        settings = replaced(settings, "NUM_META_TRAIN_TASKS", args.train_tasks)
    torch.set_num_threads(1)  # as the subprocesses run (machine_description names it)
    started = time.time()
    runs = [(rate, seed) for rate in learning_rates for seed in seeds]
    with tempfile.TemporaryDirectory(prefix="demo_tuning_") as temporary:
        work = os.path.abspath(args.work_dir) if args.work_dir else temporary
        results = {}
        with progress_bar(total=len(runs), desc="demo tuning", unit="run") as bar:
            for rate, seed in runs:
                folder = os.path.join(work, f"{rate}_seed{seed}")
                results[(rate, seed)] = train_and_evaluate(folder, replaced(settings, "LEARNING_RATE", rate), seed,
                                                           args)
                bar.update(1)
    minutes = (time.time() - started) / 60
    report = "\n".join(report_lines(results, settings, args.num_tasks, minutes)) + "\n"
    print(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    atomic_write_text(report, args.out)
    print(f"report saved to {args.out}")
    if args.docs_fragment:
        write_fragment(args.docs_fragment, report, command_line("bench/demo_tuning.py", argv), machine_description())
    return 0


def comma_list(text, kind, flag):
    """The distinct values of a comma-separated option, each as typed (checked to be a ``kind``)."""
    values = [v.strip() for v in text.split(",")]
    for value in values:
        try:
            kind(value)
        except ValueError:
            raise UserError(f"{flag} {text!r}: {value!r} is not a number") from None
    return list(dict.fromkeys(values))


def inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def check_demo_data(splits):
    """Refuse in one line when the demo's prepared data is not there."""
    missing = [f"{name}{ext}" for name in SPLIT_FILES for ext in (".csv", ".hdf5")
               if not os.path.isfile(os.path.join(splits, name + ext))]
    if missing:
        raise UserError(f"{splits}: the demo's prepared data is missing ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''}); run make demo first")


def makefile_settings(text):
    """['NAME=VALUE', ...]: the values of every --set in the Makefile's DEMO_SETTINGS variables, in order
    (continuation lines joined), so that the runs train exactly as make demo does."""
    joined = re.sub(r"\\\n\s*", " ", text)
    settings = []
    for name in DEMO_SETTINGS:
        match = re.search(rf"^{name}\s*:?=(.*)$", joined, flags=re.M)
        if match is None:
            raise UserError(f"{MAKEFILE}: no {name} variable (the demo's --set options)")
        words = shlex.split(match.group(1))
        settings += [value for flag, value in zip(words, words[1:]) if flag == "--set"]
    return settings


def replaced(settings, name, value):
    """``settings`` with NAME's value replaced by ``value`` (appended when it is not there)."""
    return [*(s for s in settings if s.split("=", 1)[0] != name), f"{name}={value}"]


def setting(settings, name):
    """NAME's value in ``settings`` ('NAME=VALUE' strings)."""
    return next(s.split("=", 1)[1] for s in settings if s.split("=", 1)[0] == name)


def train_and_evaluate(folder, settings, seed, args):
    """run_selector.py into ``folder``/selector, then evaluate.py on the held-out conditions into ``folder``/test;
    returns read_run(folder)."""
    split = {name: os.path.join(args.splits, f"{name}.csv") for name in SPLIT_FILES}
    run, test = os.path.join(folder, "selector"), os.path.join(folder, "test")
    train = ["run_selector.py", *(f"--{name}_csv={split[name]}" for name in SPLIT_FILES[:4]), "--out", run,
             "--seed", str(seed), "--overwrite", *(word for s in settings for word in ("--set", s))]
    evaluate = ["evaluate.py", "--checkpoint", os.path.join(run, "best.pt"), "--methods", ",".join(METHODS),
                "--conditions", HELD_OUT, "--num_tasks", str(args.num_tasks), "--test_pos_csv", split["test_pos"],
                "--test_norm_csv", split["test_norm"], "--out", test, "--overwrite"]
    for command in (train, evaluate):
        # the entry points as a user runs them (bench/ may not import an entry point), in one thread as the demo
        done = subprocess.run([sys.executable, os.path.join(ROOT, command[0]), *command[1:]], cwd=ROOT,
                              env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise UserError(f"{command[0]} ({setting(settings, 'LEARNING_RATE')}, seed {seed}) failed: {last}")
    return read_run(folder)


def read_run(folder):
    """What a run left in ``folder``: {'results': evaluate.py's results.csv rows of the whole group ('overall'),
    'metrics': run_selector.py's metrics.csv}."""
    results = pd.read_csv(os.path.join(folder, "test", "results.csv"))
    return {"results": results[results["condition"] == "overall"],
            "metrics": pd.read_csv(os.path.join(folder, "selector", "metrics.csv"))}


def difference_cells(overall):
    """'+0.072 [+0.042, +0.103]' for each of DIFFERENCES, on the held-out tasks."""
    return ["{:+.3f} [{:+.3f}, {:+.3f}]".format(*read_paired_difference(overall, HELD_OUT, first, second))
            for _, first, second in DIFFERENCES]


def validation_cells(metrics):
    """The meta-validation AUROCs of each validated step in `sample` and `topk` mode, and best.pt's step (the
    checkpoint run_selector.py's last record names as best)."""
    sample = ", ".join(f"{v:.3f}" for v in metrics["val_auroc"])
    topk = ", ".join(f"{v:.3f}" for v in metrics["val_topk_auroc"])
    best = metrics["best_checkpoint"].iloc[-1]
    return [sample, topk, str(int(metrics.loc[metrics["saved"] == best, "step"].iloc[0]))]


def rate_label(rate, demo_rate):
    """'1e-3 (the demo's)': the learning rate as typed, named when it is the demo's or the paper's."""
    names = [name for name, value in (("the demo's", demo_rate), ("the paper's", constants.LEARNING_RATE))
             if float(rate) == value]
    return rate + (f" ({' and '.join(names)})" if names else "")


def report_lines(results, settings, num_tasks, minutes):
    """The report's Markdown lines: the paired differences of each run, then its meta-validation."""
    demo_rate = float(setting(settings, "LEARNING_RATE"))
    shown = " ".join(f"--set {s}" for s in settings if not s.startswith("LEARNING_RATE="))
    lines = [f"Each run: run_selector.py on the demo's data with make demo's settings ({shown}) at the learning "
             f"rate and run seed of its row, then evaluate.py on the held-out conditions, {num_tasks} tasks, "
             "evaluation seed 0 (the same tasks for every run). Paired differences on those tasks [95 % bootstrap "
             "CI]; untrained: the same architecture with the run's initial weights, in the same selection mode.",
             "", "| learning rate | run seed | " + " | ".join(name for name, _, _ in DIFFERENCES) + " |",
             "| --- | ---: |" + " ---: |" * len(DIFFERENCES)]
    lines += [f"| {rate_label(rate, demo_rate)} | {seed} | " + " | ".join(difference_cells(run["results"])) + " |"
              for (rate, seed), run in results.items()]
    steps = next(iter(results.values()))["metrics"]["step"]
    lines += ["", f"Meta-validation AUROC of each run (metrics.csv) at steps {', '.join(map(str, steps))}:", "",
              "| learning rate | run seed | `sample` | `topk` | `best.pt` (step) |",
              "| --- | ---: | --- | --- | ---: |"]
    lines += [f"| {rate_label(rate, demo_rate)} | {seed} | " + " | ".join(validation_cells(run["metrics"])) + " |"
              for (rate, seed), run in results.items()]
    lines += ["", f"{len(results)} runs (meta-training and evaluation) took {minutes:.1f} min."]
    return lines


if __name__ == "__main__":
    sys.exit(run_cli(main))
