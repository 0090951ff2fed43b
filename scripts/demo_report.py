"""The last step of `make demo`: what was planted, the comparison table, the own-X-rays run, the plots.

    python3 scripts/demo_report.py --images_csv demo_data/chexpert/CheXpert-v1.0-small/train.csv \
        --run demo_runs/selector --evaluation demo_runs/test --own_xrays demo_runs/own_xrays \
        --pool demo_data/demo_pool.csv --label_column Edema --out demo_runs/demo_summary.md

Reads only what the commands wrote (evaluate.py's results.csv, select_xrays.py's and
classify_xrays.py's CSVs) and the synthetic truth (the images CSV's acquisition column, which no
MedSelect command reads). Prints the summary and writes it to --out as Markdown. With --docs_results DIR it
also writes the fragments docs/evaluation.md quotes (the results convention, utils/results_fragment.py):
DIR/demo_table.md (the comparison and the meta-validation AUROCs), DIR/demo_own_xrays.md, and with
--modes DIR/demo_selection_modes.md (evaluate.py's comparison of the selection modes). With --step_times (the
marks `make demo` writes at the start of each step) the summary says how long each step took, and
--docs_results also gets DIR/demo_time.md. With --splits the summary says what the data steps made (pictures,
patients, each split's patients and the test split's X-rays, the embeddings' norm and cosine similarity), and
--docs_results also gets DIR/demo_data.md.
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from medselect.classification import ground_truth_auroc  # noqa: E402
from data.csv_hdf5 import embedding_shape  # noqa: E402
from data.input_checks import PATIENT_PATTERN  # noqa: E402
from data.synthetic import ACQUISITION_COLUMN, POOR  # noqa: E402
from data.synthetic_images import POOR_ACQUISITION_NOTE  # noqa: E402
from evaluation.references import REFERENCES  # noqa: E402
from evaluation.report import read_paired_difference  # noqa: E402
from utils.atomic import atomic_write_text  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.plots import CURVES_FILE  # noqa: E402
from utils.results_fragment import machine_description, write_fragment  # noqa: E402

TRAINED = ("medselect-sample", "medselect-topk")  # the trained selector's rows, compared with every other method
GROUP_NAMES = {"seen": "seen", "unseen": "held out"}
OWN_XRAYS_METHODS = ("medselect", "random")  # select_xrays.py --method, as the Makefile runs it
MODES = ("medselect-sample", "medselect-sample-distinct", "medselect-topk", "medselect-untrained", "random")
MODES_COMMAND = ("OMP_NUM_THREADS=1 python3 evaluate.py --checkpoint demo_runs/selector/best.pt "
                 "--test_pos_csv demo_data/splits/test_pos.csv --test_norm_csv demo_data/splits/test_norm.csv "
                 f"--methods {','.join(MODES)} --num_tasks 1000 --out demo_runs/test_modes")
# The Makefile's step marks (`STEP SECONDS` lines, each the start of STEP; END after the last step), in its order.
STEPS = {"images": "scripts/make_demo_images.py: the pictures and the random checkpoint",
         "prepare": "prepare_data.py: the splits",
         "embed": "xray_to_hdf5.py on the six split CSVs",
         "train": "run_selector.py (meta-training) and the training-curve plot",
         "evaluate": "evaluate.py",
         "own_xrays": "your own X-rays: demo_pool.py, xray_to_hdf5.py on the pool, select_xrays.py, classify_xrays.py"}
END = "end"
EMBED_STEP = "embed"
SPLIT_FILES = ("train_pos", "train_norm", "val_pos", "val_norm", "test_pos", "test_norm")  # the Makefile's loop


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images_csv", required=True, help="the synthetic images' CSV (with the planted column)")
    parser.add_argument("--run", required=True, help="run_selector.py's --out")
    parser.add_argument("--evaluation", required=True, help="evaluate.py's --out")
    parser.add_argument("--own_xrays", required=True,
                        help="folder with to_label_METHOD.csv and predictions_METHOD.csv for METHOD in "
                             f"{', '.join(OWN_XRAYS_METHODS)}")
    parser.add_argument("--pool", required=True, help="the pool CSV (ground truth for --label_column)")
    parser.add_argument("--label_column", required=True, help="the finding labelled in the own-X-rays run")
    parser.add_argument("--out", required=True, help="Markdown file for the summary")
    parser.add_argument("--docs_results", metavar="DIR",
                        help="also write the docs fragments demo_table.md and demo_own_xrays.md (demo_data.md with "
                             "--splits, demo_time.md with --step_times) to DIR (for the repository's docs: "
                             "docs/results; then make docs-numbers). Default: none written")
    parser.add_argument("--step_times", metavar="FILE",
                        help="the step marks of make demo (a 'STEP SECONDS' line at the start of each step, seconds "
                             f"since the epoch, '{END} SECONDS' after the last): the summary says each step's time. "
                             "Needs --splits. Default: no times")
    parser.add_argument("--splits", metavar="DIR",
                        help="prepare_data.py's --out with the six split CSVs and their HDF5s: the summary says how "
                             "many patients and X-rays each split holds and the embeddings' norm and cosine "
                             "similarity (with --docs_results also in DIR/demo_data.md); with --step_times, they are "
                             "what the embedding step embedded (for its images/s). Default: none of this")
    parser.add_argument("--modes", metavar="EVALUATION",
                        help="with --docs_results: the --out of evaluate.py run as in docs/evaluation.md's "
                             "selection-mode comparison; writes DIR/demo_selection_modes.md")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.step_times and not args.splits:
        raise UserError("--step_times needs --splits (prepare_data.py's --out), to count the pictures embedded")
    times = time_lines(read_step_marks(args.step_times), embedded_pictures(args.splits)) if args.step_times else []
    images = pd.read_csv(args.images_csv)
    data = data_lines(images, args.splits) if args.splits else []
    share = (images[ACQUISITION_COLUMN] == POOR).mean()
    with open(os.path.join(args.evaluation, "results.json")) as f:
        evaluation = json.load(f)
    results = pd.read_csv(os.path.join(args.evaluation, "results.csv"))
    lines = ["# MedSelect demo on SYNTHETIC data (not X-rays; random-weight encoder)", "",
             f"{POOR_ACQUISITION_NOTE}: here {share:.0%} of the {len(images)} images.", "",
             *([*data, ""] if data else []),
             *comparison_table(results, evaluation), "",
             *own_xrays_lines(args), "",
             "Plots:", "",
             f"* training curve: {os.path.join(args.run, CURVES_FILE)}",
             f"* AUROC by method and condition, 95% CIs: {os.path.join(args.evaluation, 'auroc_by_condition.png')}",
             f"* every number above, per condition: {os.path.join(args.evaluation, 'results.md')}",
             *(["", *times] if times else [])]
    text = "\n".join(lines) + "\n"
    atomic_write_text(text, args.out)
    print(text)
    print(f"(this summary is also in {args.out})")
    if args.docs_results:
        write_docs_fragments(args, results, evaluation, times, data)
    return 0


def write_docs_fragments(args, results, evaluation, times=(), data=()):
    """The fragments docs/evaluation.md quotes, each naming the command that made its numbers."""
    machine = machine_description()
    table = comparison_table(results, evaluation)[2:]  # the table without the sentence that explains it
    metrics = pd.read_csv(os.path.join(args.run, "metrics.csv"))
    validation = (f"Meta-validation AUROC (`sample` mode, {args.run}/metrics.csv): "
                  + ", ".join(f"{auroc:.3f}" for auroc in metrics["val_auroc"]) + " at steps "
                  + ", ".join(str(step) for step in metrics["step"])
                  + f"; `best.pt` is step {metrics.loc[metrics['val_auroc'].idxmax(), 'step']}'s.")
    tasks = int(results[results["condition"] == "overall"]["num_tasks"].iloc[0])
    write_fragment(os.path.join(args.docs_results, "demo_table.md"),
                   f"Seed {evaluation.get('seed', 0)}; {tasks} tasks per group. Mean query AUROC [95 % bootstrap "
                   "CI]; the last columns are paired differences on the same held-out tasks [95 % CI].\n\n"
                   + "\n".join(table) + "\n\n" + validation, "make demo", machine)
    write_fragment(os.path.join(args.docs_results, "demo_own_xrays.md"), "\n".join(own_xrays_lines(args)),
                   "make demo", machine)
    if args.modes:
        with open(os.path.join(args.modes, "results.json")) as f:
            modes_evaluation = json.load(f)
        modes = pd.read_csv(os.path.join(args.modes, "results.csv"))
        write_fragment(os.path.join(args.docs_results, "demo_selection_modes.md"),
                       "\n".join(selection_modes_table(modes, modes_evaluation)), f"make demo; {MODES_COMMAND}",
                       machine)
    if times:
        write_fragment(os.path.join(args.docs_results, "demo_time.md"), "\n".join(times), "make demo", machine)
    if data:
        write_fragment(os.path.join(args.docs_results, "demo_data.md"), "\n".join(data), "make demo", machine)


def read_step_marks(path):
    """[(step, seconds since the epoch)] of the marks file, in its order; refused in one line unless each line is
    'STEP SECONDS', no step is marked twice, the times do not decrease, and the last mark is END."""
    marks = []
    if not os.path.isfile(path):
        raise UserError(f"{path}: step marks file not found")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            words = line.split()
            try:
                marks.append((words[0], float(words[1])))
                if len(words) != 2:
                    raise ValueError
            except (IndexError, ValueError):
                raise UserError(f"{path}:{number}: expected 'STEP SECONDS', found {line.strip()!r}") from None
            if marks[-1][0] in [step for step, _ in marks[:-1]]:
                raise UserError(f"{path}:{number}: step {marks[-1][0]} is marked twice")
            if len(marks) > 1 and marks[-1][1] < marks[-2][1]:
                raise UserError(f"{path}:{number}: {marks[-1][0]}'s time is earlier than {marks[-2][0]}'s")
    if len(marks) < 2 or marks[-1][0] != END:
        raise UserError(f"{path}: needs a mark at the start of each step and '{END}' after the last")
    return marks


def embedded_pictures(splits):
    """The rows of the six split HDF5s: the pictures the embedding step embedded."""
    return sum(embedding_shape(os.path.join(splits, f"{name}.hdf5"))[0] for name in SPLIT_FILES)


def patients(paths):
    """The distinct CheXpert patients (``patientNNNNN``) of a Series of paths."""
    return set(paths.astype(str).str.extract(PATIENT_PATTERN, expand=False).dropna())


def data_lines(images, splits):
    """Markdown lines: what the data steps made. The pictures and patients of the images CSV (``images``, a
    DataFrame); per split, the patients of its positive and normal CSVs, and the test split's positive and normal
    X-rays; the embeddings of the six split HDF5s: their mean norm and the mean cosine similarity of two different
    rows (near 1 when every embedding points the same way, as with an uncalibrated random encoder)."""
    for name in SPLIT_FILES:
        for ext in ("csv", "hdf5"):
            if not os.path.isfile(os.path.join(splits, f"{name}.{ext}")):
                raise UserError(f"{os.path.join(splits, f'{name}.{ext}')}: not found (--splits must be "
                                "prepare_data.py's --out, each split CSV embedded beside it)")
    frames = {name: pd.read_csv(os.path.join(splits, f"{name}.csv"), usecols=["Path"]) for name in SPLIT_FILES}
    split_patients = [len(patients(pd.concat([frames[f"{split}_pos"]["Path"], frames[f"{split}_norm"]["Path"]])))
                      for split in ("train", "val", "test")]
    embeddings = []
    for name in SPLIT_FILES:
        with h5py.File(os.path.join(splits, f"{name}.hdf5"), "r") as f:
            embeddings.append(np.asarray(f["dataset"], dtype=np.float64))
    embeddings = np.concatenate(embeddings)  # (rows, D)
    norms = np.linalg.norm(embeddings, axis=1)
    unit_sum = (embeddings / norms[:, None]).sum(axis=0)
    rows = len(embeddings)
    # the sum over ordered pairs i != j of u_i . u_j = |sum of u|^2 - rows (each u_i . u_i is 1)
    mean_cosine = (unit_sum @ unit_sum - rows) / (rows * (rows - 1))
    return [f"The demo's data: {len(images)} pictures of {len(patients(images['Path']))} patients "
            "(scripts/make_demo_images.py); prepare_data.py split the patients with a positive or normal study "
            f"{' / '.join(map(str, split_patients))} (training / validation / test), and the test split holds "
            f"{len(frames['test_pos'])} positive and {len(frames['test_norm'])} normal X-rays. Their embeddings "
            f"(the six split HDF5s, {rows} rows): mean norm {norms.mean():.1f}; mean cosine similarity of two "
            f"different X-rays {mean_cosine:.3f}."]


def minutes_seconds(seconds):
    """'4 min 58 s' (or '41 s')."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def time_lines(marks, pictures):
    """Markdown lines: each step's time (the difference of its mark and the next), the total, and the
    embedding step's images/s."""
    durations = {step: end - start for (step, start), (_, end) in zip(marks, marks[1:])}
    total = marks[-1][1] - marks[0][1]
    lines = ["Time of each step of `make demo` (wall clock; the small-tensor commands run with "
             "`OMP_NUM_THREADS=1`, the embedding with torch's default threads):", "",
             "| step | seconds | share |", "|---|---:|---:|"]
    lines += [f"| {STEPS.get(step, step)} | {seconds:.1f} | {seconds / max(total, 1e-9):.0%} |"
              for step, seconds in durations.items()]
    lines.append(f"| total | {total:.1f} ({minutes_seconds(total)}) | 100% |")
    if durations.get(EMBED_STEP):
        lines += ["", f"The embedding step embedded {pictures} pictures (the six split HDF5s) at "
                      f"{pictures / durations[EMBED_STEP]:.1f} images/s."]
    return lines


