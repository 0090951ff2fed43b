"""Budget and prevalence curves: evaluate.py at several K (--k) or pool positive fractions (--pos_frac).

Each value is one evaluation with that value as its setting (K, or UNLABELED_POS_FRAC),
every method on the same tasks, and its numbers are those of evaluate.py run with
``--set K=value`` (or ``--set UNLABELED_POS_FRAC=value``) alone. K does not enter the
drawing of a task (data/tasks.py: task i is a function of the seed, the stream, i and
the TaskShape, i.e. pool and query sizes and positives), so all K share their pools and
the budget curve is paired: the selections of every K are made from the same pools, in
one pass over the tasks. A pool's positive fraction changes the pools; its tasks keep
their seed and index. The query set keeps QUERY_POS_FRAC (balanced by default) at every
value, so the AUROCs stay comparable.
"""
import math
from dataclasses import dataclass

from data.tasks import TaskShape
from utils.config import apply_overrides
from utils.errors import UserError


@dataclass(frozen=True)
class Sweep:
    """The values one curve evaluates, and how they show in the results."""
    parameter: str  # the results table's column: 'k' or 'pos_frac'
    setting: str  # the configuration value each point sets
    values: tuple
    figure: str  # file name of the curve
    axis_label: str

    def label(self, value, config):
        """A point's heading in results.md, e.g. 'K = 10' or 'pool positive fraction 0.2 (4 of 20)'."""
        if self.parameter == "k":
            return f"K = {value}"
        shape = TaskShape.from_config(config)
        return f"pool positive fraction {value:g} ({shape.pool_positives} of {shape.pool_size} positive)"


SWEEPS = {
    "k": dict(setting="K", kind=int, figure="budget_curve.png", axis_label="K (X-rays labelled)"),
    "pos_frac": dict(setting="UNLABELED_POS_FRAC", kind=float, figure="prevalence_curve.png",
                     axis_label="positive fraction of the pool"),
}
CURVE_FILES = tuple(spec["figure"] for spec in SWEEPS.values())


def parse_sweep(k_text, pos_frac_text):
    """--k / --pos_frac -> a Sweep, or None for one evaluation at the configuration's values."""
    given = {name: text for name, text in (("k", k_text), ("pos_frac", pos_frac_text)) if text is not None}
    if not given:
        return None
    if len(given) > 1:
        raise UserError("--k and --pos_frac: give one of them (one curve per evaluation); for a budget curve at "
                        "another prevalence add --set UNLABELED_POS_FRAC=..., for a prevalence curve at another K "
                        "--set K=...")
    (parameter, text), = given.items()
    spec = SWEEPS[parameter]
    values = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = spec["kind"](item)
        except ValueError:
            raise UserError(f"--{parameter}: expected comma-separated {spec['kind'].__name__} values, e.g. "
                            f"{'5,10,20,50' if parameter == 'k' else '0.5,0.2,0.1'}; got {item!r}") from None
        if not math.isfinite(value):
            raise UserError(f"--{parameter}: {item!r} is not a number")
        if value not in values:
            values.append(value)
    return Sweep(parameter, spec["setting"], tuple(values), spec["figure"], spec["axis_label"])


def sweep_points(sweep, config):
    """[(value, configuration of that point)]; [(None, config)] without a sweep. Each point's configuration
    is checked as a --set of it would be (K at most the pool size, a fraction within [0, 1], ...)."""
    if sweep is None:
        return [(None, config)]
    points = []
    for value in sweep.values:
        try:
            points.append((value, apply_overrides(config, [f"{sweep.setting}={value}"])))
        except UserError as err:
            raise UserError(f"--{sweep.parameter} {value}: {err}") from None
    return points


def by_task_shape(points):
    """{TaskShape: [(value, config)]}: points whose tasks are the same, because they differ in K only."""
    groups = {}
    for value, config in points:
        groups.setdefault(TaskShape.from_config(config), []).append((value, config))
    return groups


def table_rows(sweep, rows_by_value):
    """The results table of a curve: each point's result rows with the value as the first column."""
    return [{sweep.parameter: value, **row} for value, rows in rows_by_value for row in rows]


def curve_points(overall_rows, sweep, group, method):
    """(values, means, ci_lows, ci_highs) of ``method`` over all tasks of ``group``, in increasing value:
    what its curve draws. ``overall_rows``: the rows of ``table_rows`` that cover every task of their group."""
    chosen = {}
    for row in overall_rows:
        if row["group"] == group and row["method"] == method and row["num_tasks"]:
            chosen.setdefault(row[sweep.parameter], row)  # a method's rows for each reference share mean and CI
    values = sorted(chosen)
    return (values, [chosen[v]["mean_auroc"] for v in values], [chosen[v]["ci_low"] for v in values],
            [chosen[v]["ci_high"] for v in values])


def column_title(sweep, value):
    return f"K={value}" if sweep.parameter == "k" else f"{value:g} positive"


def overview_markdown(sweep, overall_rows, methods, groups):
    """A Markdown table: mean query AUROC [95% CI] over all tasks of each group, one column per value."""
    values = list(sweep.values)
    paired = ("the same pools at every K" if sweep.parameter == "k" else
              "the same seed and task index at every fraction; the pools differ")
    lines = [f"Mean query AUROC [95% bootstrap CI] over all tasks of each group ({paired}):", "",
             "| group | method | " + " | ".join(column_title(sweep, v) for v in values) + " |",
             "|---|---|" + "---:|" * len(values)]
    for group in groups:
        for method in methods:
            drawn, means, lows, highs = curve_points(overall_rows, sweep, group, method)
            cells = {v: f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for v, m, lo, hi in zip(drawn, means, lows, highs)}
            lines.append(f"| {group} | {method} | " + " | ".join(cells.get(v, "–") for v in values) + " |")
    return "\n".join(lines) + "\n"
