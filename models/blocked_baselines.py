"""The baselines of models/baselines.py on one pool larger than ``DENSE_POOL_MAX``, in bounded memory.

    BLOCKED_SELECTORS[method](x (P, D), k, rng) -> (k,) LongTensor of distinct pool positions

Each is the algorithm of models/baselines.py (its docstring states which), with every pool-wide step
read from models/pool_blocks.PoolDistances a block at a time; the random numbers are drawn in the
same order from the same generator, so on a pool that the dense code can hold both select the same
X-rays (tests/test_large_pool_baselines.py) up to ties within the rounding of the matrix products.
Memory is the pool's embeddings, one normalised copy where the method works on the unit sphere,
O(P) vectors and a few blocks of ``BLOCK_BYTES``. Steps that take more than a few seconds on a large
pool show a progress bar.
"""
import kmedoids
import numpy as np
import torch
import torch.nn.functional as F

from models import pool_blocks
from models.baselines import (FASTERPAM_MAX_ITER, KMEDOIDS_MAX_ITER, PROBCOVER_CLASSES, PROBCOVER_DELTAS,
                              PROBCOVER_PURITY, TYPICLUST_NEIGHBOURS, kmeans, kmedoids_plus_plus,
                              kmeans_nearest_baseline, kmedoids_medoids, pairwise_distances, task_uniforms)
from models.pool_blocks import PoolDistances, count_true, row_blocks
from utils.progress import progress_bar

KMEDOIDS_EXACT_MAX = 30_000  # the paper's k-medoids exactly up to this pool size; CLARA around it above
CLARA_SAMPLES = 5  # CLARA's samples (Kaufman & Rousseeuw's default)
CLARA_SAMPLE_SIZE = 4096  # X-rays per sample: a 128 MB float64 matrix; FasterPAM on it takes seconds
FACILITY_CANDIDATES = 64  # candidates whose facility-location gain is recomputed together
# X-rays the facility-location objective sums over: the whole pool up to this size (exact), a random sample of
# this many above it, so that a step costs O(P x FACILITY_CLIENTS_MAX) and 100,000 X-rays take minutes, not hours.
FACILITY_CLIENTS_MAX = 30_000
FACILITY_BOUND_SLACK = 1e-4  # per X-ray, added to the first upper bounds against rounding
PROBCOVER_CANDIDATES = 64  # candidates whose ProbCover coverage is recounted together


def _bar(total, desc, unit="block"):
    return progress_bar(total=total, desc=desc, unit=unit, leave=False)


def typiclust(x, k, rng):
    x = F.normalize(x, dim=-1)
    labels = kmeans(x[None], k, [rng])[0][0]  # (P,)
    typical = typicality(PoolDistances(x), labels)
    picks, taken = [], torch.zeros_like(typical, dtype=torch.bool)
    for cluster in range(k):
        pick = typical.masked_fill((labels != cluster) | taken, -float("inf")).argmax()
        taken[pick] = True
        picks.append(pick)
    return torch.stack(picks)


def typicality(distances, labels, neighbours=TYPICLUST_NEIGHBOURS, eps=1e-7):
    """baselines.typicality from each cluster's own blocks: (P,) typicality within the cluster."""
    typical = torch.ones(len(distances), dtype=distances.x.dtype, device=distances.x.device)
    clusters = [torch.nonzero(labels == c).squeeze(1) for c in torch.unique(labels).tolist()]
    with _bar(len(distances), "TypiClust typicality", "X-ray") as bar:
        for members in clusters:
            size = len(members)
            if size > 1:
                k = min(neighbours, size - 1)
                for part in row_blocks(size, size, distances.itemsize):
                    rows = members[part]
                    partial = distances.partial(rows, members)  # (b, m) squared distances less |x_i|^2
                    partial[torch.arange(len(rows), device=rows.device), torch.arange(part.start, part.stop, device=rows.device)] = float("inf")
                    nearest = partial.topk(k, dim=1, largest=False).values  # (b, k): the k nearest others
                    nearest = nearest.add_(distances.squared[rows].unsqueeze(1)).clamp_(min=0).sqrt_()
                    typical[rows] = k / (nearest.sum(1) + eps)  # its own distance, 0, adds nothing
            bar.update(size)
    return typical