def paired_difference(overall, group, first, second):
    """'+0.012 [−0.003, +0.025]': first − second on the group's tasks, read from the row that pairs them."""
    return "{:+.3f} [{:+.3f}, {:+.3f}]".format(*read_paired_difference(overall, group, first, second))


def selection_modes_table(results, evaluation):
    """Markdown lines: each selection mode's mean AUROC per group and the paired differences between modes."""
    overall = results[results["condition"] == "overall"]
    tasks = int(overall["num_tasks"].iloc[0])
    lines = [f"Seed {evaluation.get('seed', 0)}; {tasks} tasks per group; mean query AUROC, and paired "
             "differences [95 % bootstrap CI]:", "",
             "| group | `sample` (with replacement) | `sample-distinct` (select_xrays.py's `sample`) | `topk` | "
             "untrained (`sample`) | `random` | `topk` − `sample-distinct` | `sample-distinct` − `sample` |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for group, name in (*GROUP_NAMES.items(), ("all", "all")):
        rows = overall[overall["group"] == group]
        means = [f"{rows[rows['method'] == method]['mean_auroc'].iloc[0]:.3f}" for method in MODES]
        diffs = [paired_difference(overall, group, "medselect-topk", "medselect-sample-distinct"),
                 paired_difference(overall, group, "medselect-sample-distinct", "medselect-sample")]
        lines.append(f"| {name} | " + " | ".join(means + diffs) + " |")
    return lines


def comparison_table(results, evaluation):
    """Markdown lines: each method's mean AUROC on seen and held-out conditions, and the trained
    selector's paired difference to it on the held-out ones."""
    config = evaluation["config"]
    overall = results[results["condition"] == "overall"]
    methods = list(dict.fromkeys(overall["method"]))
    trained = [m for m in TRAINED if m in methods]
    tasks = {g: int(overall[(overall["group"] == g)]["num_tasks"].iloc[0]) for g in GROUP_NAMES}
    lines = [f"Meta-test (evaluate.py): K={config['K']} labels chosen from pools of {config['UNLABELED_POOL_SIZE']}, "
             f"scored on query sets of {config['QUERY_SET_SIZE']}; {tasks['seen']} tasks on the seen conditions "
             f"({', '.join(evaluation['conditions']['seen'])}) and {tasks['unseen']} on the held-out ones "
             f"({', '.join(evaluation['conditions']['unseen'])}), never seen in meta-training. Mean query AUROC "
             "[95% bootstrap CI]; trained − method: paired difference on the same held-out tasks [95% CI].", "",
             "| method | seen | held out | " + " | ".join(f"held out: {m} − method" for m in trained) + " |",
             "|---|---:|---:|" + "---:|" * len(trained)]
    for method in methods:
        cells = []
        for group in GROUP_NAMES:
            row = overall[(overall["group"] == group) & (overall["method"] == method)].iloc[0]
            cells.append(f"{row['mean_auroc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
        for reference in trained:
            pair = overall[(overall["group"] == "unseen") & (overall["method"] == method)
                           & (overall["reference"] == reference)]
            cells.append("" if pair.empty else "{:+.3f} [{:+.3f}, {:+.3f}]".format(
                *pair[["diff_vs_medselect", "diff_ci_low", "diff_ci_high"]].iloc[0]))
        label = f"{method} (reference, not a method)" if method in REFERENCES else method
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def own_xrays_lines(args):
    """Markdown lines: per method, the poor-acquisition share of its picks and the classifier's AUROC."""
    pool = pd.read_csv(args.pool)
    pool_share = (pool[ACQUISITION_COLUMN] == POOR).mean()
    lines = [f"Your own X-rays (select_xrays.py, then classify_xrays.py): a pool of {len(pool)} test X-rays "
             f"({pool_share:.0%} from the poor source); the chosen ones labelled for {args.label_column} (held "
             "out of meta-training) by the synthetic truth; the rest classified and scored against it:", "",
             "| select_xrays.py --method | poor-source X-rays chosen | AUROC of the rest [95% CI] |",
             "|---|---:|---:|"]
    for method in OWN_XRAYS_METHODS:
        chosen = pd.read_csv(os.path.join(args.own_xrays, f"to_label_{method}.csv"))
        predictions = pd.read_csv(os.path.join(args.own_xrays, f"predictions_{method}.csv"))
        estimate = ground_truth_auroc(predictions, args.pool, args.label_column)
        lines.append(f"| {method} | {(chosen[ACQUISITION_COLUMN] == POOR).sum()} of {len(chosen)} | "
                     f"{estimate.auroc:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}] |")
    lines += ["", "One pool is one draw: the table above, over hundreds of tasks, is the comparison."]
    return lines


if __name__ == "__main__":
    sys.exit(run_cli(main))
