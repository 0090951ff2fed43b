"""Choosing which K of a user's X-rays a radiologist should label: the trained selector, or a baseline.

The selector was meta-trained on pools of ``UNLABELED_POOL_SIZE`` X-rays, each
read as one shuffled sequence (the paper's Methods; docs/own_xrays.md). A user's pool may hold any number
of X-rays. It is read in a random order drawn from the seed (a CSV is often
sorted by patient or date, which training never showed the BiLSTM), and a pool
larger than the trained size is handled by one of two strategies:

* ``chunks``: split the shuffled pool into near-equal chunks of at most the
  trained size; each chunk gets a share of the K picks proportional to its size.
* ``whole``: the BiLSTM reads the whole pool as one sequence.

``DEFAULT_LARGE_POOL`` was chosen by measuring both on held-out tasks
(bench/large_pool_strategy.py; numbers in docs/own_xrays.md).
"""
import logging
import math

import numpy as np
import torch

from data.asl import ASL_SIZE, append_asl, asl_features
from data.embedding_origin import check_same_encoder
from engine import SAMPLE_DISTINCT, TOPK
from medselect.pool import PATH_COLUMN, load_pool, read_table
from models.baselines import BASELINE_METHODS, select_baseline
from models.checkpoint import checkpoint_config, checkpoint_origin, load_checkpoint, selector_from_checkpoint
from models.validation_record import checkpoint_no_gain_message, preferred_mode
from utils.config import apply_overrides, default_config
from utils.errors import UserError
from utils.logs import LOGGER_NAME
from utils.seeding import SELECT_XRAYS, torch_generator

log = logging.getLogger(LOGGER_NAME)

MEDSELECT = "medselect"  # the trained selector; every other method is a baseline of models/baselines.py
METHODS = (MEDSELECT, *BASELINE_METHODS)
# select()'s choices (select_xrays.py --selection) as engine.py's selection modes: a label is never spent twice on
# one X-ray, so 'sample' here is K distinct draws (SAMPLE_DISTINCT), not training's draws with replacement.
SELECTION_MODE_OF = {"sample": SAMPLE_DISTINCT, "topk": TOPK}
SELECTIONS = tuple(SELECTION_MODE_OF)
# Without a selection, the mode that validated better for the checkpoint (models/validation_record.py); this one
# for a checkpoint that does not record both modes (the original's): the policy training optimises.
DEFAULT_SELECTION = "sample"
LARGE_POOL_STRATEGIES = ("chunks", "whole")
DEFAULT_LARGE_POOL = "chunks"  # better on held-out tasks (docs/own_xrays.md)
SCORE_COLUMN, RANK_COLUMN = "score", "rank"  # added to the chosen rows
CHUNKS_PER_FORWARD = 64  # chunks read by the BiLSTM in one batch, to bound memory on large pools


