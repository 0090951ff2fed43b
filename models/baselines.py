"""Label-free baseline selections of K X-rays from each task's pool, batched over tasks.

    select_baseline(method, pool_embeddings (B, P, D), k, seed) -> (B, k) pool positions

* ``random``    K distinct X-rays uniformly at random (the original's baseline).
* ``kmedoids``  the paper's strongest baseline: k-medoids with K clusters on the pool's Euclidean
                distances, the K medoids are the selection. The paper's algorithm, that of
                scikit-learn-extra's ``KMedoids(n_clusters=K, init='k-medoids++')``: k-medoids++
                seeding (:func:`kmedoids_plus_plus`), then alternating (Voronoi-iteration) updates,
                ``kmedoids.alternating``; one task at a time, on the CPU.
* ``kmedoids-fasterpam``  the same objective optimised by FasterPAM of the ``kmedoids`` package
                (random initialisation from the task's seed, one thread): usually a lower total
                distance than alternating, but not the paper's algorithm.
* ``typiclust`` TypiClust (Hacohen et al., ICML 2022): K-means with K clusters on the L2-normalised
                embeddings; from each cluster the most *typical* X-ray, typicality being the inverse
                mean distance to its ``min(20, cluster size - 1)`` nearest neighbours in the cluster.
* ``probcover`` ProbCover (Yehuda et al., NeurIPS 2022): balls of radius delta around the
                L2-normalised embeddings; greedily the X-ray whose ball covers the most X-rays not yet
                covered. delta is the largest value of a grid whose ball purity (fraction of balls
                holding one 2-means cluster only) is at least 0.95.
* ``coreset``   k-center greedy (Sener & Savarese, ICLR 2018) on Euclidean distances: a random first
                X-ray, then repeatedly the X-ray farthest from everything selected so far.
* ``facility-location``  greedy maximisation of the facility-location function on the L2-normalised
                embeddings, F(S) = sum over the pool of the best cosine similarity to a selected X-ray
                (RepDiv's representative part; MedCAL-Bench, arXiv 2508.03441): each step adds the
                X-ray with the largest gain sum_i max(s_ij - best_i, 0), best_i starting at -1 (the
                lowest cosine, so the first pick maximises F itself). Draws no random numbers.
* ``kmeans-nearest``  K-means with K clusters on the L2-normalised embeddings (the K-means of TypiClust,
                from the task's seed); for cluster 1, 2, ..., K in turn, the X-ray nearest its centroid
                that is not picked yet (ALPS; MedCAL-Bench).

Pool size. Pools of up to ``models.pool_blocks.DENSE_POOL_MAX`` X-rays use the code above on full
(B, P, P) matrices, batched over tasks. A larger pool is selected one task at a time by the same
algorithms computed from blocks of distances (models/blocked_baselines.py), never holding a
pool x pool matrix: TypiClust's neighbours within each cluster, ProbCover's margins, ball counts
and coverage updates, CoreSet's distances, facility location by lazy greedy evaluation (Minoux
1978: the same picks, gains recomputed only for the candidates that could be best; above
``blocked_baselines.FACILITY_CLIENTS_MAX`` X-rays its objective sums over a random sample of that
many, every X-ray still a candidate), the paper's
k-medoids as k-medoids++ then alternating updates on each cluster's block. Only
``kmedoids-fasterpam`` changes algorithm: FasterPAM needs the whole matrix, so a larger pool gets
FasterCLARA (Schubert & Rousseeuw 2021: FasterPAM on ``CLARA_SAMPLES`` random samples of
``CLARA_SAMPLE_SIZE`` X-rays, keeping the medoids with the least total distance over the whole pool);
the paper's k-medoids above ``KMEDOIDS_EXACT_MAX`` X-rays is CLARA around its own algorithm.

All methods except the two k-medoids run as tensor operations on the embeddings' device. Every
random choice of task b comes from ``numpy.random.default_rng([seed, BASELINE_SELECTION,
RANDOM_STREAMS[method], task_ids[b]])``, so a task's selection does not depend on the batch it
is in or on the device. The selections are distinct pool positions.

To select at several K from the same pools (evaluate.py --k), ``prepare_pools`` does the work
that does not depend on K once (the k-medoids methods' distance matrices) and
``select_prepared`` selects at each K: the same positions as ``select_baseline``.
"""
from dataclasses import dataclass

