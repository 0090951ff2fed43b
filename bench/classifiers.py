"""Measure the four classifiers of models/classifiers.py on the same selections of the same tasks.

    OMP_NUM_THREADS=1 python3 bench/classifiers.py                 # both datasets, K = 5, 10, 20
    OMP_NUM_THREADS=1 python3 bench/classifiers.py --num_tasks 20  # quicker

Two SYNTHETIC datasets (not X-rays), each a meta-test split written to a temporary folder:
* demo: data/synthetic.py's generator with scripts/make_demo_data.py's settings (512-D, noise 2): positives
  lie between the normal centre and one of three sub-types per condition, subtle to obvious.
* clustered: normals and each condition's positives in a few tight clusters (32-D): the cluster assumption
  that label spreading and self-training rely on holds.
Tasks of the held-out conditions (HOLD_OUT: Atelectasis, Edema), pool --pool_size (half positive), query
--query_size; every selection method (the untrained MedSelect selector of seed 0, drawing K multinomial
samples as training does, and random, kmedoids, probcover) at K = 5, 10, 20, scored by every classifier
(evaluation/meta_test.evaluate_methods). Writes docs/results/classifiers.md and bench/results/classifiers.json.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import constants  # noqa: E402
from data.synthetic import synthetic_centres, synthetic_split, write_pair  # noqa: E402
from data.tasks import TaskShape  # noqa: E402
from data.xray_table import load_xray_table  # noqa: E402
from evaluation.meta_test import UNTRAINED, evaluate_methods, meta_test_tasks  # noqa: E402
from models.classifiers import CLASSIFIERS, COSINE  # noqa: E402
from models.lstm_selector import initial_selector  # noqa: E402
from utils.stats import mean_with_ci, paired_difference  # noqa: E402

METHODS = (UNTRAINED, "random", "kmedoids", "probcover")
KS = (5, 10, 20)
RESULTS = os.path.join(ROOT, "docs", "results", "classifiers.md")
RAW = os.path.join(ROOT, "bench", "results", "classifiers.json")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_tasks", type=int, default=40, help="held-out tasks per dataset (default 40)")
    parser.add_argument("--pool_size", type=int, default=300, help="X-rays in each pool (default 300)")
    parser.add_argument("--query_size", type=int, default=100, help="X-rays in each query set (default 100)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of tasks (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, tasks, selections (default 0)")
    parser.add_argument("--machine", default="2-core CPU shared with other jobs",
                        help="the machine, for the results' first line")
    parser.add_argument("--out", default=RESULTS, help=f"markdown fragment to write (default {RESULTS})")
    return parser


def demo_split(folder, rng):
    """scripts/make_demo_data.py's test split (its default sizes, 512-D, noise 2)."""
    centres = synthetic_centres(512, rng)
    return _write(folder, *synthetic_split(2000, 1200, 512, rng, centres=centres, noise=2.0))


def clustered_split(folder, rng, dim=32, normal_clusters=4, clusters_per_condition=2, spread=0.6):
    """Normals from ``normal_clusters`` clusters; each condition's positives from ``clusters_per_condition``
    of its own; all centres share an offset (embeddings of one kind of image are far from the origin)."""
    offset = 3.0 * np.ones(dim) / np.sqrt(dim) * 2
    normal_centres = offset + rng.normal(size=(normal_clusters, dim)) / np.sqrt(dim) * 3
    condition_centres = offset + rng.normal(size=(len(constants.ALL_COND), clusters_per_condition, dim)) \
        / np.sqrt(dim) * 3
    num_positive, num_normal = 2000, 1200
    positive, positive_embeddings, normal, _ = synthetic_split(num_positive, num_normal, dim, rng)
    labels = positive[list(constants.ALL_COND)].notna().to_numpy()  # (rows, conditions): 1 or -1
    for row in range(num_positive):
        condition = rng.choice(np.flatnonzero(labels[row]))  # its look: one of its conditions' clusters
        positive_embeddings[row] = condition_centres[condition, rng.integers(clusters_per_condition)]
    positive_embeddings += spread * rng.normal(size=positive_embeddings.shape) / np.sqrt(dim) * 3
    normal_embeddings = normal_centres[rng.integers(normal_clusters, size=num_normal)] \
        + spread * rng.normal(size=(num_normal, dim)) / np.sqrt(dim) * 3
    return _write(folder, positive, positive_embeddings.astype(np.float32), normal,
                  normal_embeddings.astype(np.float32))


def _write(folder, positive, positive_embeddings, normal, normal_embeddings):
    os.makedirs(folder, exist_ok=True)
    paths = os.path.join(folder, "test_pos.csv"), os.path.join(folder, "test_norm.csv")
    write_pair(positive, positive_embeddings, paths[0])
    write_pair(normal, normal_embeddings, paths[1])
    return paths