def select(pool_csv, checkpoint=None, k=None, method=MEDSELECT, selection=None, seed=0, exclude=None,
           large_pool=DEFAULT_LARGE_POOL, overrides=None):
    """The X-rays to label, best first: K rows of the pool CSV with all their columns, plus score and rank.

    Args:
        pool_csv: CSV of the unlabeled X-rays (column ``Path``); their embeddings are in the HDF5
            of the same name beside it (made by xray_to_hdf5.py).
        checkpoint: a selector checkpoint of run_selector.py (or of the original code); needed for
            ``method="medselect"``. Its stored configuration gives the default K, USE_ASL and the
            pool size the selector was trained on.
        k: X-rays to choose; default: the checkpoint's K (constants.py's K without a checkpoint).
        method: "medselect" or a baseline name of models/baselines.py (random, kmedoids, ...).
        selection: "sample" (K distinct X-rays drawn from the selector's softmax, the policy that
            training optimises) or "topk" (the K best scores); default (None): the mode whose
            meta-validation AUROC minus random was higher for this checkpoint, as run_selector.py
            recorded it, or "sample" for a checkpoint without that record (the original's).
        seed: seeds the pool's reading order, the draws and the baselines.
        exclude: CSV path or DataFrame with a ``Path`` column: X-rays already labelled, never chosen.
        large_pool: "chunks" or "whole", for a pool larger than the trained pool size.
        overrides: "NAME=VALUE" strings that change the checkpoint's configuration, as ``--set``:
            e.g. ["USE_ASL=True"] for a checkpoint of the original code trained with USE_ASL
            (its checkpoints do not record their configuration).

    Returns:
        DataFrame of K distinct rows in rank order, with the pool's columns plus ``score`` (the
        selector's probability of drawing the X-ray; blank for baselines) and ``rank`` (1 = first).
    """
    _check_choice("method", method, METHODS)
    if selection is not None:
        _check_choice("selection", selection, SELECTIONS)
    _check_choice("large_pool", large_pool, LARGE_POOL_STRATEGIES)
    pool = load_pool(pool_csv)
    taken = [c for c in (SCORE_COLUMN, RANK_COLUMN) if c in pool.frame.columns]
    if taken:
        raise UserError(f"{pool_csv}: already has column(s) {', '.join(map(repr, taken))}, which the selection "
                        "adds; rename them")
    candidates = candidate_rows(pool, exclude)  # (N,) pool rows that may be chosen
    if method == MEDSELECT and checkpoint is None:
        raise UserError("method 'medselect' needs a checkpoint of a trained selector (--checkpoint)")
    stored = load_checkpoint(checkpoint) if checkpoint is not None else None
    config = apply_overrides(checkpoint_config(stored) if stored is not None else default_config(), overrides)
    k = config["K"] if k is None else k
    _check_k(k, len(candidates), len(pool), pool_csv)

    if method == MEDSELECT:
        check_same_encoder(checkpoint_origin(stored, checkpoint), pool.origin)
        selection = selection_for(stored, selection)
        no_gain = checkpoint_no_gain_message(stored)
        if no_gain:
            log.warning("WARNING: %s: %s", checkpoint, no_gain)
        inputs = selector_inputs(pool, config["USE_ASL"])[candidates]  # (N, D [+3])
        selector = selector_from_checkpoint(stored, inputs.shape[1], checkpoint, config)
        trained_size = config["UNLABELED_POOL_SIZE"]
        if len(candidates) > trained_size:
            log.info("pool of %d X-rays, larger than the %d the selector was trained on: strategy '%s'",
                     len(candidates), trained_size, large_pool)
        chosen, scores = choose_with_selector(selector, torch.from_numpy(inputs), k, trained_size, selection,
                                              large_pool, torch_generator(seed, SELECT_XRAYS))
        chosen, chosen_scores = chosen.numpy(), scores[chosen].numpy().astype(np.float64)
    else:
        embeddings = torch.from_numpy(pool.embeddings[candidates])[None]  # (1, N, D): image embeddings only
        chosen = select_baseline(method, embeddings, k, seed)[0].cpu().numpy()
        chosen_scores = np.full(k, np.nan)
    if len(np.unique(chosen)) != k:
        raise RuntimeError(f"method {method!r} returned {len(np.unique(chosen))} distinct X-rays, expected {k}")

    rows = candidates[chosen]
    chosen_frame = pool.frame.iloc[rows].reset_index(drop=True)
    chosen_frame[SCORE_COLUMN] = chosen_scores
    chosen_frame[RANK_COLUMN] = np.arange(1, k + 1)
    return chosen_frame


def selection_for(checkpoint, selection):
    """The selection mode to use: ``selection`` when given, else the one that validated better for the
    checkpoint (DEFAULT_SELECTION without that record); which and why is logged in one line."""
    if selection is not None:
        return selection
    mode, why = preferred_mode(checkpoint)
    chosen = mode or DEFAULT_SELECTION
    log.info("selection %s: %s%s (--selection chooses another)", chosen, why,
             "" if mode else f", so the default {DEFAULT_SELECTION}")
    return chosen


def candidate_rows(pool, exclude):
    """Pool rows that may be chosen: all of them but those whose Path is in ``exclude``."""
    rows = np.arange(len(pool))
    if exclude is None:
        return rows
    frame, name = read_table(exclude, "exclude", unique=False)
    skipped = pool.frame[PATH_COLUMN].isin(frame[PATH_COLUMN]).to_numpy()
    unknown = int((~frame[PATH_COLUMN].drop_duplicates().isin(pool.frame[PATH_COLUMN])).sum())
    log.info("excluding %d already-labelled X-ray(s) listed in %s%s", int(skipped.sum()), name,
             f" ({unknown} of its Paths are not in the pool)" if unknown else "")
    return rows[~skipped]


