"""Benchmark what the topk and random-selection columns add to one meta-validation, in one process.

    python3 bench/validation.py                      # default task shape, 1000 tasks, on the CPU
    python3 bench/validation.py --device cuda        # the same on a GPU
    python3 bench/validation.py --val_tasks 128      # fewer tasks: the time per task is what counts

Side by side on the same tasks and the same (untrained) BiLSTM: a meta-validation in 'sample' mode
only (the original's meta-validation) against 'sample' + 'topk' from one BiLSTM pass per batch
(run_selector.py's), and the random-selection AUROC, which a run computes once. The difference of the
first two is small beside the BiLSTM's time and noisy, so topk's own work (selection, classifier and
AUROC for every batch, the logits given) is also timed on its own. Medians of --repeats timed calls
after one warm-up (the two validations alternate); results also go to bench/results/validation.json.
"""
import argparse
import json
import math
import os
import statistics
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.timing import median_ms  # noqa: E402
from bench.train_step import CONDITIONS, make_frames, make_table  # noqa: E402
from data.tasks import VALIDATION_STREAM, FixedTaskSet, TaskSampler, TaskShape  # noqa: E402
from engine import evaluate_random_selection, evaluate_selector, select_from_logits, selection_auroc  # noqa: E402
from models.lstm_selector import LSTMSelector  # noqa: E402
from models.classifier import MeanSimilarityClassifier  # noqa: E402
from utils.results_fragment import command_line, machine_description, write_fragment  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positives", type=int, default=20000, help="rows of the positive CSV (default 20000)")
    parser.add_argument("--normals", type=int, default=10000, help="rows of the normal CSV (default 10000)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size (default 512)")
    parser.add_argument("--batch", type=int, default=64, help="tasks per batch: BATCH_SIZE (default 64)")
    parser.add_argument("--pool", type=int, default=1000, help="pool size (default 1000)")
    parser.add_argument("--query", type=int, default=100, help="query-set size (default 100)")
    parser.add_argument("--k", type=int, default=20, help="selected X-rays (default 20)")
    parser.add_argument("--val_tasks", type=int, default=1000, help="meta-validation tasks (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "validation.json"),
                        help="JSON file for the results (default bench/results/validation.json)")
    parser.add_argument("--docs_fragment", metavar="FILE",
                        help="also write the table as a docs fragment (docs/results/validation.md for "
                             "docs/training.md; then make docs-numbers). Default: none")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    print(f"{args.val_tasks} validation tasks: pool {args.pool}, query {args.query}, K {args.k}, D={args.dim}, "
          f"batch {args.batch}; medians of {args.repeats} repetitions\n")
    positive_frame, _ = make_frames(args.positives, args.normals, rng)
    table = make_table(positive_frame, rng.normal(size=(args.positives, args.dim)).astype(np.float32),
                       rng.normal(size=(args.normals, args.dim)).astype(np.float32)).to(device)
    shape = TaskShape(args.pool, math.ceil(args.pool / 2), args.query, math.ceil(args.query / 2))
    task_set = FixedTaskSet(TaskSampler(table, CONDITIONS, shape, 0, VALIDATION_STREAM), args.val_tasks)
    selector = LSTMSelector(args.dim).to(device)
    classifier = MeanSimilarityClassifier()

    def validation(modes):
        generator = torch.Generator(device=device).manual_seed(0)
        return lambda: evaluate_selector(selector, classifier, table, task_set, args.k, args.batch, generator, modes)

    # Alternated, so that a change of the machine's load (a shared CPU) affects both alike.
    sample_only, sample_and_topk = validation(("sample",)), validation(("sample", "topk"))
    sample_only(), sample_and_topk()  # warm-up
    times = [(median_ms(sample_only, 1, device, warmup=0), median_ms(sample_and_topk, 1, device, warmup=0))
             for _ in range(args.repeats)]
    sample_ms, both_ms = (statistics.median(column) for column in zip(*times))
    batches = list(task_set.batches(args.batch, device))
    with torch.no_grad():
        logits = [selector(table.selector_input(tasks.pool_rows)) for tasks in batches]  # (B, P) each

    def topk_work():
        for tasks, batch_logits in zip(batches, logits):
            query = table.classifier_input(tasks.query_rows)  # (B, Q, D), shared with sample mode in the run
            selection_auroc(table, tasks, select_from_logits(batch_logits, args.k, "topk"), classifier, query)

    topk_ms = median_ms(topk_work, args.repeats, device)
    random_ms = median_ms(lambda: evaluate_random_selection(classifier, table, task_set, args.k, args.batch, 0),
                          args.repeats, device)
    added_ms = both_ms - sample_ms
    table = ["| meta-validation | ms | ms / task | vs. sample only |", "| --- | ---: | ---: | ---: |",
             f"| sample only (before) | {sample_ms:.0f} | {sample_ms / args.val_tasks:.2f} | 1.00x |",
             f"| sample + topk, one BiLSTM pass (now) | {both_ms:.0f} | {both_ms / args.val_tasks:.2f} | "
             f"{both_ms / sample_ms:.2f}x |",
             f"| topk's own work, the logits given | {topk_ms:.0f} | {topk_ms / args.val_tasks:.2f} | "
             f"{topk_ms / sample_ms:.3f}x |",
             f"| random selection (once per run) | {random_ms:.0f} | {random_ms / args.val_tasks:.2f} | "
             f"{random_ms / sample_ms:.3f}x |"]
    summary = (f"topk adds {added_ms:.0f} ms per validation ({100 * added_ms / sample_ms:+.1f} %; its own work "
               f"{topk_ms:.0f} ms, {100 * topk_ms / sample_ms:.1f} %); the random baseline costs {random_ms:.0f} ms "
               "once per run")
    print("\n".join(table))
    print(f"\n{summary}")
    if args.docs_fragment:
        write_fragment(args.docs_fragment,
                       f"{args.val_tasks} validation tasks: pool {args.pool}, query {args.query}, K {args.k}, "
                       f"D = {args.dim}, batch {args.batch}; medians of {args.repeats} repetitions.\n\n"
                       + "\n".join(table) + f"\n\n{summary}.", command_line("bench/validation.py", argv),
                       machine_description(device))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "sample_only_ms": sample_ms, "sample_and_topk_ms": both_ms,
                   "topk_own_work_ms": topk_ms, "random_once_ms": random_ms}, f, indent=2)
    print(f"\nresults saved to {args.out}")


if __name__ == "__main__":
    main()