import kmedoids
import numpy as np
import torch
import torch.nn.functional as F

from models import pool_blocks
from utils.seeding import BASELINE_SELECTION

BASELINE_METHODS = ("random", "kmedoids", "kmedoids-fasterpam", "typiclust", "probcover", "coreset",
                    "facility-location", "kmeans-nearest")
# Each method's random-number stream. Fixed numbers, so that adding a method changes no other method's choices;
# kmedoids-fasterpam keeps the stream FasterPAM used when it was this project's 'kmedoids'. New methods append.
RANDOM_STREAMS = {"random": 0, "kmedoids-fasterpam": 1, "typiclust": 2, "probcover": 3, "coreset": 4, "kmedoids": 5,
                  "facility-location": 6, "kmeans-nearest": 7}

TYPICLUST_NEIGHBOURS = 20  # k of the k-nearest-neighbour typicality (TypiClust paper)
PROBCOVER_PURITY = 0.95  # alpha: required fraction of pure balls (ProbCover paper)
PROBCOVER_DELTAS = tuple(np.round(np.arange(0.01, 2.0 + 1e-9, 0.01), 2))  # radii on the unit sphere
PROBCOVER_CLASSES = 2  # pseudo-label clusters for the purity: positive vs. normal
KMEANS_MAX_ITER = 100
KMEDOIDS_MAX_ITER = 300  # alternating updates at most: scikit-learn-extra's KMedoids default
FASTERPAM_MAX_ITER = 100


def select_baseline(method, pool_embeddings, k, seed, task_ids=None):
    """K distinct pool positions per task chosen by ``method``.

    pool_embeddings (B, P, D) float -> LongTensor (B, k) on the same device.
    ``task_ids`` (B ints, default 0..B-1) name the tasks for their random numbers.
    """
    return select_prepared(prepare_pools(method, pool_embeddings), k, seed, task_ids)


@dataclass(frozen=True)
class PreparedPools:
    """A batch of pools with the work that does not depend on K done once, so that one method can select
    at several K from them: the k-medoids methods' distance matrices, the embeddings for the others."""
    method: str
    inputs: object  # (B, P, P) float64 numpy distances (k-medoids methods) or the (B, P, D) embeddings
    device: torch.device

    @property
    def shape(self):
        """(tasks, pool size)."""
        return tuple(self.inputs.shape[:2])


def prepare_pools(method, pool_embeddings):
    """The PreparedPools of ``method`` for pool_embeddings (B, P, D)."""
    if method not in BASELINE_METHODS:
        raise ValueError(f"unknown baseline {method!r}; valid: {', '.join(BASELINE_METHODS)}")
    inputs = pool_embeddings
    if method in _ON_DISTANCES and pool_embeddings.shape[1] <= pool_blocks.DENSE_POOL_MAX:
        inputs = pairwise_distances(pool_embeddings.double()).cpu().numpy()  # (B, P, P)
    return PreparedPools(method, inputs, pool_embeddings.device)


