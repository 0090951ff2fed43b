"""The memory-bounded baselines select what the code before issue 23 selected, and the new baselines are what
their definitions say.

The blocked code (models/blocked_baselines.py) serves pools above DENSE_POOL_MAX; here DENSE_POOL_MAX and
BLOCK_BYTES are set small so that pools of a few thousand rows go through it in many blocks, and its picks are
compared with tests/reference_baselines.py, a frozen copy of the earlier dense code. Float64 embeddings: the
blocked and dense matrix products round differently in the last bits, which in float64 cannot turn a
comparison on these continuous data.
"""
import kmedoids
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import baseline_memory, blocked_baselines, pool_blocks
from models.baselines import (BASELINE_METHODS, FASTERPAM_MAX_ITER, RANDOM_STREAMS, kmeans, kmedoids_plus_plus,
                              select_baseline)
from tests import reference_baselines
from utils.seeding import BASELINE_SELECTION

REFERENCE_METHODS = reference_baselines.BASELINE_METHODS  # the methods that existed before issue 23


def task_rngs(method, seed, task_ids):
    return [np.random.default_rng([seed, BASELINE_SELECTION, RANDOM_STREAMS[method], t]) for t in task_ids]


@pytest.fixture(scope="module")
def clustered():
    """(2, 1500, 16) float64: two pools of 8 Gaussian clusters of different spreads."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(8, 16)) * 3
    members = rng.integers(0, 8, size=(2, 1500))
    return torch.from_numpy(centres[members] + rng.normal(size=(2, 1500, 16)) * rng.uniform(0.5, 1.5, (2, 1500, 1)))


@pytest.fixture
def blocked(monkeypatch):
    """Every pool above 100 X-rays takes the blocked code, in blocks of 64 KiB (tens of rows)."""
    monkeypatch.setattr(pool_blocks, "DENSE_POOL_MAX", 100)
    monkeypatch.setattr(pool_blocks, "BLOCK_BYTES", 64 * 2**10)


def test_the_previous_methods_keep_their_random_streams():
    assert {m: RANDOM_STREAMS[m] for m in REFERENCE_METHODS} == reference_baselines.RANDOM_STREAMS
    assert BASELINE_METHODS[:len(REFERENCE_METHODS)] == REFERENCE_METHODS
    assert len(set(RANDOM_STREAMS.values())) == len(BASELINE_METHODS)


@pytest.mark.parametrize("method", REFERENCE_METHODS)
def test_dense_code_selects_as_before(method, clustered):
    pools = clustered[:, :400]
    assert torch.equal(select_baseline(method, pools, 6, seed=3),
                       reference_baselines.select_baseline(method, pools, 6, seed=3))


@pytest.mark.parametrize("method", [m for m in REFERENCE_METHODS if m != "kmedoids-fasterpam"])
def test_blocked_code_selects_as_the_dense_code_before(method, clustered, blocked):
    expected = reference_baselines.select_baseline(method, clustered, 8, seed=5, task_ids=[4, 9])
    assert torch.equal(select_baseline(method, clustered, 8, seed=5, task_ids=[4, 9]), expected)


def facility_location_loop(x, k, clients=None):
    """Greedy facility location written out: F(S) = sum_i max_{j in S} cos(i, j) over the clients i (default:
    the whole pool), each step the X-ray of largest F(S + j) - F(S), the first of equals."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = x[np.arange(len(x)) if clients is None else clients] @ x.T  # (clients, pool)
    picks = []
    for _ in range(k):
        current = similarity[:, picks].max(1).sum() if picks else -len(similarity)
        gains = [-np.inf if j in picks else np.maximum(similarity[:, picks + [j]].max(1), -1).sum() - current
                 for j in range(len(x))]
        picks.append(int(np.argmax(gains)))
    return picks


@pytest.mark.parametrize("path", ["dense", "blocked"])
def test_facility_location_is_greedy_on_the_facility_location_function(path, clustered, monkeypatch):
    if path == "blocked":
        monkeypatch.setattr(pool_blocks, "DENSE_POOL_MAX", 100)
        monkeypatch.setattr(pool_blocks, "BLOCK_BYTES", 16 * 2**10)
        monkeypatch.setattr(blocked_baselines, "FACILITY_CANDIDATES", 4)  # lazy rounds of few candidates
    pools = clustered[:, :300]
    selection = select_baseline("facility-location", pools, 7, seed=0)
    for task in range(len(pools)):
        assert selection[task].tolist() == facility_location_loop(pools[task].numpy(), 7)


def test_facility_location_above_the_client_limit_sums_over_a_random_sample_of_the_pool(clustered, monkeypatch):
    """Above FACILITY_CLIENTS_MAX the objective runs over a uniform sample of that many X-rays (drawn first from
    the method's stream); every X-ray of the pool stays a candidate."""
    monkeypatch.setattr(pool_blocks, "DENSE_POOL_MAX", 100)
    monkeypatch.setattr(blocked_baselines, "FACILITY_CLIENTS_MAX", 120)
    pool = clustered[0, :500]
    selection = select_baseline("facility-location", pool[None], 6, seed=2, task_ids=[5])[0].tolist()
    clients = np.sort(task_rngs("facility-location", 2, [5])[0].choice(500, size=120, replace=False))
    assert selection == facility_location_loop(pool.numpy(), 6, clients)
    assert not set(selection) <= set(clients.tolist())  # picks outside the sample: candidates are the whole pool
    assert selection != facility_location_loop(pool.numpy(), 6)  # the sample did change the objective