def probcover(x, k, rng):
    """baselines.probcover's greedy by lazy evaluation. A candidate's coverage (the X-rays within delta of it not
    covered yet) only shrinks as picks are added, so a coverage counted earlier bounds it from above: each step
    recounts the candidates with the largest bound + tie-break, PROBCOVER_CANDIDATES of them and twice as many at
    each further round of the step, until the best recounted one is above every other bound. The same picks as
    updating every ball after each pick, which reads every (pool, newly covered) pair: a whole pass over the pool's
    pairs in all, where the recounts read (candidates, uncovered) pairs only."""
    x = F.normalize(x, dim=-1)
    pool = x.shape[0]
    distances = PoolDistances(x)
    labels = kmeans(x[None], min(PROBCOVER_CLASSES, pool), [rng])[0][0]  # (P,)
    delta = probcover_delta(distances, labels)
    tie_break = 0.5 * task_uniforms([rng], (k, pool), x.device, x.dtype)[0]  # (k, P)
    bound = ball_counts(distances, delta, torch.arange(pool, device=x.device), "ProbCover balls")  # (P,) exact at first
    uncovered = torch.ones(pool, dtype=torch.bool, device=x.device)
    taken = torch.zeros_like(uncovered)
    picks = []
    for step in progress_bar(iterable=range(k), desc="ProbCover picks", unit="pick", leave=False):
        fresh = taken.clone()  # candidates whose bound is their coverage at this step (the taken: -inf)
        targets = torch.nonzero(uncovered).squeeze(1)
        width = PROBCOVER_CANDIDATES
        while True:
            value = bound.to(x.dtype) + tie_break[step]
            candidates = value.masked_fill(fresh, -float("inf")).topk(min(width, int((~fresh).sum()))).indices
            width *= 2
            bound[candidates] = ball_counts(distances, delta, targets, rows=candidates)
            fresh[candidates] = True
            value = bound.to(x.dtype) + tie_break[step]
            best = value.masked_fill(~fresh | taken, -float("inf")).max()
            # strictly above: an equal bound not recounted could be an equal value at a lower position
            if fresh.all() or best > value.masked_fill(fresh, -float("inf")).max():
                break
        pick = value.masked_fill(~fresh | taken, -float("inf")).argmax()  # the lowest position among equals
        taken[pick] = True
        picks.append(pick)
        uncovered &= distances.block(pick.view(1))[0] > delta
    return torch.stack(picks)


def probcover_delta(distances, labels):
    """baselines.probcover_delta from blocks: each X-ray's distance to the nearest X-ray of another cluster, from
    the blocks between two clusters only, each block read once (row minima for one, column minima for the other)."""
    squared = torch.full((len(distances),), float("inf"), dtype=distances.x.dtype, device=distances.x.device)
    clusters = [torch.nonzero(labels == c).squeeze(1) for c in torch.unique(labels).tolist()]
    pairs = [(a, b) for i, a in enumerate(clusters) for b in clusters[i + 1:]]
    with _bar(sum(len(a) for a, _ in pairs), "ProbCover radius", "X-ray") as bar:
        for members, others in pairs:
            for part in row_blocks(len(members), len(others), distances.itemsize):
                rows = members[part]
                d2 = distances.partial(rows, others).add_(distances.squared[rows].unsqueeze(1))  # (b, m) squared
                squared[rows] = torch.minimum(squared[rows], d2.amin(1))
                squared[others] = torch.minimum(squared[others], d2.amin(0))
                bar.update(len(rows))
    margin = squared.clamp_(min=0).sqrt_()
    grid = torch.tensor(PROBCOVER_DELTAS, dtype=margin.dtype, device=margin.device)
    pure = (margin.unsqueeze(-1) > grid).to(torch.float64).mean(0) >= PROBCOVER_PURITY  # (G,)
    passing = int(pure.long().cumprod(0).sum())
    return grid[max(passing - 1, 0)]


def ball_counts(distances, delta, cols, desc=None, rows=None):
    """For every X-ray i of ``rows`` (default: the pool, (P,)), how many of ``cols`` lie within delta of it (int64)."""
    every_row = rows is None
    rows = torch.arange(len(distances), device=distances.x.device) if every_row else rows
    counts = torch.zeros(len(rows), dtype=torch.long, device=distances.x.device)
    if len(cols) == 0 or len(rows) == 0:
        return counts
    if every_row and len(cols) == len(distances):
        return _all_ball_counts(distances, delta, desc)
    for part in row_blocks(len(rows), len(cols), distances.itemsize):
        counts[part] = distances.count_within(rows[part], delta, cols)
    return counts