def select_prepared(prepared, k, seed, task_ids=None):
    """select_baseline's selection (B, k) from PreparedPools: the same positions for the same k, seed and tasks."""
    batch, pool = prepared.shape
    if not 1 <= k <= pool:
        raise ValueError(f"k must be between 1 and the pool size {pool}, got {k}")
    task_ids = list(range(batch)) if task_ids is None else [int(t) for t in task_ids]
    if len(task_ids) != batch:
        raise ValueError(f"{len(task_ids)} task ids for {batch} tasks")
    rngs = [np.random.default_rng([seed, BASELINE_SELECTION, RANDOM_STREAMS[prepared.method], t]) for t in task_ids]
    if pool > pool_blocks.DENSE_POOL_MAX and prepared.method != "random":
        from models.blocked_baselines import BLOCKED_SELECTORS  # it builds on this module's functions
        picks = [BLOCKED_SELECTORS[prepared.method](x, k, rng) for x, rng in zip(prepared.inputs, rngs)]
        return torch.stack(picks).to(prepared.device)
    if prepared.method in _ON_DISTANCES:
        medoids = _ON_DISTANCES[prepared.method](prepared.inputs, k, rngs)  # (B, k)
        return torch.from_numpy(medoids).to(prepared.device)
    return _SELECTORS[prepared.method](prepared.inputs, k, rngs)


def task_uniforms(rngs, size, device, dtype=torch.float64):
    """(B, size) uniform numbers in [0, 1), row b from ``rngs[b]``."""
    return torch.from_numpy(np.stack([rng.random(size) for rng in rngs])).to(device=device, dtype=dtype)


def pairwise_distances(x):
    """Euclidean distances within each task: (B, P, D) -> (B, P, P), zero diagonal."""
    squared = (x * x).sum(-1)  # (B, P)
    d2 = squared.unsqueeze(2) + squared.unsqueeze(1) - 2 * x @ x.transpose(1, 2)  # (B, P, P)
    d2.diagonal(dim1=1, dim2=2).zero_()
    return d2.clamp_(min=0).sqrt_()


def random_baseline(x, k, rngs):
    noise = task_uniforms(rngs, x.shape[1], x.device)  # (B, P)
    return noise.topk(k, dim=1).indices


def kmedoids_medoids(distances, k, rngs):
    """The paper's k-medoids: k-medoids++ seeding, then alternating updates, per task.
    distances (B, P, P) float64 numpy -> (B, k) int64 medoid positions."""
    medoids = [kmedoids.alternating(d, kmedoids_plus_plus(d, k, rng), max_iter=KMEDOIDS_MAX_ITER).medoids
               for d, rng in zip(distances, rngs)]
    return np.stack(medoids).astype(np.int64)


def fasterpam_medoids(distances, k, rngs):
    """FasterPAM from a random initialisation, per task: (B, P, P) float64 numpy -> (B, k) int64."""
    medoids = [kmedoids.fasterpam(d, k, max_iter=FASTERPAM_MAX_ITER, init="random",
                                  random_state=int(rng.integers(2**31 - 1)), n_cpu=1).medoids
               for d, rng in zip(distances, rngs)]
    return np.stack(medoids).astype(np.int64)


def kmedoids_plus_plus(distances, k, rng, local_trials=None):
    """k-medoids++ seeding on a distance matrix, as scikit-learn-extra's ``init='k-medoids++'``.

    The first medoid uniformly at random; then, k - 1 times, ``local_trials`` candidates drawn with
    probability proportional to their squared distance to the nearest medoid chosen so far, and the
    candidate that leaves the smallest sum of those squared distances is the next medoid (greedy
    k-means++ of Arthur & Vassilvitskii 2007; with one trial it is plain k-means++ seeding). The
    default number of trials, 2 + int(ln k), is scikit-learn-extra's.

    distances (P, P) float64 -> (k,) int64 distinct pool positions, in the order chosen.
    """
    pool = len(distances)
    trials = 2 + int(np.log(k)) if local_trials is None else local_trials
    medoids = [int(rng.integers(pool))]
    nearest = distances[medoids[0]] ** 2  # (P,) squared distance to the nearest medoid so far
    for _ in range(1, k):
        weighted = np.flatnonzero(nearest > 0)  # X-rays that can be drawn: not a medoid, nor at a medoid
        if len(weighted):
            cumulative = np.cumsum(nearest)  # (P,)
            # side='right' never lands on a weightless X-ray; the clip catches a target rounded up to the total.
            candidates = np.minimum(np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right"),
                                    weighted[-1])  # (trials,)
        else:  # every X-ray sits on a medoid (duplicate embeddings): any X-ray not chosen yet
            candidates = rng.choice(np.setdiff1d(np.arange(pool), medoids), size=1)
        potentials = np.minimum(nearest, distances[candidates] ** 2)  # (trials, P)
        best = int(potentials.sum(1).argmin())
        medoids.append(int(candidates[best]))
        nearest = potentials[best]
    return np.array(medoids, dtype=np.int64)


