"""Classifying the rest of a pool from the X-rays a radiologist labelled, and checking it against ground truth.

The default classifier is MedSelect's (the paper's predictor), the very module used in training:
``score(x) = mean cos(x, labelled positives) - mean cos(x, labelled negatives)``
on the image embeddings (never the Age/Sex/Laterality features). ``classifier=`` picks another of
models/classifiers.py: 'logistic', or 'label-spreading' / 'self-training', which also use the pool's
unlabelled X-rays (their embeddings only; docs/own_xrays.md#which-classifier).
"""
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from data.labels import NEGATIVE, POSITIVE_VALUES
from medselect.pool import PATH_COLUMN, load_pool, read_table
from models.classifier import MeanSimilarityClassifier
from models.classifiers import CLASSIFIERS, COSINE, make_classifier
from utils.errors import UserError
from utils.logs import LOGGER_NAME
from utils.metrics import batched_auroc
from utils.seeding import CLASSIFY_BOOTSTRAP, derived_seed
from utils.stats import CONFIDENCE, bootstrap_indices, percentile_interval

log = logging.getLogger(LOGGER_NAME)

SCORE_COLUMN = "score"  # added to the classified rows: higher = more likely positive
QUERY_ROWS_PER_STEP = 8192  # X-rays scored at once, to bound memory on large pools
BOOTSTRAP_RESAMPLES = 1000  # classify_xrays.py --bootstrap (of X-rays); evaluate.py --bootstrap (of tasks) is 10000
BOOTSTRAP_VALUES_PER_STEP = 1 << 22  # resampled scores ranked at once, to bound memory
# Ground truth follows CheXpert: 1 positive, -1 uncertain counts as positive (as in the paper), 0 or blank negative.
GROUND_TRUTH_POSITIVE, GROUND_TRUTH_NEGATIVE = POSITIVE_VALUES, (NEGATIVE,)


def classify(labeled, label_column, unlabeled_csv, classifier=COSINE):
    """Score every pool X-ray that is not labelled, with the classifier built from the labelled ones.

    Args:
        labeled: CSV path or DataFrame of the labelled X-rays: ``Path`` (as in the pool) and
            ``label_column`` holding 1 (positive) or 0 (negative) on every row, both classes present.
        label_column: the finding that was labelled, e.g. "Edema".
        unlabeled_csv: the pool CSV; the embeddings of every X-ray, labelled or not, come from the
            HDF5 beside it.
        classifier: one of models.classifiers.CLASSIFIERS; 'cosine' (the paper's) by default. The
            transductive ones ('label-spreading', 'self-training') use every unlabelled X-ray of the pool.

    Returns:
        DataFrame of the pool's other rows, in pool order, with all their columns plus ``score``.
    """
    if classifier not in CLASSIFIERS:
        raise UserError(f"classifier: unknown classifier {classifier!r}; valid: {', '.join(CLASSIFIERS)}")
    pool = load_pool(unlabeled_csv)
    if SCORE_COLUMN in pool.frame.columns:
        raise UserError(f"{unlabeled_csv}: already has a column '{SCORE_COLUMN}', which classification adds; "
                        "rename it")
    frame, name = read_table(labeled, "labeled", required_columns=(PATH_COLUMN, label_column))
    labels = binary_labels(frame[label_column], label_column, name)
    labeled_rows = pool.rows_of(frame[PATH_COLUMN], name)
    rest = np.setdiff1d(np.arange(len(pool)), labeled_rows)  # pool order
    if not len(rest):
        raise UserError(f"{name}: every X-ray of {unlabeled_csv} is labelled; nothing is left to classify")
    log.info("classifying %d X-ray(s) from %d labelled (%d positive, %d negative for %s) with the %s classifier",
             len(rest), len(labels), int(labels.sum()), int(len(labels) - labels.sum()), label_column, classifier)
    predictions = pool.frame.iloc[rest].reset_index(drop=True)
    if classifier == COSINE:
        predictions[SCORE_COLUMN] = cosine_scores(pool.embeddings[labeled_rows], labels, pool.embeddings[rest])
    else:  # the rest of the pool is both what is scored and, for the transductive ones, the unlabelled set
        scores = make_classifier(classifier)(torch.from_numpy(pool.embeddings[labeled_rows])[None],
                                             torch.from_numpy(labels)[None],
                                             torch.from_numpy(pool.embeddings[rest])[None])  # (1, rest)
        predictions[SCORE_COLUMN] = scores[0].numpy()
    return predictions


def binary_labels(values, label_column, source):
    """(rows,) int64 labels from a column that must hold 0 or 1 on every row, with both present."""
    if values.empty:
        raise UserError(f"{source}: no labelled X-rays (no rows)")
    numbers = pd.to_numeric(values, errors="coerce")
    bad = ~numbers.isin([0, 1]).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise UserError(f"{source}: column '{label_column}' must be 0 or 1 on every row (row {row} is "
                        f"{_shown(values.iloc[row])}); label each X-ray 1 (positive) or 0 (negative)")
    labels = numbers.to_numpy().astype(np.int64)
    if labels.min() == labels.max():
        raise UserError(f"{source}: all {len(labels)} labelled X-ray(s) have {label_column} = {labels[0]}; the "
                        "classifier needs both classes: at least one positive (1) and one negative (0)")
    return labels