def _all_ball_counts(distances, delta, desc):
    """ball_counts over the whole pool, each pair read once: block [s, e) x [s, P) counts for its rows, and for its
    columns beyond e (the square [s, e) x [s, e) holds both orders of its pairs already)."""
    pool, device = len(distances), distances.x.device
    counts = torch.zeros(pool, dtype=torch.long, device=device)
    step = max(1, int(pool_blocks.block_rows(pool, distances.itemsize)))
    bar = _bar(pool * (pool + 1) // 2, desc or "ball counts", "pair")
    for start in range(0, pool, step):
        stop = min(start + step, pool)
        rows = torch.arange(start, stop, device=device)
        within = distances.partial(rows, torch.arange(start, pool, device=device)) \
            <= (delta * delta - distances.squared[rows]).unsqueeze(1)  # (b, P - start)
        counts[start:stop] += count_true(within, 1)
        counts[stop:] += count_true(within[:, stop - start:], 0)
        bar.update((stop - start) * (pool - start))
    bar.close()
    return counts


def coreset(x, k, rng):
    """baselines.coreset_baseline with the distances to each pick computed a block of rows at a time."""
    pool = x.shape[0]
    first = int(task_uniforms([rng], 1, x.device)[0, 0] * pool)
    picks = [min(first, pool - 1)]
    nearest = _distances_to(x, x[picks[0]])
    for _ in progress_bar(iterable=range(1, k), desc="CoreSet picks", unit="pick", leave=False):
        taken = torch.zeros_like(nearest, dtype=torch.bool)
        taken[picks] = True
        pick = int(nearest.masked_fill(taken, -1.0).argmax())
        picks.append(pick)
        nearest = torch.minimum(nearest, _distances_to(x, x[pick]))
    return torch.tensor(picks, device=x.device)


def _distances_to(x, point):
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for part in row_blocks(x.shape[0], x.shape[1], x.element_size()):
        out[part] = (x[part] - point).norm(dim=-1)
    return out


def facility_location(x, k, rng):
    """Greedy facility location by lazy evaluation: the picks of baselines.facility_location_baseline.

    A candidate's gain only shrinks as picks are added (the function is submodular), so a gain computed
    earlier bounds it from above. Each step recomputes the gains of the candidates with the largest
    bounds, FACILITY_CANDIDATES of them and twice as many at each further round of the step, and takes
    the best once no other bound exceeds it: a step that must look at every candidate (the second,
    whose bounds are the first step's) costs at most about two passes over the pool. The first bounds
    are the gains of the first step, sum_i (s_ij + 1) = x_j . sum_i x_i + P, without any pool x pool product.

    Pools above FACILITY_CLIENTS_MAX: every X-ray is a candidate, but the objective sums over a uniform random
    sample of FACILITY_CLIENTS_MAX X-rays (the "clients" to be represented; drawn from ``rng``), an unbiased
    estimate of the whole pool's sum. Up to that size nothing is sampled and the picks are the dense code's.
    """
    x = F.normalize(x, dim=-1)
    pool = x.shape[0]
    clients = x
    if pool > FACILITY_CLIENTS_MAX:
        clients = x[torch.from_numpy(np.sort(rng.choice(pool, size=FACILITY_CLIENTS_MAX, replace=False))).to(x.device)]
    best = torch.full((len(clients),), -1.0, dtype=x.dtype, device=x.device)  # best similarity to a pick so far
    bound = x @ clients.sum(0) + len(clients) * (1 + FACILITY_BOUND_SLACK)  # (P,) upper bounds of the gains
    taken = torch.zeros(pool, dtype=torch.bool, device=x.device)
    picks = []
    for _ in progress_bar(iterable=range(k), desc="facility location", unit="pick", leave=False):
        fresh = taken.clone()  # candidates whose bound is their gain at this step (the taken: -inf)
        width = FACILITY_CANDIDATES
        while True:
            candidates = bound.masked_fill(fresh, -float("inf")).topk(min(width, int((~fresh).sum()))).indices
            width *= 2
            for part in row_blocks(len(candidates), len(clients), x.element_size()):
                bound[candidates[part]] = (x[candidates[part]] @ clients.T - best).clamp_(min=0).sum(1)
            fresh[candidates] = True
            top_gain = bound.masked_fill(~fresh | taken, -float("inf")).max()
            if fresh.all() or top_gain >= bound.masked_fill(fresh, -float("inf")).max():
                break  # no candidate not recomputed can do better
        # the lowest position among equal gains, as argmax
        pick = torch.nonzero((bound == top_gain) & fresh & ~taken).min()
        picks.append(pick)
        taken[pick] = True
        bound[pick] = -float("inf")
        best = torch.maximum(best, clients @ x[pick])
    return torch.stack(picks)


def kmedoids_alternating(x, k, rng):
    """The paper's k-medoids: k-medoids++ seeding and alternating updates, read from blocks of distances, on
    pools up to KMEDOIDS_EXACT_MAX X-rays; CLARA around the same algorithm above (see clara)."""
    if x.shape[0] > KMEDOIDS_EXACT_MAX:
        return clara(x, k, rng, lambda matrix: kmedoids_medoids(matrix[None], k, [rng])[0])
    distances = PoolDistances(x.double())
    medoids = kmedoids_plus_plus(distances, k, rng)
    return torch.from_numpy(alternating(distances, medoids)).to(x.device)


def alternating(distances, medoids, max_iter=KMEDOIDS_MAX_ITER):
    """kmedoids.alternating's updates (Voronoi iteration) without the distance matrix.

    Assign every X-ray to its nearest medoid (the first on ties); move each medoid to the member with the
    least total distance to its cluster when that is strictly less than the medoid's; until nothing moves.
    A cluster whose members and medoid did not change cannot move, and is not recomputed.
    """
    medoids = np.asarray(medoids, dtype=np.int64)
    settled = {}  # cluster -> (medoid, members) that did not move
    bar = progress_bar(total=None, desc="k-medoids alternating", unit="iteration", leave=False)
    for _ in range(max_iter):
        to_medoids = distances.block(medoids)  # (k, P)
        labels = to_medoids.argmin(0)  # (P,)
        moved = medoids.copy()
        for cluster in range(len(medoids)):
            members = torch.nonzero(labels == cluster).squeeze(1)
            key = (int(medoids[cluster]), members.cpu().numpy().tobytes())
            if settled.get(cluster) == key or len(members) == 0:
                continue
            costs = distances.row_sums(members)  # (m,)
            own = (members == int(medoids[cluster])).nonzero()
            current = costs[own[0, 0]] if len(own) else to_medoids[cluster, members].sum()
            if costs.min() < current:
                moved[cluster] = int(members[costs.argmin()])
            else:
                settled[cluster] = key
        bar.update(1)
        if np.array_equal(moved, medoids):
            break
        medoids = moved
    bar.close()
    return medoids


def fasterclara(x, k, rng):
    """FasterCLARA (Schubert & Rousseeuw 2021): CLARA with FasterPAM from a random initialisation on each sample."""
    return clara(x, k, rng, lambda matrix: kmedoids.fasterpam(
        matrix, k, max_iter=FASTERPAM_MAX_ITER, init="random", random_state=int(rng.integers(2**31 - 1)),
        n_cpu=1).medoids)


def clara(x, k, rng, medoids_of):
    """CLARA (Kaufman & Rousseeuw 1990): ``medoids_of`` a (n, n) float64 distance matrix, on CLARA_SAMPLES random
    samples of CLARA_SAMPLE_SIZE X-rays; the medoids with the least total distance from the whole pool to its
    nearest medoid. Memory: one sample's matrix at a time."""
    distances = PoolDistances(x.double())
    pool, sample_size = len(distances), min(len(distances), CLARA_SAMPLE_SIZE)
    best, best_cost = None, np.inf
    for _ in progress_bar(iterable=range(CLARA_SAMPLES), desc="CLARA samples", unit="sample", leave=False):
        sample = np.sort(rng.choice(pool, size=sample_size, replace=False))
        matrix = pairwise_distances(distances.x[torch.from_numpy(sample)][None])[0].cpu().numpy()
        medoids = sample[np.asarray(medoids_of(matrix), dtype=np.int64)]
        del matrix
        cost = float(distances.block(medoids).amin(0).sum())
        if cost < best_cost:
            best, best_cost = medoids, cost
    return torch.from_numpy(best).to(x.device)


def _one_task(selector):
    """A batched selector of models/baselines.py applied to one pool: (P, D) -> (k,)."""
    return lambda x, k, rng: selector(x[None], k, [rng])[0]


BLOCKED_SELECTORS = {"kmedoids": kmedoids_alternating, "kmedoids-fasterpam": fasterclara, "typiclust": typiclust,
                     "probcover": probcover, "coreset": coreset, "facility-location": facility_location,
                     "kmeans-nearest": _one_task(kmeans_nearest_baseline)}