def test_kmeans_nearest_picks_the_x_ray_nearest_each_centroid(clustered):
    k, seed = 8, 2
    selection = select_baseline("kmeans-nearest", clustered[:, :500], k, seed=seed).numpy()
    x = F.normalize(clustered[:, :500], dim=-1)
    _, centres = kmeans(x, k, task_rngs("kmeans-nearest", seed, range(2)))
    for task in range(2):
        picks = []
        for centre in centres[task].numpy():
            distance = ((x[task].numpy() - centre) ** 2).sum(1)
            distance[picks] = np.inf
            picks.append(int(distance.argmin()))
        assert selection[task].tolist() == picks


def test_kmeans_nearest_takes_one_x_ray_from_each_separated_cluster():
    rng = np.random.default_rng(0)
    directions = np.eye(6)  # six clusters on orthogonal directions: apart on the sphere
    members = np.repeat(np.arange(6), 30)
    x = torch.from_numpy(directions[members] + 0.05 * rng.normal(size=(180, 6)))[None]
    selection = select_baseline("kmeans-nearest", x, 6, seed=1)[0].numpy()
    assert sorted(members[selection]) == list(range(6))


@pytest.mark.parametrize("method", ["kmeans-nearest", "facility-location"])
def test_new_methods_blocked_as_dense(method, clustered, monkeypatch):
    expected = select_baseline(method, clustered[:, :600], 5, seed=4, task_ids=[3, 1])
    monkeypatch.setattr(pool_blocks, "DENSE_POOL_MAX", 100)
    assert torch.equal(select_baseline(method, clustered[:, :600], 5, seed=4, task_ids=[3, 1]), expected)


def clara_loop(points, k, rng, medoids_of, sample_size):
    """CLARA written out: medoids_of each sample's distance matrix; the set with the least total distance."""
    costs = {}
    for _ in range(blocked_baselines.CLARA_SAMPLES):
        sample = np.sort(rng.choice(len(points), size=sample_size, replace=False))
        matrix = np.linalg.norm(points[sample, None] - points[None, sample], axis=-1)
        medoids = tuple(sample[np.asarray(medoids_of(matrix, rng))])
        costs[medoids] = np.linalg.norm(points[:, None] - points[np.array(medoids)][None], axis=-1).min(1).sum()
    assert len(set(costs)) > 1  # the samples led to different medoids: the choice among them is put to the test
    return min(costs, key=costs.get)


@pytest.mark.parametrize("method", ["kmedoids", "kmedoids-fasterpam"])
def test_large_pool_k_medoids_is_clara_around_the_small_pool_algorithm(method, clustered, monkeypatch):
    monkeypatch.setattr(pool_blocks, "DENSE_POOL_MAX", 300)
    monkeypatch.setattr(blocked_baselines, "KMEDOIDS_EXACT_MAX", 300)
    monkeypatch.setattr(blocked_baselines, "CLARA_SAMPLE_SIZE", 200)
    k, seed, x = 6, 8, clustered[0, :900]
    selection = select_baseline(method, x[None], k, seed=seed)[0].numpy()

    def fasterpam(matrix, rng):
        return kmedoids.fasterpam(matrix, k, max_iter=FASTERPAM_MAX_ITER, init="random",
                                  random_state=int(rng.integers(2**31 - 1)), n_cpu=1).medoids

    def paper(matrix, rng):  # k-medoids++ then alternating, as tests/test_baselines.py checks it
        return kmedoids.alternating(matrix, kmedoids_plus_plus(matrix, k, rng), max_iter=300).medoids

    expected = clara_loop(x.numpy(), k, task_rngs(method, seed, [0])[0],
                          fasterpam if method == "kmedoids-fasterpam" else paper, 200)
    assert tuple(selection) == expected


def test_peak_estimate_grows_with_the_square_of_a_dense_pool_and_linearly_above():
    small, double = (baseline_memory.peak_bytes("typiclust", p, 512) for p in (4000, 8000))
    assert double - small > 2 * 4 * 4 * 4000 ** 2  # P^2 matrices dominate the growth
    large, larger = (baseline_memory.peak_bytes("typiclust", p, 512) for p in (100_000, 200_000))
    assert larger - large < 2 * (large - baseline_memory.PROCESS_BYTES)  # linear, not quadratic
    assert baseline_memory.largest_pool("probcover", 512, baseline_memory.peak_bytes("probcover", 50_000, 512)) \
        == 50_000


def test_kmeans_refills_empty_clusters_as_before():
    """Duplicated X-rays leave clusters empty; they are refilled as the earlier code refilled them."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy(np.repeat(rng.normal(size=(3, 1, 4, 5)), 6, axis=1).reshape(3, 24, 5))  # 4 points, 6 times
    x[1, :12] += torch.from_numpy(rng.normal(size=(12, 5)))  # one task with more distinct points
    ours = kmeans(x, 6, task_rngs("typiclust", 0, range(3)))
    reference = reference_baselines.kmeans(x, 6, task_rngs("typiclust", 0, range(3)))
    assert torch.equal(ours[0], reference[0]) and torch.equal(ours[1], reference[1])
    assert (torch.nn.functional.one_hot(ours[0][0], 6).sum(0) == 0).any()  # the premise: a cluster stayed empty