def selector_inputs(pool, use_asl):
    """(rows, D) embeddings, with Sex, Age and Frontal/Lateral appended for a selector trained with USE_ASL."""
    if not use_asl:
        return pool.embeddings
    rows, dim = pool.embeddings.shape
    return append_asl(pool.embeddings, asl_features(pool.frame, pool.csv_path),
                      np.empty((rows, dim + ASL_SIZE), dtype=np.float32))


@torch.no_grad()
def choose_with_selector(selector, inputs, k, trained_pool_size, selection=DEFAULT_SELECTION,
                         large_pool=DEFAULT_LARGE_POOL, generator=None):
    """K distinct positions of ``inputs`` (N, D') in rank order, and the score of every position.

    The pool is read in a random order; with ``large_pool="chunks"`` a pool larger than
    ``trained_pool_size`` is read as near-equal chunks of at most that size, each picking a share
    of the K proportional to its size. A position's score is the selector's probability of
    drawing it: the softmax of its logit over the sequence it was read in, times that sequence's
    share of the pool (the scores of a pool sum to 1). Rank order is by score.

    Returns: chosen (k,) int64 positions, scores (N,) float32.
    """
    selector.eval()
    num_xrays = inputs.shape[0]
    order = torch.randperm(num_xrays, generator=generator)  # (N,) reading order
    longest = trained_pool_size if large_pool == "chunks" else num_xrays
    sizes = chunk_sizes(num_xrays, longest)
    quotas = proportional_quotas(k, sizes)
    log_scores = torch.empty(num_xrays)
    picks = []
    start = 0
    for size, quota, logits in zip(sizes, quotas, chunk_logits(selector, inputs[order], sizes)):
        positions = order[start:start + size]  # (size,) pool positions of this chunk
        log_probs = torch.log_softmax(logits, dim=0) + math.log(size / num_xrays)  # (size,)
        log_scores[positions] = log_probs
        if quota and SELECTION_MODE_OF[selection] == TOPK:
            picks.append(positions[logits.topk(quota).indices])
        elif quota:
            picks.append(positions[torch.multinomial(log_probs.exp(), quota, replacement=False,
                                                     generator=generator)])
        start += size
    picked = torch.cat(picks)  # (k,)
    scores = log_scores.exp()
    return picked[scores[picked].argsort(descending=True, stable=True)], scores


def chunk_sizes(num_xrays, longest):
    """Sizes of the fewest near-equal chunks (differing by at most one) of at most ``longest`` X-rays."""
    num_chunks = math.ceil(num_xrays / longest)
    base, extra = divmod(num_xrays, num_chunks)
    return [base + 1] * extra + [base] * (num_chunks - extra)


def proportional_quotas(k, sizes):
    """Split k picks over chunks in proportion to their sizes (largest remainders get the leftovers)."""
    sizes = np.asarray(sizes)
    exact = k * sizes / sizes.sum()
    quotas = np.floor(exact).astype(int)
    leftover = k - quotas.sum()
    quotas[np.argsort(-(exact - quotas), kind="stable")[:leftover]] += 1
    return quotas.tolist()


def chunk_logits(selector, ordered_inputs, sizes):
    """The selector's logits for consecutive chunks of ``ordered_inputs`` (N, D'): a list of (size,) tensors.

    Chunks of equal size are stacked into one batch (sizes take at most two values).
    """
    logits = [None] * len(sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for size in sorted(set(sizes)):
        same = [i for i, s in enumerate(sizes) if s == size]
        for first in range(0, len(same), CHUNKS_PER_FORWARD):
            batch = same[first:first + CHUNKS_PER_FORWARD]
            chunks = torch.stack([ordered_inputs[starts[i]:starts[i] + size] for i in batch])  # (c, size, D')
            for i, row in zip(batch, selector(chunks)):  # (c, size)
                logits[i] = row
    return logits


def _check_choice(name, value, choices):
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_k(k, available, pool_size, pool_csv):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"K must be a whole number of at least 1, got {k!r}")
    if k > available:
        excluded = pool_size - available
        raise UserError(f"K={k} but {pool_csv} has only {available} X-ray(s) to choose from"
                        + (f" ({excluded} excluded as already labelled)" if excluded else ""))
