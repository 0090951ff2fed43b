"""Baseline selections against reference implementations: the kmedoids package, scikit-activeml
(TypiClust, ProbCover, CoreSet), scikit-learn's KMeans, plain NumPy loops and k-medoids++ seeding's
definition."""
import itertools

import warnings

import kmedoids
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from models.baselines import (BASELINE_METHODS, PROBCOVER_DELTAS, RANDOM_STREAMS, TYPICLUST_NEIGHBOURS, kmeans,
                              kmedoids_plus_plus, probcover_delta, pairwise_distances, select_baseline, typicality)
from models.classifier import MeanSimilarityClassifier
from utils.metrics import batched_auroc
from utils.seeding import BASELINE_SELECTION

skactiveml = pytest.importorskip("skactiveml.pool")


def task_rngs(method, seed, task_ids):
    """The random generators select_baseline gives each task (as documented in models/baselines.py)."""
    return [np.random.default_rng([seed, BASELINE_SELECTION, RANDOM_STREAMS[method], t]) for t in task_ids]


class FixedClusters:
    """A 'clustering algorithm' for scikit-activeml that returns given labels, so both sides cluster alike."""
    labels = None

    def __init__(self, n_clusters=None, random_state=None):
        self.n_clusters = n_clusters

    def fit_predict(self, X):
        return FixedClusters.labels


@pytest.fixture
def pools():
    rng = np.random.default_rng(3)
    return torch.from_numpy(rng.normal(size=(3, 48, 8)))  # (B, P, D) float64


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_distinct_positions_deterministic_and_batch_independent(method, pools):
    k = 6
    selection = select_baseline(method, pools, k, seed=5)
    assert selection.dtype == torch.long and selection.shape == (3, k)
    assert all(len(set(row.tolist())) == k for row in selection)
    assert ((selection >= 0) & (selection < pools.shape[1])).all()
    assert torch.equal(selection, select_baseline(method, pools, k, seed=5))
    # A task's selection depends on its id, not on the batch it came in.
    assert torch.equal(selection[1:], select_baseline(method, pools[1:], k, seed=5, task_ids=[1, 2]))


def test_unknown_method_and_bad_k(pools):
    with pytest.raises(ValueError, match="valid: random"):
        select_baseline("medoids", pools, 3, seed=0)
    with pytest.raises(ValueError, match="pool size"):
        select_baseline("random", pools, 49, seed=0)


def test_random_is_uniform_over_positions():
    pool, k, tasks = 10, 3, 3000
    selection = select_baseline("random", torch.zeros(tasks, pool, 2), k, seed=1)
    frequency = np.bincount(selection.reshape(-1).numpy(), minlength=pool) / tasks
    # Each position is chosen with probability k / pool = 0.3; 4 standard errors of 3000 tasks.
    assert np.abs(frequency - k / pool).max() < 4 * np.sqrt(0.3 * 0.7 / tasks)


def test_kmedoids_fasterpam_equals_the_kmedoids_package_for_the_same_seed(pools):
    k, seed = 5, 11
    selection = select_baseline("kmedoids-fasterpam", pools, k, seed=seed).numpy()
    for task, rng in enumerate(task_rngs("kmedoids-fasterpam", seed, range(len(pools)))):
        x = pools[task].numpy()
        distances = cdist(x, x)  # independent of the torch distance computation
        reference = kmedoids.fasterpam(distances, k, max_iter=100, init="random",
                                       random_state=int(rng.integers(2**31 - 1)), n_cpu=1).medoids
        assert sorted(selection[task]) == sorted(reference)
        # Each medoid is the member of its cluster with the least total distance to the others.
        assignment = distances[:, selection[task]].argmin(1)
        for cluster, medoid in enumerate(selection[task]):
            members = np.flatnonzero(assignment == cluster)
            assert medoid == members[distances[np.ix_(members, members)].sum(1).argmin()]