@torch.no_grad()
def cosine_scores(labeled_embeddings, labels, embeddings):
    """MeanSimilarityClassifier("cosine") of training: (K, D) labelled, (K,) labels, (Q, D) -> (Q,) float32 scores."""
    classifier = MeanSimilarityClassifier("cosine")
    selected = torch.from_numpy(labeled_embeddings)[None]  # (1, K, D)
    selected_labels = torch.from_numpy(labels)[None]  # (1, K)
    scores = []
    for start in range(0, len(embeddings), QUERY_ROWS_PER_STEP):
        query = torch.from_numpy(embeddings[start:start + QUERY_ROWS_PER_STEP])[None]  # (1, q, D)
        scores.append(classifier(selected, selected_labels, query)[0])  # (q,)
    return torch.cat(scores).numpy()


@dataclass
class AurocEstimate:
    auroc: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    num_xrays: int
    num_positive: int

    def __str__(self):
        return (f"AUROC {self.auroc:.4f} ({self.confidence:.0%} bootstrap CI {self.ci_low:.4f}-{self.ci_high:.4f}, "
                f"{self.resamples} resamples) on {self.num_xrays} X-rays, {self.num_positive} positive")


def ground_truth_auroc(predictions, ground_truth, label_column, resamples=BOOTSTRAP_RESAMPLES,
                       confidence=CONFIDENCE, seed=0):
    """AUROC of the predictions' scores against ground truth, with a percentile bootstrap CI.

    Args:
        predictions: DataFrame of :func:`classify` (``Path`` and ``score``).
        ground_truth: CSV path or DataFrame with ``Path`` and ``label_column`` in CheXpert's coding:
            1 positive, -1 uncertain (counts as positive), 0 or blank negative. It may be the pool
            CSV itself when that has the column. Predictions without a ground truth row are left out.
        resamples: bootstrap resamples of the X-rays; confidence: the CI's coverage.
    """
    frame, name = read_table(ground_truth, "ground_truth", required_columns=(PATH_COLUMN, label_column))
    truth = chexpert_positive(frame[label_column], label_column, name)
    truth = pd.Series(truth, index=frame[PATH_COLUMN].to_numpy())
    known = predictions[PATH_COLUMN].isin(truth.index).to_numpy()
    if not known.any():
        raise UserError(f"{name}: none of the {len(predictions)} classified X-rays has a ground truth row "
                        "(matched on Path)")
    if not known.all():
        log.info("%d of %d classified X-rays have no ground truth row in %s and are left out of the AUROC",
                 int((~known).sum()), len(known), name)
    labels = truth.loc[predictions[PATH_COLUMN].to_numpy()[known]].to_numpy(copy=True)  # (n,) writable for torch
    scores = predictions[SCORE_COLUMN].to_numpy(dtype=np.float64, copy=True)[known]
    if labels.min() == labels.max():
        raise UserError(f"{name}: the {len(labels)} classified X-rays with ground truth are all "
                        f"{'positive' if labels[0] else 'negative'} for {label_column}; AUROC needs both classes")
    auroc = float(batched_auroc(torch.from_numpy(labels)[None], torch.from_numpy(scores)[None])[0])
    rng = np.random.default_rng(derived_seed(seed, CLASSIFY_BOOTSTRAP))
    low, high = bootstrap_interval(labels, scores, resamples, confidence, rng)
    return AurocEstimate(auroc=auroc, ci_low=low, ci_high=high, confidence=confidence, resamples=resamples,
                         num_xrays=len(labels), num_positive=int(labels.sum()))


def chexpert_positive(values, label_column, source):
    """(rows,) int64: 1 for 1 or -1 (uncertain counts as positive), 0 for 0 or blank; refuses anything else."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = ~(numbers.isin(GROUND_TRUTH_POSITIVE + GROUND_TRUTH_NEGATIVE) | values.isna()).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise UserError(f"{source}: column '{label_column}' must be 1, -1 (uncertain, counts as positive), 0 or "
                        f"blank (row {row} is {_shown(values.iloc[row])})")
    return numbers.isin(GROUND_TRUTH_POSITIVE).to_numpy().astype(np.int64)


def _shown(value):
    """A cell's value as a user wrote it: blank, 'text' or a plain number."""
    if pd.isna(value):
        return "blank"
    if isinstance(value, str):
        return repr(value)
    return str(value.item() if isinstance(value, np.generic) else value)


def bootstrap_interval(labels, scores, resamples, confidence, rng):
    """Percentile bootstrap CI of the AUROC over X-rays drawn with replacement; one-class resamples skipped."""
    count = len(labels)
    per_step = max(1, BOOTSTRAP_VALUES_PER_STEP // count)
    values = np.concatenate([batched_auroc(torch.from_numpy(labels[rows]), torch.from_numpy(scores[rows])).numpy()
                             for rows in bootstrap_indices(count, resamples, rng, chunk_rows=per_step)])  # (resamples,)
    return percentile_interval(values[np.isfinite(values)], confidence)  # one-class resamples give NaN
