"""What evaluate.py computes: every method's query AUROC on identical meta-test tasks, and the summary rows.

Every method selects K X-rays from the pools of the same deterministic tasks (same pools, same query
sets) and the cosine classifier built from each selection is scored by its query AUROC. MedSelect is
evaluated as separate methods, one per selection mode (the paper's Experiments; docs/evaluation.md).
"""
import time
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from data.tasks import HELD_OUT_TEST_STREAM, TEST_STREAM, FixedTaskSet, TaskSampler
from engine import SAMPLE, SAMPLE_DISTINCT, TOPK, select_from_logits, selection_auroc, selector_logits
from evaluation.classifier_scoring import count_one_class, make_classifiers, task_auroc
from evaluation.references import (METHOD_KIND, REFERENCE_KIND, REFERENCES, add_headroom_shares, fraction_summary,
                                   positive_fraction)
from evaluation.selection_analysis import compare_selections, selection_quantities
from models.baselines import BASELINE_METHODS, prepare_pools, select_prepared
from models.checkpoint import checkpoint_seed, selector_from_checkpoint
from models.classifiers import COSINE
from models.selector import untrained_like
from utils.seeding import TEST_SELECTION, derived_seed
from utils.stats import mean_with_ci, paired_difference

MEDSELECT, UNTRAINED = "medselect", "medselect-untrained"
# MedSelect variant -> its selection mode (None: the mode of --selection). The order is that of the paired
# differences: each variant is compared with every variant after it and with every baseline.
MEDSELECT_MODES = {MEDSELECT: None, "medselect-sample": SAMPLE, "medselect-sample-distinct": SAMPLE_DISTINCT,
                   "medselect-topk": TOPK, UNTRAINED: None}
# medselect-untrained in each mode of the trained variants evaluated beside it (with_untrained_modes): named by
# their mode, they are not asked for by name, so METHODS (what --methods accepts) leaves them out.
UNTRAINED_IN_MODE = {f"{UNTRAINED}-{mode}": mode for mode in (SAMPLE, SAMPLE_DISTINCT, TOPK)}
METHODS = tuple(MEDSELECT_MODES) + BASELINE_METHODS
MEDSELECT_MODES.update(UNTRAINED_IN_MODE)
UNTRAINED_VARIANTS = (UNTRAINED, *UNTRAINED_IN_MODE)
GROUPS = {"seen": "NON_HOLD_OUT", "unseen": "HOLD_OUT"}  # group -> the config list it draws conditions from
TASK_STREAMS = {"seen": TEST_STREAM, "unseen": HELD_OUT_TEST_STREAM}  # independent tasks for the two groups
ALL_GROUPS = "all"  # the seen and unseen tasks together
OVERALL = "overall"  # the condition label of a row that covers every task of its group
# diff_vs_medselect = reference - method, on the same tasks; reference names the MedSelect variant.
# kind: 'method', or 'reference' for the rows of evaluation/references.py (not methods a user can run);
# positive_fraction: mean fraction of positives among the selected X-rays over the tasks, with its min and max;
# headroom_share: (mean_auroc - random's) / (all-pool-labels' - random's) in the same cell.
RESULT_COLUMNS = ("group", "condition", "method", "num_tasks", "mean_auroc", "ci_low", "ci_high",
                  "reference", "diff_vs_medselect", "diff_ci_low", "diff_ci_high", "p_value",
                  "kind", "positive_fraction", "positive_fraction_min", "positive_fraction_max", "headroom_share")


class Evaluation(NamedTuple):
    """The evaluation of one point of a curve (or the one evaluation without a curve)."""
    value: object  # the point's K or pool positive fraction; None without a curve
    config: dict  # the configuration with that value set
    task_sets: dict  # {group: FixedTaskSet}
    outcome: dict  # evaluate_methods's result at the point's K
    rows: list  # summarize's result rows