def alternating_loop(distances, medoids, max_iter=300):
    """scikit-learn-extra's KMedoids 'alternate' updates, written out: assign every X-ray to its nearest
    medoid, move each medoid to the member with the least total distance to its cluster when that is
    strictly less, repeat until nothing moves."""
    medoids = np.array(medoids)
    for _ in range(max_iter):
        labels = distances[medoids].argmin(0)
        moved = medoids.copy()
        for cluster in range(len(medoids)):
            members = np.flatnonzero(labels == cluster)
            costs = distances[np.ix_(members, members)].sum(1)
            if costs.min() < distances[medoids[cluster], members].sum():
                moved[cluster] = members[costs.argmin()]
        if np.array_equal(moved, medoids):
            return medoids
        medoids = moved
    raise AssertionError("the alternating loop did not converge")


def test_kmedoids_is_alternating_from_kmedoids_plus_plus_as_a_numpy_loop():
    k, seed = 6, 7
    pools = torch.from_numpy(np.random.default_rng(5).normal(size=(8, 60, 5)))
    selection = select_baseline("kmedoids", pools, k, seed=seed).numpy()
    moved = 0
    for task, rng in enumerate(task_rngs("kmedoids", seed, range(len(pools)))):
        x = pools[task].numpy()
        distances = cdist(x, x)  # independent of the torch distance computation
        initial = kmedoids_plus_plus(distances, k, rng)
        expected = alternating_loop(distances, initial)
        assert list(selection[task]) == list(expected)
        moved += not np.array_equal(expected, initial)
    assert moved >= 4  # the updates did something in most tasks: the loop was put to the test


def seeding_frequencies(distances, draws, local_trials):
    """Monte Carlo frequencies of the (first, second) medoids of kmedoids_plus_plus with k = 2."""
    counts = np.zeros(distances.shape)
    rng = np.random.default_rng(0)
    for _ in range(draws):
        first, second = kmedoids_plus_plus(distances, 2, rng, local_trials=local_trials)
        counts[first, second] += 1
    return counts / draws


# Four X-rays on a line at 0, 1, 3 and 7: from X-ray 0 the squared distances are 0, 1, 9, 49.
LINE = np.array([0.0, 1.0, 3.0, 7.0])


def test_kmedoids_plus_plus_draws_proportional_to_squared_distance():
    """Plain k-means++ (one trial): the first medoid uniform, the second with probability D^2 / sum D^2."""
    distances = np.abs(LINE[:, None] - LINE[None, :])
    squared = distances ** 2
    expected = 0.25 * squared / squared.sum(1, keepdims=True)  # P(first = i, second = j)
    assert expected[0].tolist() == pytest.approx([0, 0.25 / 59, 0.25 * 9 / 59, 0.25 * 49 / 59])  # by hand
    draws = 20000
    observed = seeding_frequencies(distances, draws, local_trials=1)
    assert np.abs(observed - expected).max() < 4.5 * np.sqrt(0.25 * 0.75 / draws)
    assert np.all(observed.diagonal() == 0)  # never the same X-ray twice


def test_kmedoids_plus_plus_keeps_the_best_of_its_trials_as_scikit_learn_extra():
    """With k = 2, 2 + int(ln 2) = 2 candidates are drawn (each as plain k-means++) and the one leaving the
    smaller sum of squared distances to the nearest medoid wins; enumerate every pair of candidates."""
    distances = np.abs(LINE[:, None] - LINE[None, :])
    squared = distances ** 2
    expected = np.zeros_like(squared)
    for first in range(4):
        p = squared[first] / squared[first].sum()
        potential = np.minimum(squared[first], squared).sum(1)  # (4,) if candidate j is added
        for a, b in itertools.product(range(4), repeat=2):
            winner = a if potential[a] <= potential[b] else b
            expected[first, winner] += 0.25 * p[a] * p[b]
    draws = 20000
    observed = seeding_frequencies(distances, draws, local_trials=None)
    assert np.abs(observed - expected).max() < 4.5 * np.sqrt(0.25 * 0.75 / draws)
    # ... which is not plain k-means++ here: from X-ray 0, X-ray 3 is drawn more often.
    assert expected[0, 3] > 0.25 * 49 / 59 + 0.01


