"""evaluate.py --classifiers: each classifier's results and its paired difference to the paper's cosine
classifier on the same selections (docs/evaluation.md#classifiers); the scoring is classifier_scoring.py's."""
import numpy as np

from evaluation.meta_test import ALL_GROUPS, OVERALL, summarize
from evaluation.references import REFERENCES
from evaluation.report import markdown_report, per_task_csv
from models.classifiers import CLASSIFIERS, COSINE
from utils.name_lists import parse_names
from utils.stats import paired_difference

CLASSIFIER_FILES = ("classifier_differences.csv",)  # written only with several classifiers
DIFFERENCE_COLUMNS = ("group", "condition", "method", "classifier", "num_tasks", "diff_vs_cosine", "diff_ci_low",
                      "diff_ci_high", "p_value")


def parse_classifiers(text):
    """--classifiers -> [names], cosine first: it is every difference's reference, so always evaluated."""
    return list(dict.fromkeys([COSINE, *parse_names(text, "--classifiers", CLASSIFIERS, "classifier")]))


def one_class_lines(one_class, num_tasks, k=None):
    """Log lines for the methods whose selection held one class only on some task: {method: (no positive, no
    negative)} over ``num_tasks`` tasks each."""
    at = f"K={k}: " if k is not None else ""
    return [f"{at}{method}: of {num_tasks} task(s), {no_positive} had no selected positive and {no_negative} no "
            "selected negative; every classifier scores those as the paper's does (the missing class's mean "
            "similarity counts as 0)"
            for method, (no_positive, no_negative) in one_class.items() if no_positive or no_negative]


def classifier_summaries(outcome, task_sets, methods, classifiers, num_resamples, bootstrap_seed, cosine_rows):
    """({classifier: summarize's rows, each with 'classifier'}, difference rows: each classifier minus cosine
    for the same selections, per group, condition and method, with bootstrap CI and paired t-test).

    Cosine's rows are ``cosine_rows``, those of the evaluation without --classifiers (with the reference rows,
    which are cosine's: evaluation/references.py); the other classifiers' rows have the methods only."""
    by_classifier = outcome["auroc_by_classifier"]
    summaries = {c: [{"classifier": c, **row} for row in (cosine_rows if c == COSINE else summarize(
        {"auroc": by_classifier[c], "positive_fraction": outcome["positive_fraction"]}, task_sets, methods,
        num_resamples, bootstrap_seed))] for c in classifiers}
    differences = []
    for group, condition, chosen in _cells(task_sets):
        for method in methods:
            for name in classifiers:
                if name == COSINE:
                    continue
                ours = _scores(by_classifier[name], task_sets, group, method)[chosen]
                cosine = _scores(by_classifier[COSINE], task_sets, group, method)[chosen]
                paired = paired_difference(ours, cosine, num_resamples, bootstrap_seed)
                differences.append({"group": group, "condition": condition, "method": method, "classifier": name,
                                    "num_tasks": paired["n"], "diff_vs_cosine": paired["diff"],
                                    "diff_ci_low": paired["diff_ci_low"], "diff_ci_high": paired["diff_ci_high"],
                                    "p_value": paired["p_value"]})
    return summaries, differences


def _cells(task_sets):
    """(group, condition, boolean mask over that group's tasks) in summarize's order."""
    for group, task_set in task_sets.items():
        ids = task_set.condition_ids()
        for index, condition in enumerate(task_set.conditions):
            yield group, condition, ids == index
        yield group, OVERALL, np.ones(len(ids), dtype=bool)
    if len(task_sets) > 1:
        yield ALL_GROUPS, OVERALL, np.ones(sum(len(t) for t in task_sets.values()), dtype=bool)


def _scores(auroc, task_sets, group, method):
    if group == ALL_GROUPS:
        return np.concatenate([auroc[g][method] for g in task_sets])
    return auroc[group][method]


def differences_markdown(differences, methods, classifiers):
    """The table of paired differences: one row per (group, condition, selection method), one column per
    classifier other than cosine."""
    others = [c for c in classifiers if c != COSINE]
    by_key = {(r["group"], r["condition"], r["method"], r["classifier"]): r for r in differences}
    cells = list(dict.fromkeys((r["group"], r["condition"]) for r in differences))
    lines = ["Each classifier minus cosine, on the same selections of the same tasks [95% bootstrap CI], paired "
             "t-test p:", "", "| group | condition | method | " + " | ".join(f"{c} − cosine" for c in others) + " |",
             "|---|---|---|" + "---:|" * len(others)]
    for group, condition in cells:
        for method in methods:
            lines.append(f"| {group} | {condition} | {method} | " + " | ".join(
                _difference(by_key[(group, condition, method, c)]) for c in others) + " |")
    return "\n".join(lines) + "\n"


def classifier_time_markdown(classifier_seconds, methods):
    """Scoring time per task (ms) of each classifier, per selection method."""
    names = list(classifier_seconds)
    lines = ["Classifier time per task (ms, this machine; scoring the query set from one selection):", "",
             "| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {m} | " + " | ".join(f"{1000 * classifier_seconds[c][m]:.2f}" for c in names) + " |"
              for m in methods]
    return "\n".join(lines) + "\n"


def _difference(row):
    if not row["num_tasks"]:
        return "–"  # a condition none of the tasks drew
    p = row["p_value"]
    p_text = "n/a" if p is None or np.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")
    return f"{row['diff_vs_cosine']:+.3f} [{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}] p={p_text}"


def classifier_results(evaluation, methods, classifiers, num_tasks, selection, seed, num_resamples, bootstrap_seed,
                       cosine_report):
    """(results.md text, result rows with 'classifier', difference rows, per_task.csv text) of an evaluation at
    one K scored by several classifiers: one section per classifier (cosine's is ``cosine_report``), then
    the paired differences to cosine and each classifier's time per task."""
    outcome = evaluation.outcome
    summaries, differences = classifier_summaries(outcome, evaluation.task_sets, methods, classifiers,
                                                  num_resamples, bootstrap_seed, evaluation.rows)
    sections = [f"## Classifier: {c}\n\n" + (cosine_report if c == COSINE else markdown_report(
        summaries[c], methods, outcome["seconds_per_task"], num_tasks, evaluation.config, selection, seed))
        for c in classifiers]
    sections.append("## Classifiers compared\n\n" + differences_markdown(differences, methods, classifiers) + "\n"
                    + classifier_time_markdown(outcome["classifier_seconds_per_task"], methods))
    rows = [row for c in classifiers for row in summaries[c]]
    # per_task.csv: cosine's columns as without --classifiers ({method}_auroc, the references' too), then
    # {method}_{classifier}_auroc.
    cosine_columns = [*methods, *(r for r in REFERENCES if r in next(iter(outcome["auroc"].values())))]
    columns = {(m if c == COSINE else f"{m}_{c}"): (c, m) for c in classifiers
               for m in (cosine_columns if c == COSINE else methods)}
    by_column = {"auroc": {g: {name: outcome["auroc_by_classifier"][c][g][m] for name, (c, m) in columns.items()}
                           for g in evaluation.task_sets}}
    per_task = per_task_csv([(None, by_column, evaluation.task_sets)], list(columns))
    return "\n".join(sections), rows, differences, per_task