def load_selectors(checkpoint, path, variants, input_size, seed, log):
    """{MedSelect variant: its selector}: the trained variants share the checkpoint's selector."""
    if not variants:
        return {}
    trained = selector_from_checkpoint(checkpoint, input_size, path)
    selectors = {m: trained for m in variants if m not in UNTRAINED_VARIANTS}
    untrained_variants = [m for m in variants if m in UNTRAINED_VARIANTS]
    if untrained_variants:
        untrained_seed = checkpoint_seed(checkpoint, seed)
        untrained = untrained_like(trained, untrained_seed)
        selectors.update(dict.fromkeys(untrained_variants, untrained))  # one selector: its logits are computed once
        log.info("%s: the initial weights of seed %d (%s)", ", ".join(untrained_variants), untrained_seed,
                 "the seed stored in the checkpoint" if "seed" in checkpoint else
                 "--seed: the checkpoint does not record the seed of its run")
    return selectors


def meta_test_tasks(table, groups, shape, seed, num_tasks):
    """{group: FixedTaskSet}: tasks 0..num_tasks-1 of each group's own stream."""
    return {group: FixedTaskSet(TaskSampler(table, group_conditions, shape, seed, TASK_STREAMS[group]), num_tasks)
            for group, group_conditions in groups.items()}


def with_untrained_modes(methods, selection):
    """``methods`` with medselect-untrained also in every selection mode of the trained variants among them.

    medselect-untrained itself keeps the mode of --selection; for each other mode of a trained variant,
    medselect-untrained-{mode} follows it, so that every trained mode has its untrained counterpart.
    """
    if UNTRAINED not in methods:
        return list(methods)
    covered = {selection_mode(m, selection) for m in methods if m in UNTRAINED_VARIANTS}
    added = []
    for method in methods:
        mode = selection_mode(method, selection) if method in MEDSELECT_MODES else None
        if method in MEDSELECT_MODES and method not in UNTRAINED_VARIANTS and mode not in covered:
            covered.add(mode)
            added.append(f"{UNTRAINED}-{mode}")
    at = list(methods).index(UNTRAINED) + 1  # beside medselect-untrained
    return list(methods)[:at] + added + list(methods)[at:]


def selection_mode(variant, selection):
    """'sample' or 'topk': the selection mode of a MedSelect variant, given --selection."""
    return MEDSELECT_MODES[variant] or selection


def paired_references(methods):
    """{method: [MedSelect variants it is compared with]}: each variant against every baseline and every
    variant after it in MEDSELECT_MODES's order (so untrained against trained, topk against sample)."""
    variants = [m for m in MEDSELECT_MODES if m in methods]
    return {method: [] if method in REFERENCES else [v for v in variants if method not in MEDSELECT_MODES
                     or list(MEDSELECT_MODES).index(method) > list(MEDSELECT_MODES).index(v)]
            for method in methods}