def test_kmedoids_plus_plus_gives_distinct_medoids_among_duplicates():
    x = np.repeat(np.random.default_rng(2).normal(size=(3, 4)), 4, axis=0)  # 3 distinct embeddings, 4 times each
    distances = cdist(x, x)
    for seed in range(20):
        medoids = kmedoids_plus_plus(distances, 5, np.random.default_rng(seed))
        assert len(set(medoids.tolist())) == 5
        assert len({tuple(x[m]) for m in medoids[:3]}) == 3  # the three distinct points come first


def test_kmedoids_beats_random_when_positives_form_tight_clusters():
    """Positives in 3 tight clusters, normals in 3 others: K medoids cover every cluster, K random often do not."""
    rng = np.random.default_rng(0)
    tasks, per_cluster, k, dim = 40, 8, 6, 8
    centres = rng.normal(size=(6, dim)) * 3
    labels = np.repeat([1, 1, 1, 0, 0, 0], per_cluster)
    pool = centres[np.repeat(np.arange(6), per_cluster)] + 0.05 * rng.normal(size=(tasks, 6 * per_cluster, dim))
    query_labels = np.tile([1, 0], 15)
    query_clusters = np.where(query_labels == 1, rng.integers(0, 3, (tasks, 30)), rng.integers(3, 6, (tasks, 30)))
    query = centres[query_clusters] + 0.05 * rng.normal(size=(tasks, 30, dim))
    pool, query = torch.from_numpy(pool), torch.from_numpy(query)
    pool_labels = torch.from_numpy(np.tile(labels, (tasks, 1)))

    def mean_auroc(selection):
        scores = MeanSimilarityClassifier("cosine")(pool.gather(1, selection.unsqueeze(-1).expand(-1, -1, dim)),
                                         pool_labels.gather(1, selection), query)
        return batched_auroc(torch.from_numpy(np.tile(query_labels, (tasks, 1))), scores).mean().item()

    random_auroc = mean_auroc(select_baseline("random", pool, k, seed=0))
    for method in ("kmedoids", "kmedoids-fasterpam"):
        medoid_auroc = mean_auroc(select_baseline(method, pool, k, seed=0))
        assert medoid_auroc > random_auroc + 0.02
        assert medoid_auroc > 0.99


def test_coreset_is_k_center_greedy_as_in_scikit_activeml(pools):
    k = 7
    selection = select_baseline("coreset", pools, k, seed=2).numpy()
    for task in range(len(pools)):
        x = pools[task].numpy()
        # Plain loop: each next pick is the X-ray farthest from its nearest selected one.
        picks = [selection[task][0]]
        for _ in range(k - 1):
            nearest = cdist(x, x[picks]).min(1)
            picks.append(int(nearest.argmax()))
        assert list(selection[task]) == picks
        # scikit-activeml, given the same first X-ray as labelled, picks the other k - 1 in the same order.
        y = np.full(len(x), np.nan)
        y[selection[task][0]] = 0
        reference = skactiveml.CoreSet(random_state=0).query(x, y, batch_size=k - 1)
        assert list(selection[task][1:]) == list(reference)
    # The first X-ray is random: it differs between seeds for some task.
    assert any(select_baseline("coreset", pools, k, seed=s)[:, 0].tolist() != selection[:, 0].tolist()
               for s in range(3, 8))


def test_kmeans_finds_separated_clusters_like_scikit_learn():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 6)) * 10
    truth = rng.integers(0, 4, size=(2, 60))
    x = torch.from_numpy(centres[truth] + rng.normal(size=(2, 60, 6)))
    labels, _ = kmeans(x, 4, [np.random.default_rng(i) for i in range(2)])
    for task in range(2):
        reference = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(x[task].numpy())
        assert adjusted_rand_score(reference, labels[task].numpy()) == 1.0


