"""Figures: training curves of a run folder, and evaluate.py's charts.

    python3 -m utils.plots DIR [--out PNG]

reads DIR/metrics.csv (written by run_selector.py as it trains) and draws the meta-train
reward and AUROC and the meta-val AUROC against the training step into DIR/training_curves.png.
The meta-val AUROC is drawn for the selector's 'sample' and 'topk' modes and for K random X-rays on
the same tasks (when metrics.csv has those columns: runs from before them show the sample line only).
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from utils.atomic import atomic_path  # noqa: E402
from utils.config import BEST_CHECKPOINT_COLUMNS  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.output_location import check_output_file  # noqa: E402
from utils.help_format import DefaultsHelpFormatter  # noqa: E402

METRICS_FILE = "metrics.csv"
CURVES_FILE = "training_curves.png"
CURVE_COLUMNS = ("step", "train_reward", "train_auroc", "train_baseline_auroc", "val_auroc")
# One colour per selection, in both panels; meta-val lines are solid with markers, meta-train lines dashed.
SAMPLE, TOPK, RANDOM = "tab:blue", "tab:red", "tab:grey"
# meta-val columns drawn when present: (column, label, colour) on the AUROC panel ...
VALIDATION_AUROC_LINES = (("val_topk_auroc", "meta-val AUROC (MedSelect topk)", TOPK),
                          ("val_random_auroc", "meta-val AUROC (random)", RANDOM))
# ... and the differences to random beside the meta-train reward
VALIDATION_DIFF_LINES = (("val_diff_vs_random", "meta-val AUROC − random (MedSelect sample)", SAMPLE),
                         ("val_topk_diff_vs_random", "meta-val AUROC − random (MedSelect topk)", TOPK))


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Draw a run's training curves (meta-train reward and AUROC, meta-val AUROC against step) "
                    f"from DIR/{METRICS_FILE}.", formatter_class=DefaultsHelpFormatter)
    parser.add_argument("run_dir", metavar="DIR", help="run folder of run_selector.py (--out)")
    parser.add_argument("--out", default=None, help=f"PNG to write; default: DIR/{CURVES_FILE}")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    out = args.out or os.path.join(args.run_dir, CURVES_FILE)
    metrics = read_metrics(os.path.join(args.run_dir, METRICS_FILE))
    # never one of the run's files (--out DIR/metrics.csv), a folder, or a place that cannot be written
    check_output_file(out, "--out", {"DIR": ("run folder", args.run_dir)}, overwrite=True, kind="a PNG file name",
                      folder_must_exist=True)
    figure = training_curves(metrics, best_by=read_best_checkpoint_by(args.run_dir))
    save_png(figure, out)
    print(f"wrote {out}")
    return 0


def read_metrics(path):
    """run_selector.py's metrics.csv as a DataFrame, refusing a missing, empty or foreign file."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: not found; run_selector.py writes it at the first meta-validation")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read CSV ({str(err).strip().splitlines()[0]})") from None
    missing = [c for c in CURVE_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; is it run_selector.py's metrics.csv?")
    if frame.empty:
        raise UserError(f"{path}: no rows yet (one is written per meta-validation)")
    return frame


def read_best_checkpoint_by(run_dir):
    """The run's BEST_CHECKPOINT_BY from DIR/config.json; 'sample' (the original's choice) when not recorded."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            return json.load(f)["config"].get("BEST_CHECKPOINT_BY", "sample")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no readable config.json: the original's run
        return "sample"


def training_curves(frame, best_by="sample"):
    """Figure with two panels against step: meta-train reward (and meta-val AUROC − random); meta-train,
    random-baseline and meta-val AUROC. Saved checkpoints are starred on the line that chose them
    (``best_by``: run_selector.py's BEST_CHECKPOINT_BY)."""
    figure, (reward_axis, auroc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    reward_axis.plot(frame["step"], frame["train_reward"], color=SAMPLE, linestyle="--", marker=".",
                     label="meta-train reward (MedSelect sample − random)")
    for column, label, colour in VALIDATION_DIFF_LINES:
        if column in frame.columns:
            reward_axis.plot(frame["step"], frame[column], color=colour, marker="o", label=label)
    reward_axis.axhline(0.0, color="black", linewidth=0.8)
    reward_axis.set(xlabel="step", ylabel="AUROC − random AUROC", title="gain over random selection")
    auroc_axis.plot(frame["step"], frame["val_auroc"], color=SAMPLE, marker="o",
                    label="meta-val AUROC (MedSelect sample)")
    auroc_axis.plot(frame["step"], frame["train_auroc"], color=SAMPLE, linestyle="--",
                    label="meta-train AUROC (MedSelect sample)")
    auroc_axis.plot(frame["step"], frame["train_baseline_auroc"], color=RANDOM, linestyle="--",
                    label="meta-train AUROC (random)")
    for column, label, colour in VALIDATION_AUROC_LINES:
        if column in frame.columns:
            auroc_axis.plot(frame["step"], frame[column], color=colour, marker="o", label=label)
    chosen_by = BEST_CHECKPOINT_COLUMNS.get(best_by, "val_auroc")
    if "saved" in frame.columns and chosen_by in frame.columns:
        saved = frame["saved"].fillna("").astype(str) != ""
        auroc_axis.scatter(frame["step"][saved], frame[chosen_by][saved], marker="*", s=120, color="black",
                           zorder=3, label=f"checkpoint saved (best {best_by})")
    auroc_axis.set(xlabel="step", ylabel="query AUROC", title="query AUROC")
    for axis in (reward_axis, auroc_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def auroc_bar_chart(rows, methods, title):
    """Bars of mean query AUROC with 95% CI error bars, per condition, one bar per method.

    rows: evaluate.py's result rows (dicts with group, condition, method, mean_auroc, ci_low, ci_high).
    """
    cells = list(dict.fromkeys((r["group"], r["condition"]) for r in rows))
    by_cell = {(r["group"], r["condition"], r["method"]): r for r in rows}
    figure, axis = plt.subplots(figsize=(max(6.0, 1.0 + 0.22 * len(cells) * len(methods)), 4.5))
    width = 0.8 / len(methods)
    positions = np.arange(len(cells))
    for i, method in enumerate(methods):
        cell_rows = [by_cell[(g, c, method)] for g, c in cells]
        means = np.array([r["mean_auroc"] for r in cell_rows])
        errors = np.array([[r["mean_auroc"] - r["ci_low"] for r in cell_rows],
                           [r["ci_high"] - r["mean_auroc"] for r in cell_rows]])
        axis.bar(positions + (i - (len(methods) - 1) / 2) * width, means, width, yerr=errors, capsize=2,
                 label=method)
    axis.set_xticks(positions, [f"{c}\n({g})" for g, c in cells], rotation=45, ha="right", fontsize=8)
    low = min(r["ci_low"] for r in rows)
    axis.set_ylim(max(0.0, low - 0.05), 1.0)
    axis.set(ylabel="mean query AUROC (95% CI)", title=title)
    axis.legend(fontsize=8, ncol=min(len(methods), 6))
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def curve_chart(panels, axis_label, title, log_x=False):
    """One panel per group: mean query AUROC against a setting (K, the pool's positive fraction), one line per
    method with its 95% CI as a band.

    panels: {panel title: {method: (values, means, ci_lows, ci_highs)}}, values increasing.
    """
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for axis, (panel, curves) in zip(axes[0], panels.items()):
        for method, (values, means, lows, highs) in curves.items():
            line, = axis.plot(values, means, marker="o", label=method)
            axis.fill_between(values, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
        ticks = sorted({v for values, *_ in curves.values() for v in values})
        if log_x:
            axis.set_xscale("log")
        axis.set_xticks(ticks, [f"{v:g}" for v in ticks])
        axis.minorticks_off()
        axis.set(xlabel=axis_label, ylabel="mean query AUROC (95% CI)", title=panel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def selection_histograms(values_by_method, quantities, wasserstein):
    """One histogram panel per quantity, the methods overlaid; the title gives their Wasserstein distance."""
    columns = 4
    rows = int(np.ceil(len(quantities) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for axis, (quantity, label) in zip(axes.flat, quantities.items()):
        samples = [values_by_method[m][quantity] for m in values_by_method]
        bins = np.histogram_bin_edges(np.concatenate(samples), bins=30)
        for method, sample in zip(values_by_method, samples):
            axis.hist(sample, bins=bins, alpha=0.5, density=True, label=method)
        axis.set_title(f"{quantity}\nWasserstein {wasserstein[quantity]:.4g}", fontsize=9)
        axis.set_xlabel(label, fontsize=7)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(quantities):]:
        axis.axis("off")
    figure.tight_layout()
    return figure


def save_png(figure, path):
    """Write ``figure`` to ``path`` as PNG through a temporary file, then close it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    run_cli(main)