def kmeans(x, k, rngs, max_iter=KMEANS_MAX_ITER):
    """Batched K-means (k-means++ seeding, then Lloyd): (B, P, D) -> labels (B, P), centres (B, k, D).

    An empty cluster is moved to the X-ray farthest from its centre, so every cluster keeps members.
    """
    batch, pool, _ = x.shape
    rows = torch.arange(batch, device=x.device)
    uniforms = task_uniforms(rngs, k, x.device)  # (B, k)
    # k-means++: the first centre uniformly, each next one with probability proportional to D^2.
    chosen = (uniforms[:, 0] * pool).long().clamp_(max=pool - 1)  # (B,)
    centres = [x[rows, chosen]]
    nearest = ((x - centres[0].unsqueeze(1)) ** 2).sum(-1)  # (B, P) squared distance to nearest centre
    for j in range(1, k):
        cumulative = nearest.double().cumsum(1)  # (B, P)
        target = uniforms[:, j:j + 1] * cumulative[:, -1:]
        chosen = torch.searchsorted(cumulative, target).squeeze(1).clamp_(max=pool - 1)
        centres.append(x[rows, chosen])
        nearest = torch.minimum(nearest, ((x - centres[-1].unsqueeze(1)) ** 2).sum(-1))
    centres = torch.stack(centres, 1)  # (B, k, D)
    labels = None
    for _ in range(max_iter):
        d2 = _squared_distances(x, centres)  # (B, P, k)
        new_labels = d2.argmin(-1)  # (B, P)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        centres = _cluster_means(x, labels, k)
        counts = torch.zeros(batch, k, device=x.device).scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float))
        _refill_empty_clusters(x, d2, labels, counts, centres)
    labels = _squared_distances(x, centres).argmin(-1)
    return labels, centres


def _refill_empty_clusters(x, d2, labels, counts, centres):
    """Move each empty cluster's centre (in place) to the X-ray farthest from its own centre, one empty cluster
    after the other, the farthest first; written with torch.where, so that the loop waits for no result of the
    device (on the CPU one check whether any cluster is empty skips it)."""
    if x.device.type == "cpu" and not (counts == 0).any():
        return
    rows = torch.arange(x.shape[0], device=x.device)
    own = d2.gather(2, labels.unsqueeze(-1)).squeeze(-1).clone()  # (B, P)
    for j in range(centres.shape[1]):
        empty = counts[:, j] == 0  # (B,)
        far = own.argmax(1)  # (B,)
        centres[:, j] = torch.where(empty.unsqueeze(1), x[rows, far], centres[:, j])
        own[rows, far] = torch.where(empty, torch.full_like(own[rows, far], -1.0), own[rows, far])


def _squared_distances(x, centres):
    """(B, P, D), (B, k, D) -> (B, P, k) squared Euclidean distances."""
    return ((x * x).sum(-1, keepdim=True) + (centres * centres).sum(-1).unsqueeze(1)
            - 2 * x @ centres.transpose(1, 2)).clamp_(min=0)


