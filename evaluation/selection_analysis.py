"""What two methods select, compared as in the paper (the paper's analysis of selections; docs/evaluation.md#statistics-and-analysis): distances among the selected
embeddings, the fraction of positives, and the age, sex and view of the selected X-rays.

Each quantity is a sample of values pooled over tasks; two methods' samples are compared by
their 1-Wasserstein distance (scipy.stats.wasserstein_distance).
"""
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from data.asl import ages, female, frontal, laterality_column
from data.csv_hdf5 import read_csv

DISTANCE_METRICS = ("L1", "L2", "Linf", "cosine")
# quantity -> what one value is (for the CSV and the plot labels)
QUANTITIES = {
    "distance_L1": "L1 distance between two selected embeddings",
    "distance_L2": "L2 distance between two selected embeddings",
    "distance_Linf": "L-infinity distance between two selected embeddings",
    "distance_cosine": "cosine distance (1 - cos) between two selected embeddings",
    "positive_fraction": "fraction of a task's K selections that are positive",
    "age": "age (years) of a selected X-ray",
    "female_fraction": "fraction of a task's K selections that are female",
    "frontal_fraction": "fraction of a task's K selections that are frontal views",
}


def read_demographics(positive_csv, normal_csv):
    """Age, female and frontal indicators of every table row (positive-CSV rows, then normal-CSV rows).

    Returns {name: float64 array} with only the columns both CSVs have: 'age' (years, NaN if not a
    number), 'female' (Sex == Female), 'frontal' (Frontal/Lateral, or Laterality, == Frontal).
    """
    frames = [read_csv(positive_csv), read_csv(normal_csv)]
    features = {}
    if all("Age" in f.columns for f in frames):
        features["age"] = np.concatenate([ages(f) for f in frames])
    if all("Sex" in f.columns for f in frames):
        features["female"] = np.concatenate([female(f) for f in frames])
    laterality = [laterality_column(f) for f in frames]
    if all(laterality):
        features["frontal"] = np.concatenate([frontal(f, c) for f, c in zip(frames, laterality)])
    return features


def pairwise_selected_distances(selected):
    """Distances between every two selection slots of each task, pooled over tasks.

    selected (N, K, D) embeddings -> {metric: (N * K * (K - 1) / 2,) float64}. A position selected
    twice (MedSelect samples with replacement) contributes distance 0.
    """
    selected = selected.to(torch.float64)
    k = selected.shape[1]
    first, second = torch.triu_indices(k, k, offset=1)
    difference = selected[:, first] - selected[:, second]  # (N, pairs, D)
    cosine = 1 - (F.normalize(selected[:, first], dim=-1) * F.normalize(selected[:, second], dim=-1)).sum(-1)
    distances = {"L1": difference.abs().sum(-1), "L2": difference.norm(dim=-1),
                 "Linf": difference.abs().amax(-1), "cosine": cosine}
    return {metric: distances[metric].reshape(-1).cpu().numpy() for metric in DISTANCE_METRICS}


def selection_quantities(embeddings, selected_rows, selected_labels, demographics):
    """The analysed quantities of one method's selections.

    embeddings (rows, D) image embeddings, selected_rows (N, K) table rows, selected_labels (N, K)
    in {0, 1}, demographics from read_demographics -> {quantity: 1-D float64 array}.
    """
    rows = torch.as_tensor(selected_rows, device=embeddings.device)
    values = {f"distance_{m}": v for m, v in pairwise_selected_distances(embeddings[rows]).items()}
    rows = np.asarray(rows.cpu())
    values["positive_fraction"] = np.asarray(selected_labels, dtype=np.float64).mean(1)
    if "age" in demographics:
        age = demographics["age"][rows].reshape(-1)
        values["age"] = age[np.isfinite(age)]
    for name in ("female", "frontal"):
        if name in demographics:
            values[f"{name}_fraction"] = demographics[name][rows].mean(1)
    return values


def compare_selections(values_by_method):
    """Summary rows: per quantity and method n, mean, std, median, and the Wasserstein distance
    between the first two methods' samples of that quantity."""
    methods = list(values_by_method)
    rows = []
    for quantity in QUANTITIES:
        if not all(quantity in values_by_method[m] for m in methods):
            continue
        samples = [values_by_method[m][quantity] for m in methods]
        distance = (float(wasserstein_distance(samples[0], samples[1]))
                    if len(methods) == 2 and all(len(s) for s in samples) else float("nan"))
        for method, sample in zip(methods, samples):
            rows.append({"quantity": quantity, "method": method, "n": len(sample),
                         "mean": float(np.mean(sample)) if len(sample) else float("nan"),
                         "std": float(np.std(sample)) if len(sample) else float("nan"),
                         "median": float(np.median(sample)) if len(sample) else float("nan"),
                         "wasserstein": distance})
    return rows
