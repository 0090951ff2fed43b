"""evaluate.py's reference rows, the headroom they give, and the fraction of positives a selection holds.

Two references are scored on the same tasks as the methods (docs/evaluation.md#headroom):

* ``all-pool-labels``: the cosine classifier built from every pool X-ray with its label. No selection
  of K can know more about the pool, so it is what selection could at most approach.
* ``best-of-random``: per task, the best query AUROC of BEST_OF_RANDOM_DRAWS random K-selections. An
  oracle (it picks the draw with the query labels): how far the luck of the draw alone can go.

Neither is a method a user can run: both need labels the user does not have. ``headroom`` =
all-pool-labels - random (the mean AUROC of K random labels); a method's share of it =
(method - random) / headroom, so random's share is 0 and all-pool-labels' is 1.
"""
import math

import numpy as np
import torch
from tqdm import tqdm

from engine import selection_auroc
from models.classifier import MeanSimilarityClassifier
from utils.seeding import BASELINE_SELECTION

ALL_POOL_LABELS, BEST_OF_RANDOM = "all-pool-labels", "best-of-random"
REFERENCES = (ALL_POOL_LABELS, BEST_OF_RANDOM)
BEST_OF_RANDOM_DRAWS = 20  # random K-selections per task of which best-of-random keeps the best
# best-of-random's random numbers: task t's from [seed, BASELINE_SELECTION, this, t], a stream apart from those of
# models/baselines.RANDOM_STREAMS (small numbers), so it draws independently of the 'random' baseline.
BEST_OF_RANDOM_STREAM = 1000
RANDOM = "random"  # the baseline the headroom is measured from (models/baselines.py)
METHOD_KIND, REFERENCE_KIND = "method", "reference"  # results.csv's 'kind' column


def all_pool_labels_auroc(table, tasks, classifier, query_embeddings):
    """(B,) query AUROC of the classifier built from every pool X-ray of each task with its label."""
    every_position = torch.arange(tasks.pool_rows.shape[1], device=tasks.pool_rows.device)
    return selection_auroc(table, tasks, every_position.expand_as(tasks.pool_rows), classifier, query_embeddings)


def random_draws(pool_size, k, seed, task_ids, draws=BEST_OF_RANDOM_DRAWS, device="cpu"):
    """(B, draws, k) pool positions: ``draws`` random K-selections (K distinct X-rays each) per task, task t's
    from its own generator, so they do not depend on the batch, the other tasks or the other K."""
    noise = np.stack([np.random.default_rng([seed, BASELINE_SELECTION, BEST_OF_RANDOM_STREAM, int(t)])
                      .random((draws, pool_size)) for t in task_ids])  # (B, draws, P)
    return torch.from_numpy(noise).to(device).topk(k, dim=-1).indices


def random_draw_aurocs(table, tasks, k, seed, task_ids, classifier, query_embeddings, draws=BEST_OF_RANDOM_DRAWS):
    """((B, draws) query AUROC of each random K-selection, (B, draws, k) the selections)."""
    selections = random_draws(tasks.pool_rows.shape[1], k, seed, task_ids, draws, tasks.pool_rows.device)
    aurocs = torch.stack([selection_auroc(table, tasks, selections[:, d], classifier, query_embeddings)
                          for d in range(draws)], dim=1)  # (B, draws)
    return aurocs, selections


def positive_fraction(tasks, selection):
    """(B,) fraction of positives among the selected pool positions (B, K); a position chosen twice counts
    twice, as it does in the classifier."""
    return tasks.pool_labels.gather(1, selection).double().mean(1)


@torch.no_grad()
def evaluate_references(task_sets, table, ks, batch_size, seed, device, description="references"):
    """Per-task AUROC and fraction of positives of each reference, at every K, on the tasks of each group.

    Task ids count from 0 in each group, as evaluate_methods's do. Returns {k: {'auroc': {group:
    {reference: (N,)}}, 'positive_fraction': {group: {reference: (N,)}}}}; all-pool-labels does not depend
    on K (its positive fraction is the pool's).
    """
    ks = list(dict.fromkeys(ks))
    classifier = MeanSimilarityClassifier("cosine")
    found = {k: {key: {group: {r: [] for r in REFERENCES} for group in task_sets}
                 for key in ("auroc", "positive_fraction")} for k in ks}
    total = sum(len(tasks) for tasks in task_sets.values())
    with tqdm(total=total, desc=description, unit="task", dynamic_ncols=True) as bar:
        for group, task_set in task_sets.items():
            first = 0
            for tasks in task_set.batches(batch_size, device):
                task_ids = range(first, first + len(tasks))
                query = table.classifier_input(tasks.query_rows)  # (B, Q, D)
                everything = all_pool_labels_auroc(table, tasks, classifier, query).cpu()
                pool_fraction = tasks.pool_labels.double().mean(1).cpu()
                for k in ks:
                    aurocs, selections = random_draw_aurocs(table, tasks, k, seed, task_ids, classifier, query)
                    best, best_draw = aurocs.max(dim=1)  # (B,)
                    chosen = selections[torch.arange(len(tasks), device=selections.device), best_draw]  # (B, k)
                    for key, reference, values in (("auroc", ALL_POOL_LABELS, everything),
                                                   ("positive_fraction", ALL_POOL_LABELS, pool_fraction),
                                                   ("auroc", BEST_OF_RANDOM, best.cpu()),
                                                   ("positive_fraction", BEST_OF_RANDOM,
                                                    positive_fraction(tasks, chosen).cpu())):
                        found[k][key][group][reference].append(values)
                first += len(tasks)
                bar.update(len(tasks))
    classifier.report_missing_classes()
    return {k: {key: {g: {r: torch.cat(v).numpy().astype(np.float64) for r, v in by.items()}
                      for g, by in groups.items()} for key, groups in found[k].items()} for k in ks}