def test_kmeans_inertia_is_close_to_scikit_learn_on_unstructured_data(pools):
    labels, centres = kmeans(pools, 4, [np.random.default_rng(i) for i in range(len(pools))])
    ours = ((pools - centres.gather(1, labels.unsqueeze(-1).expand(-1, -1, pools.shape[2]))) ** 2).sum((1, 2))
    for task in range(len(pools)):
        reference = KMeans(n_clusters=4, n_init=10, random_state=0).fit(pools[task].numpy()).inertia_
        assert ours[task].item() <= 1.15 * reference
        assert torch.equal(labels[task], torch.from_numpy(
            cdist(pools[task].numpy(), centres[task].numpy()).argmin(1)))  # converged: each X-ray at its nearest


def test_typicality_matches_a_loop():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 70, 5))
    labels = np.concatenate([np.zeros(40), np.ones(25), [2] * 4, [3]]).astype(np.int64)[None]
    ours = typicality(torch.from_numpy(x), torch.from_numpy(labels))[0].numpy()
    for i in range(70):
        members = np.flatnonzero(labels[0] == labels[0, i])
        if len(members) == 1:
            assert ours[i] == 1.0
            continue
        others = np.sort(np.linalg.norm(x[0, members] - x[0, i], axis=1))[1:]  # without itself
        k = min(TYPICLUST_NEIGHBOURS, len(members) - 1)
        assert ours[i] == pytest.approx(1 / ((others[:k].sum() + 1e-7) / k), rel=1e-9)


def test_typiclust_selects_as_scikit_activeml_given_the_same_clusters(pools):
    k, seed = 4, 9
    x = torch.cat([pools, pools + 0.5], dim=1)  # (B, 96, D): clusters larger than 21 occur
    selection = select_baseline("typiclust", x, k, seed=seed).numpy()
    normalised = F.normalize(x, dim=-1)
    labels, _ = kmeans(normalised, k, task_rngs("typiclust", seed, range(len(x))))
    for task in range(len(x)):
        FixedClusters.labels = labels[task].numpy()
        strategy = skactiveml.TypiClust(cluster_algo=FixedClusters, k=TYPICLUST_NEIGHBOURS, random_state=0)
        reference = strategy.query(normalised[task].numpy(), np.full(x.shape[1], np.nan), batch_size=k)
        assert sorted(selection[task]) == sorted(reference)
        assert sorted(labels[task, selection[task]].tolist()) == list(range(k))  # one X-ray per cluster


def test_probcover_delta_as_scikit_activeml(pools):
    x = F.normalize(pools, dim=-1)
    distances = pairwise_distances(x)
    labels, _ = kmeans(x, 2, [np.random.default_rng(i) for i in range(len(x))])
    ours = probcover_delta(distances, labels)
    for task in range(len(x)):
        FixedClusters.labels = labels[task].numpy()
        strategy = skactiveml.ProbCover(deltas=list(PROBCOVER_DELTAS), alpha=0.95, cluster_algo=FixedClusters)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its warning when even the smallest delta is impure
            strategy.query(x[task].numpy(), np.full(x.shape[1], np.nan), batch_size=1)
        assert ours[task].item() == pytest.approx(strategy.delta_max_)


def test_probcover_picks_are_greedy_max_coverage_as_in_scikit_activeml(pools):
    k, seed = 6, 4
    selection = select_baseline("probcover", pools, k, seed=seed).numpy()
    x = F.normalize(pools, dim=-1)
    labels, _ = kmeans(x, 2, task_rngs("probcover", seed, range(len(x))))
    deltas = probcover_delta(pairwise_distances(x), labels)
    for task in range(len(x)):
        points = x[task].numpy()
        for step in range(k):
            # scikit-activeml with the earlier picks labelled: our pick must have the greatest coverage.
            y = np.full(len(points), np.nan)
            y[selection[task][:step]] = 0
            strategy = skactiveml.ProbCover(deltas=[deltas[task].item()])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a single delta: no purity computed, it warns
                _, utilities = strategy.query(points, y, batch_size=1, return_utilities=True)
            assert utilities[0, selection[task][step]] == np.nanmax(utilities[0])
