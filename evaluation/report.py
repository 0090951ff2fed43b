"""evaluate.py's results as text: the Markdown report and the per-task CSV."""
import math

from evaluation.meta_test import MEDSELECT_MODES, paired_references, selection_mode
from evaluation.references import REFERENCES, headroom_markdown, positive_fraction_markdown
from utils.csv_text import csv_text


def markdown_report(rows, methods, seconds_per_task, num_tasks, config, selection, seed):
    """The results as Markdown: AUROC table (the reference rows of ``rows`` in the last columns), one
    paired-difference table per MedSelect variant, the headroom and each method's share of it, the fraction of
    positives selected, selection time per task."""
    cells = list(dict.fromkeys((r["group"], r["condition"]) for r in rows))
    references = [m for m in REFERENCES if any(r["method"] == m for r in rows)]
    by_cell = {(r["group"], r["condition"], r["method"]): r for r in rows}
    modes = ", ".join(f"{m}: {selection_mode(m, selection)}" for m in methods if m in MEDSELECT_MODES)
    lines = [f"Mean query AUROC [95% bootstrap CI] on identical meta-test tasks: K={config['K']}, pool "
             f"{config['UNLABELED_POOL_SIZE']}, query {config['QUERY_SET_SIZE']}, {num_tasks} tasks per group, "
             f"seed {seed}" + (f"; selection modes {modes}." if modes else "."), "",
             "| group | condition | tasks | " + " | ".join([*methods, *(f"{m} (reference)" for m in references)])
             + " |", "|---|---|---:|" + "---:|" * (len(methods) + len(references))]
    for group, condition in cells:
        first = by_cell[(group, condition, methods[0])]
        lines.append(f"| {group} | {condition} | {first['num_tasks']} | " + " | ".join(
            _mean_ci(by_cell[(group, condition, m)]) for m in [*methods, *references]) + " |")
    by_pair = {(r["group"], r["condition"], r["reference"], r["method"]): r for r in rows if r["reference"]}
    references = paired_references(methods)
    for reference in [m for m in methods if m in MEDSELECT_MODES]:
        compared = [m for m in methods if reference in references[m]]
        if not compared:
            continue
        lines += ["", f"{reference} minus each method, paired on the same tasks [95% bootstrap CI], paired t-test p:",
                  "", "| group | condition | " + " | ".join(f"− {m}" for m in compared) + " |",
                  "|---|---|" + "---:|" * len(compared)]
        for group, condition in cells:
            lines.append(f"| {group} | {condition} | " + " | ".join(
                _difference(by_pair.get((group, condition, reference, m))) for m in compared) + " |")
    if references:
        lines += headroom_markdown(rows, methods)
    lines += positive_fraction_markdown(rows, methods)
    lines += ["", "Selection time per task (ms, this machine):", "", "| method | ms / task |", "|---|---:|"]
    lines += [f"| {m} | {1000 * seconds_per_task[m]:.2f} |" for m in methods]
    return "\n".join(lines) + "\n"


def _mean_ci(row):
    if not row["num_tasks"]:
        return "–"
    return f"{row['mean_auroc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def _difference(row):
    if row is None or row["diff_vs_medselect"] is None:
        return "–"
    p = row["p_value"]
    p_text = "n/a" if p is None or math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")
    return (f"{row['diff_vs_medselect']:+.3f} [{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}] "
            f"p={p_text}")


def per_task_csv(evaluations, methods, parameter=None):
    """Every task's condition and each method's AUROC; ``evaluations``: [(value, outcome, task sets)], the value
    being the first column when a curve's ``parameter`` is given."""
    leading = [parameter] if parameter else []
    columns = leading + ["group", "task", "condition"] + [f"{m}_auroc" for m in methods]
    rows = []
    for value, outcome, task_sets in evaluations:
        for group, task_set in task_sets.items():
            names = [task_set.conditions[i] for i in task_set.condition_ids()]
            aurocs = [outcome["auroc"][group][m] for m in methods]
            for task, name in enumerate(names):
                values = ([value] if parameter else []) + [group, task, name] + [repr(float(a[task])) for a in aurocs]
                rows.append(dict(zip(columns, values)))
    return csv_text(rows, columns)


def read_paired_difference(overall, group, first, second):
    """(difference, CI low, CI high) of ``first`` − ``second`` on ``group``'s tasks, read from results.csv's
    rows (a DataFrame, one condition) whichever of the two is the pair's reference: results.csv stores
    reference − method, so the other order is the negation with its interval's ends swapped."""
    rows = overall[overall["group"] == group]
    pair, sign = rows[(rows["reference"] == first) & (rows["method"] == second)], 1
    if pair.empty:
        pair, sign = rows[(rows["reference"] == second) & (rows["method"] == first)], -1
    if pair.empty:
        raise KeyError(f"results.csv has no paired difference of {first} and {second} for group {group}")
    diff, low, high = (sign * pair[["diff_vs_medselect", "diff_ci_low", "diff_ci_high"]].iloc[0]).tolist()
    low, high = sorted((low, high))
    return diff, low, high