def _cluster_means(x, labels, k):
    batch, _, dim = x.shape
    sums = torch.zeros(batch, k, dim, device=x.device, dtype=x.dtype).scatter_add_(
        1, labels.unsqueeze(-1).expand(-1, -1, dim), x)  # (B, k, D)
    counts = torch.zeros(batch, k, device=x.device, dtype=x.dtype).scatter_add_(
        1, labels, torch.ones_like(labels, dtype=x.dtype))
    return sums / counts.clamp(min=1).unsqueeze(-1)


def typicality(x, labels, neighbours=TYPICLUST_NEIGHBOURS, eps=1e-7):
    """TypiClust's typicality of each X-ray within its cluster: (B, P, D), (B, P) -> (B, P).

    k = min(neighbours, cluster size - 1); typicality = k / (sum of the distances to the k
    nearest X-rays of the same cluster + eps); 1 for an X-ray alone in its cluster.
    """
    distances = pairwise_distances(x)  # (B, P, P)
    same = labels.unsqueeze(2) == labels.unsqueeze(1)  # (B, P, P)
    distances = distances.masked_fill(~same, float("inf"))
    width = min(neighbours + 1, x.shape[1])
    nearest = distances.topk(width, dim=2, largest=False).values  # (B, P, width), self (0) first
    size = same.sum(2)  # (B, P)
    k = (size - 1).clamp(max=neighbours)  # (B, P)
    nearest = torch.where(torch.isinf(nearest), torch.zeros_like(nearest), nearest)
    total = nearest.cumsum(2).gather(2, k.unsqueeze(-1)).squeeze(-1)  # sum of self + k nearest
    return torch.where(k > 0, k / (total + eps), torch.ones_like(total))


def typiclust_baseline(x, k, rngs):
    x = F.normalize(x, dim=-1)
    labels, _ = kmeans(x, k, rngs)  # (B, P)
    typical = typicality(x, labels)  # (B, P)
    picks = []
    taken = torch.zeros_like(typical, dtype=torch.bool)
    for cluster in range(k):
        score = typical.masked_fill((labels != cluster) | taken, -float("inf"))
        pick = score.argmax(1)  # (B,)
        taken.scatter_(1, pick.unsqueeze(1), True)
        picks.append(pick)
    return torch.stack(picks, 1)


def probcover_delta(distances, labels, deltas=PROBCOVER_DELTAS, purity=PROBCOVER_PURITY):
    """The largest delta of the grid whose balls are pure for at least ``purity`` of the X-rays.

    A ball around X-ray i is pure when no X-ray of another cluster lies within delta, i.e. when
    delta < m_i, m_i being the distance to the nearest X-ray of another cluster. As in ProbCover
    (and scikit-activeml), the grid is scanned upwards and stops at the first impure delta; the
    smallest delta is used when even it fails. (B, P, P), (B, P) -> (B,).
    """
    other = labels.unsqueeze(2) != labels.unsqueeze(1)  # (B, P, P)
    margin = distances.masked_fill(~other, float("inf")).amin(2)  # (B, P)
    grid = torch.tensor(deltas, dtype=distances.dtype, device=distances.device)  # (G,)
    pure = (margin.unsqueeze(-1) > grid).to(torch.float64).mean(1) >= purity  # (B, G)
    passing = pure.long().cumprod(1).sum(1)  # (B,) deltas passed before the first failure
    return grid[(passing - 1).clamp(min=0)]