def with_references(outcomes, references):
    """evaluate_methods's ``outcomes`` with the references' per-task AUROC and positive fraction added."""
    for k, outcome in outcomes.items():
        for key in ("auroc", "positive_fraction"):
            for group, values in references[k][key].items():
                outcome[key][group].update(values)
    return outcomes


def headroom(random_auroc, all_pool_auroc):
    """all-pool-labels - random: how much the choice of K labels could at most gain over random ones."""
    return all_pool_auroc - random_auroc


def headroom_share(auroc, random_auroc, all_pool_auroc):
    """(auroc - random) / headroom; None where there is no headroom to share (headroom <= 0 or not finite)."""
    room = headroom(random_auroc, all_pool_auroc)
    if not math.isfinite(room) or room <= 0 or not math.isfinite(auroc):
        return None
    return (auroc - random_auroc) / room


def add_headroom_shares(rows):
    """Set each result row's 'headroom_share' from its cell's (group, condition) random and all-pool-labels
    mean AUROC; None where either is missing (random not among the methods) or there is no headroom."""
    means = {(r["group"], r["condition"], r["method"]): r["mean_auroc"] for r in rows}
    for row in rows:
        cell = (row["group"], row["condition"])
        random_auroc, all_pool = means.get((*cell, RANDOM)), means.get((*cell, ALL_POOL_LABELS))
        row["headroom_share"] = (None if random_auroc is None or all_pool is None
                                 else headroom_share(row["mean_auroc"], random_auroc, all_pool))
    return rows


def fraction_summary(values):
    """{'positive_fraction', 'positive_fraction_min', 'positive_fraction_max'}: the mean and range over tasks."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return {"positive_fraction": None, "positive_fraction_min": None, "positive_fraction_max": None}
    return {"positive_fraction": float(values.mean()), "positive_fraction_min": float(values.min()),
            "positive_fraction_max": float(values.max())}


def headroom_markdown(rows, methods):
    """results.md's headroom table: per cell, random, all-pool-labels, the headroom and every method's share."""
    by_cell = {(r["group"], r["condition"], r["method"]): r for r in rows}
    cells = list(dict.fromkeys((r["group"], r["condition"]) for r in rows))
    lines = ["", f"Headroom = {ALL_POOL_LABELS} − {RANDOM} (mean AUROC of the classifier from every pool X-ray's label "
                 f"minus that of K random labels): what the choice of K X-rays could at most gain. Share = (method − "
                 f"{RANDOM}) / headroom. The references are not methods a user can run: {ALL_POOL_LABELS} needs every "
                 f"pool label, {BEST_OF_RANDOM} (per task the best of {BEST_OF_RANDOM_DRAWS} random K-selections) "
                 "picks with the query labels.", ""]
    if RANDOM not in methods:
        return lines[:-1] + [f"(no headroom: add {RANDOM} to --methods)"]
    shared = [m for m in methods if m != RANDOM] + [BEST_OF_RANDOM]
    lines += ["| group | condition | random | all-pool-labels | headroom | " + " | ".join(
              f"share {m}" for m in shared) + " |", "|---|---|---:|---:|---:|" + "---:|" * len(shared)]
    for group, condition in cells:
        random_row, all_pool_row = by_cell.get((group, condition, RANDOM)), by_cell.get((group, condition,
                                                                                      ALL_POOL_LABELS))
        if random_row is None or all_pool_row is None or not random_row["num_tasks"]:
            continue
        room = headroom(random_row["mean_auroc"], all_pool_row["mean_auroc"])
        shares = [by_cell[(group, condition, m)].get("headroom_share") if (group, condition, m) in by_cell else None
                  for m in shared]
        lines.append(f"| {group} | {condition} | {random_row['mean_auroc']:.3f} | {all_pool_row['mean_auroc']:.3f} | "
                     f"{room:+.3f} | " + " | ".join("–" if s is None else f"{s:.0%}" for s in shares) + " |")
    return lines


def positive_fraction_markdown(rows, methods):
    """results.md's table of the fraction of positives among the selected X-rays: mean [min, max] over tasks."""
    by_cell = {(r["group"], r["condition"], r["method"]): r for r in rows}
    cells = list(dict.fromkeys((r["group"], r["condition"]) for r in rows))
    shown = list(methods) + [r for r in REFERENCES if any(row["method"] == r for row in rows)]
    lines = ["", "Fraction of positives among the selected X-rays, mean [min, max] over tasks (a draw taken twice "
                 f"counts twice; {ALL_POOL_LABELS}: the whole pool's):", "",
             "| group | condition | " + " | ".join(shown) + " |", "|---|---|" + "---:|" * len(shown)]
    for group, condition in cells:
        values = [by_cell.get((group, condition, m)) for m in shown]
        lines.append(f"| {group} | {condition} | " + " | ".join(
            "–" if v is None or v.get("positive_fraction") is None else
            f"{v['positive_fraction']:.2f} [{v['positive_fraction_min']:.2f}, {v['positive_fraction_max']:.2f}]"
            for v in values) + " |")
    return lines