def evaluate_methods(methods, task_sets, table, selectors, ks, batch_size, selection, seed, device,
                     keep_selections=(), description="meta-test", classifiers=(COSINE,)):
    """Per-task query AUROC of every method at every K of ``ks`` on every task set.

    ``selectors`` maps each MedSelect variant of ``methods`` to its selector; ``selection`` is the
    mode of the variants without their own. Every method gets the same TaskBatch (same pools, same
    query sets) at every K, and what does not depend on K is computed once per batch: the query
    embeddings, the selector's logits (once per selector, for all its variants), the baselines'
    PreparedPools. Each (variant, K) draws from a generator of its own, seeded as an evaluation at that K
    alone seeds it, so every K's numbers are that evaluation's. Returns {k: {'auroc': {group: {method:
    (N,)}}, 'selection': {group: {method: {'rows', 'labels'}: (N, k) table rows and labels of the selected
    X-rays}} for the methods in ``keep_selections``, 'positive_fraction': {group: {method: (N,) fraction of
    positives among the selected}}, 'seconds_per_task': {method: float} (selection time: the shared work plus
    that K's)}}.

    Each selection is scored by every classifier named in ``classifiers`` (models/classifiers.py; the first
    one's AUROC is 'auroc'): each K's entry also holds 'auroc_by_classifier': {classifier: {group: {method:
    (N,)}}}, 'classifier_seconds_per_task': {classifier: {method: float}} and 'one_class_tasks': {method:
    (tasks whose selection holds no positive, no negative)}.
    """
    ks = list(dict.fromkeys(ks))
    scorers = make_classifiers(classifiers)
    seconds = {k: dict.fromkeys(methods, 0.0) for k in ks}
    auroc = {k: {c: {group: {m: [] for m in methods} for group in task_sets} for c in scorers} for k in ks}
    classifier_seconds = {k: {c: dict.fromkeys(methods, 0.0) for c in scorers} for k in ks}
    one_class = {k: {m: torch.zeros(2, dtype=torch.int64, device=device) for m in methods} for k in ks}
    positives = {k: {group: {m: [] for m in methods} for group in task_sets} for k in ks}
    selections = {k: {group: {m: [] for m in keep_selections} for group in task_sets} for k in ks}
    total = sum(len(tasks) for tasks in task_sets.values())
    with tqdm(total=total, desc=description, unit="task", dynamic_ncols=True) as bar:
        for group, task_set in task_sets.items():
            # MedSelect's draws for a group do not depend on which other groups, methods or K are evaluated: each
            # sampling variant draws from its own generator at each K, seeded alike (common random numbers).
            group_seed = derived_seed(derived_seed(seed, TEST_SELECTION), list(GROUPS).index(group))
            generators = {(m, k): torch.Generator(device=device).manual_seed(group_seed) for m in selectors for k in ks}
            first = 0
            for tasks in task_set.batches(batch_size, device):
                task_ids = range(first, first + len(tasks))
                query = table.classifier_input(tasks.query_rows)  # (B, Q, D)
                pool = table.classifier_input(tasks.pool_rows) if any(
                    c.uses_unlabelled for c in scorers.values()) else None  # (B, P, D)
                logits = {}  # selector -> ((B, P) logits, seconds to compute them)
                for method in methods:
                    started = _clock(device)
                    if method in selectors:
                        if selectors[method] not in logits:
                            logits[selectors[method]] = (selector_logits(selectors[method], table, tasks),
                                                         _clock(device) - started)
                        inputs, shared_seconds = logits[selectors[method]]
                    else:
                        inputs = prepare_pools(method, table.classifier_input(tasks.pool_rows))
                        shared_seconds = _clock(device) - started
                    for k in ks:
                        started = _clock(device)
                        if method in selectors:
                            chosen = select_from_logits(inputs, k, selection_mode(method, selection),
                                                        generators[(method, k)])  # (B, k)
                        else:
                            chosen = select_prepared(inputs, k, seed, task_ids)  # (B, k)
                        seconds[k][method] += shared_seconds + _clock(device) - started
                        one_class[k][method] += count_one_class(tasks, chosen)
                        for name, classifier in scorers.items():
                            started = _clock(device)
                            # Classifiers that read only the selection go through training's own scoring.
                            auroc[k][name][group][method].append((
                                task_auroc(table, tasks, chosen, classifier, query, pool) if classifier.uses_unlabelled
                                else selection_auroc(table, tasks, chosen, classifier, query)).cpu())
                            classifier_seconds[k][name][method] += _clock(device) - started
                        positives[k][group][method].append(positive_fraction(tasks, chosen).cpu())
                        if method in keep_selections:
                            selections[k][group][method].append((tasks.pool_rows.gather(1, chosen).cpu(),
                                                                 tasks.pool_labels.gather(1, chosen).cpu()))
                first += len(tasks)
                bar.update(len(tasks))
    by_classifier = {k: {c: {g: {m: torch.cat(a).numpy().astype(np.float64) for m, a in by.items()}
                             for g, by in auroc[k][c].items()} for c in scorers} for k in ks}
    return {k: {"auroc": by_classifier[k][next(iter(scorers))],
                "auroc_by_classifier": by_classifier[k],
                "classifier_seconds_per_task": {c: {m: s / total for m, s in by.items()}
                                                for c, by in classifier_seconds[k].items()},
                "one_class_tasks": {m: tuple(int(n) for n in counts.tolist()) for m, counts in one_class[k].items()},
                "positive_fraction": {g: {m: torch.cat(f).numpy() for m, f in by.items()}
                                      for g, by in positives[k].items()},
                "selection": {g: {m: {"rows": torch.cat([r for r, _ in s]).numpy(),
                                      "labels": torch.cat([lab for _, lab in s]).numpy()} for m, s in by.items()}
                              for g, by in selections[k].items()},
                "seconds_per_task": {m: s / total for m, s in seconds[k].items()}}
            for k in ks}