def probcover_baseline(x, k, rngs):
    x = F.normalize(x, dim=-1)
    distances = pairwise_distances(x)  # (B, P, P)
    labels, _ = kmeans(x, min(PROBCOVER_CLASSES, x.shape[1]), rngs)
    delta = probcover_delta(distances, labels)  # (B,)
    edges = (distances <= delta.view(-1, 1, 1)).to(x.dtype)  # (B, P, P): j within the ball of i
    # Ties (equal coverage) are broken at random: the integer counts get noise in [0, 0.5).
    tie_break = 0.5 * task_uniforms(rngs, (k, x.shape[1]), x.device, x.dtype)  # (B, k, P)
    uncovered = torch.ones_like(distances[:, 0])  # (B, P)
    taken = torch.zeros_like(uncovered, dtype=torch.bool)
    picks = []
    for step in range(k):
        coverage = (edges @ uncovered.unsqueeze(-1)).squeeze(-1)  # (B, P): uncovered X-rays in each ball
        pick = (coverage + tie_break[:, step]).masked_fill(taken, -float("inf")).argmax(1)  # (B,)
        taken.scatter_(1, pick.unsqueeze(1), True)
        uncovered = uncovered * (1 - edges.gather(1, pick.view(-1, 1, 1).expand(-1, 1, x.shape[1])).squeeze(1))
        picks.append(pick)
    return torch.stack(picks, 1)


def coreset_baseline(x, k, rngs):
    batch, pool, _ = x.shape
    rows = torch.arange(batch, device=x.device)
    first = (task_uniforms(rngs, 1, x.device)[:, 0] * pool).long().clamp_(max=pool - 1)  # (B,)
    picks = [first]
    nearest = (x - x[rows, first].unsqueeze(1)).norm(dim=-1)  # (B, P) distance to the nearest selected
    for _ in range(1, k):
        # The selected X-rays have distance 0; -1 keeps them out even when every distance is 0.
        taken = torch.zeros_like(nearest, dtype=torch.bool).scatter_(1, torch.stack(picks, 1), True)
        pick = nearest.masked_fill(taken, -1.0).argmax(1)
        picks.append(pick)
        nearest = torch.minimum(nearest, (x - x[rows, pick].unsqueeze(1)).norm(dim=-1))
    return torch.stack(picks, 1)


def facility_location_baseline(x, k, rngs):
    x = F.normalize(x, dim=-1)
    similarity = x @ x.transpose(1, 2)  # (B, P, P): s_ij, symmetric
    best = torch.full_like(similarity[:, 0], -1.0)  # (B, P) best similarity of each X-ray to a pick (-1: none)
    taken = torch.zeros_like(best, dtype=torch.bool)
    picks = []
    for _ in range(k):
        gains = (similarity - best.unsqueeze(2)).clamp_(min=0).sum(1)  # (B, P): gain of each candidate j
        pick = gains.masked_fill(taken, -float("inf")).argmax(1)  # (B,)
        taken.scatter_(1, pick.unsqueeze(1), True)
        best = torch.maximum(best, similarity.gather(2, pick.view(-1, 1, 1).expand(-1, x.shape[1], 1)).squeeze(2))
        picks.append(pick)
    return torch.stack(picks, 1)


def kmeans_nearest_baseline(x, k, rngs):
    x = F.normalize(x, dim=-1)
    _, centres = kmeans(x, k, rngs)
    return nearest_to_centres(x, centres)


def nearest_to_centres(x, centres):
    """For centre 1, 2, ..., k in turn the X-ray nearest it that is not picked yet: (B, P, D), (B, k, D) -> (B, k)."""
    d2 = _squared_distances(x, centres)  # (B, P, k)
    taken = torch.zeros(d2.shape[:2], dtype=torch.bool, device=x.device)
    picks = []
    for j in range(centres.shape[1]):
        pick = d2[:, :, j].masked_fill(taken, float("inf")).argmin(1)  # (B,)
        taken.scatter_(1, pick.unsqueeze(1), True)
        picks.append(pick)
    return torch.stack(picks, 1)


# Methods that select from the pool's Euclidean distance matrix (on the CPU), and those that read the embeddings.
_ON_DISTANCES = {"kmedoids": kmedoids_medoids, "kmedoids-fasterpam": fasterpam_medoids}
_SELECTORS = {"random": random_baseline, "typiclust": typiclust_baseline, "probcover": probcover_baseline,
              "coreset": coreset_baseline, "facility-location": facility_location_baseline,
              "kmeans-nearest": kmeans_nearest_baseline}