def measure(paths, args):
    """{k: evaluate_methods's outcome} on the held-out tasks of one dataset."""
    hold_out = list(constants.HOLD_OUT)
    table = load_xray_table(*paths, hold_out)
    shape = TaskShape(pool_size=args.pool_size, pool_positives=args.pool_size // 2, query_size=args.query_size,
                      query_positives=args.query_size // 2)
    task_sets = meta_test_tasks(table, {"unseen": hold_out}, shape, args.seed, args.num_tasks)
    selectors = {UNTRAINED: initial_selector(table.selector_input_size, args.seed).eval()}
    return evaluate_methods(list(METHODS), task_sets, table, selectors, list(KS), 8, "sample", args.seed,
                            torch.device("cpu"), description="tasks x methods x K", classifiers=list(CLASSIFIERS))


def summary_rows(name, outcomes, args):
    rows = []
    for k, outcome in outcomes.items():
        for method in METHODS:
            cosine = outcome["auroc_by_classifier"][COSINE]["unseen"][method]
            for classifier in CLASSIFIERS:
                scores = outcome["auroc_by_classifier"][classifier]["unseen"][method]
                summary = mean_with_ci(scores, args.bootstrap, args.seed)
                diff = paired_difference(scores, cosine, args.bootstrap, args.seed)
                rows.append({"dataset": name, "k": k, "method": method, "classifier": classifier,
                             "mean_auroc": summary["mean"], "ci_low": summary["ci_low"], "ci_high": summary["ci_high"],
                             "diff_vs_cosine": diff["diff"], "diff_ci_low": diff["diff_ci_low"],
                             "diff_ci_high": diff["diff_ci_high"],
                             "ms_per_task": 1000 * outcome["classifier_seconds_per_task"][classifier][method],
                             "one_class_tasks": outcome["one_class_tasks"][method]})
    return rows


def markdown(rows, args, command):
    lines = [f"<!-- made by: {command}; machine: {args.machine} -->",
             f"Held-out conditions (Atelectasis, Edema), {args.num_tasks} tasks per dataset, pool {args.pool_size} "
             f"(half positive), query {args.query_size}. Each cell: the mean query AUROC over tasks, and for the "
             "other classifiers (their difference to cosine on the same selections [95% bootstrap CI over "
             "tasks]). medselect-untrained: the BiLSTM selector with the initial weights of seed 0 (not "
             "trained), K multinomial draws.", ""]
    others = [c for c in CLASSIFIERS if c != COSINE]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        lines += [f"**{dataset}**", "", "| K | selection | " + " | ".join(CLASSIFIERS) + " |",
                  "|---:|---|" + "---:|" * len(CLASSIFIERS)]
        by = {(r["k"], r["method"], r["classifier"]): r for r in rows if r["dataset"] == dataset}
        for k in KS:
            for method in METHODS:
                cells = [f"{by[(k, method, COSINE)]['mean_auroc']:.3f}"]
                for c in others:
                    r = by[(k, method, c)]
                    cells.append(f"{r['mean_auroc']:.3f} ({r['diff_vs_cosine']:+.3f} "
                                 f"[{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}])")
                lines.append(f"| {k} | {method} | " + " | ".join(cells) + " |")
        lines.append("")
    one_class = [f"{r['dataset']} K={r['k']} {r['method']}: {sum(r['one_class_tasks'])}" for r in rows
                 if r["classifier"] == COSINE and sum(r["one_class_tasks"])]
    lines += ["Tasks whose K labels held one class only (every classifier gives them cosine's scores): "
              + ("; ".join(one_class) if one_class else "none") + ".", ""]
    lines += ["Classifier time per task (ms, mean over selections and K; the machine above):", "",
              "| dataset | " + " | ".join(CLASSIFIERS) + " |", "|---|" + "---:|" * len(CLASSIFIERS)]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        cells = [np.mean([r["ms_per_task"] for r in rows if r["dataset"] == dataset and r["classifier"] == c])
                 for c in CLASSIFIERS]
        lines.append(f"| {dataset} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, write in (("demo", demo_split), ("clustered", clustered_split)):
            paths = write(os.path.join(folder, name), np.random.default_rng(args.seed))
            rows += summary_rows(name, measure(paths, args), args)
    command = "OMP_NUM_THREADS=1 python3 bench/classifiers.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                                   " " + " ".join(argv or sys.argv[1:]))
    text = markdown(rows, args, command)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    os.makedirs(os.path.dirname(RAW), exist_ok=True)
    with open(RAW, "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    print(text)


if __name__ == "__main__":
    main()