def _clock(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def summarize(outcome, task_sets, methods, num_resamples, bootstrap_seed):
    """Result rows: per group, per condition and overall, each method's mean AUROC and CI, once per
    MedSelect variant it is compared with (``reference``), with that variant's paired difference to
    it (same tasks, same bootstrap resamples); once, without a difference, if it is compared with none.
    Each row also holds the method's fraction of positives selected (mean, min, max over the cell's tasks),
    its kind ('reference' for evaluation/references.py's rows, which ``methods`` may include; they are
    compared with nothing) and its share of the cell's headroom."""
    cells = []  # (group, condition, {method: per-task AUROC}, {method: per-task fraction of positives selected})
    for group, task_set in task_sets.items():
        condition_ids = task_set.condition_ids()
        scores, fractions = outcome["auroc"][group], outcome["positive_fraction"][group]
        for index, condition in enumerate(task_set.conditions):
            chosen = condition_ids == index
            cells.append((group, condition, {m: s[chosen] for m, s in scores.items()},
                          {m: f[chosen] for m, f in fractions.items()}))
        cells.append((group, OVERALL, scores, fractions))
    if len(task_sets) > 1:
        cells.append((ALL_GROUPS, OVERALL, *({m: np.concatenate([outcome[key][g][m] for g in task_sets])
                                              for m in methods} for key in ("auroc", "positive_fraction"))))
    references = paired_references(methods)
    rows = []
    for group, condition, scores, fractions in cells:
        for method in methods:
            summary = mean_with_ci(scores[method], num_resamples, bootstrap_seed)
            row = {"group": group, "condition": condition, "method": method, "num_tasks": summary["n"],
                   "mean_auroc": summary["mean"], "ci_low": summary["ci_low"], "ci_high": summary["ci_high"],
                   "reference": None, "diff_vs_medselect": None, "diff_ci_low": None, "diff_ci_high": None,
                   "p_value": None, "kind": REFERENCE_KIND if method in REFERENCES else METHOD_KIND,
                   **fraction_summary(fractions[method]), "headroom_share": None}
            if not references[method] or not summary["n"]:
                rows.append(row)
            for reference in references[method] if summary["n"] else ():
                paired = paired_difference(scores[reference], scores[method], num_resamples, bootstrap_seed)
                rows.append({**row, "reference": reference, "diff_vs_medselect": paired["diff"],
                             "diff_ci_low": paired["diff_ci_low"], "diff_ci_high": paired["diff_ci_high"],
                             "p_value": paired["p_value"]})
    return add_headroom_shares(rows)


def analyse_selections(outcome, task_sets, demographics, embeddings, analysed):
    """Selection-analysis rows per group (and for all tasks together), and the group that is plotted
    (all tasks when there are several groups) with its values {method: {quantity: values}}, for the
    two methods ``analysed``."""
    groups = {}
    for group in task_sets:
        kept = outcome["selection"][group]
        groups[group] = {m: selection_quantities(embeddings, kept[m]["rows"], kept[m]["labels"], demographics)
                         for m in analysed}
    if len(groups) > 1:
        groups[ALL_GROUPS] = {m: {q: np.concatenate([groups[g][m][q] for g in task_sets])
                                  for q in groups[next(iter(task_sets))][m]} for m in analysed}
    rows = [{"group": group, **row} for group, values in groups.items() for row in compare_selections(values)]
    plotted = list(groups)[-1]
    return rows, plotted, groups[plotted]
