"""How much memory selecting K from a pool of P X-rays of size D takes, per method, before starting it.

select_xrays.py and medselect.select compare :func:`peak_bytes` with the memory available (or
``--max_memory``) and refuse in one line rather than be killed by the kernel half-way. The estimate
is the peak resident memory of the whole process: the interpreter and libraries, the pool's table
and float32 embeddings, and the method's own working memory (dense matrices for pools up to
models.pool_blocks.DENSE_POOL_MAX, a few distance blocks and copies of the embeddings above). Its
constants were fitted to the peaks bench/large_pool.py measures (docs/results/large_pool.md) with
some margin, so it errs on the high side.
"""
from models import blocked_baselines, pool_blocks
from models.baselines import BASELINE_METHODS

PROCESS_BYTES = 2**30  # Python, torch, pandas and h5py loaded (select_xrays.py with random on 30,000 X-rays: 0.99 GB)
TABLE_BYTES_PER_ROW = 1024  # the pool CSV as a DataFrame (Path and a few columns)
# Dense code, (P, P) matrices alive at its peak, in units of P^2 float32 (4 bytes) per method.
DENSE_MATRICES = {"random": 0, "coreset": 0, "kmeans-nearest": 0, "facility-location": 3, "typiclust": 4,
                  "probcover": 5, "kmedoids": 7, "kmedoids-fasterpam": 7}
# Working copies of the (P, D) embeddings beyond the pool's own, in float32 units: normalised copies, float64
# copies (2 units), K-means' temporaries of one Lloyd step.
# random's 1: the HDF5 reader's buffers beside the array (select_xrays.py with random on 100,000 X-rays of size 1024
# peaked 0.13 GB above process + table + embeddings).
COPIES = {"random": 1, "coreset": 1, "kmeans-nearest": 3, "facility-location": 1, "typiclust": 3, "probcover": 3,
          "kmedoids": 2, "kmedoids-fasterpam": 2}
BLOCKS_ALIVE = 5  # distance blocks (and their masks) alive at once in the blocked code


def peak_bytes(method, pool, dim):
    """Estimated peak resident bytes of selecting with ``method`` from ``pool`` X-rays of size ``dim``."""
    if method not in BASELINE_METHODS:
        raise ValueError(f"unknown baseline {method!r}")
    embeddings = 4 * pool * dim
    fixed = PROCESS_BYTES + TABLE_BYTES_PER_ROW * pool + embeddings * (1 + COPIES[method])
    if method == "random":
        return fixed
    if pool <= pool_blocks.DENSE_POOL_MAX:
        return fixed + 4 * DENSE_MATRICES[method] * pool * pool
    blocks = BLOCKS_ALIVE * pool_blocks.BLOCK_BYTES
    if method == "kmedoids-fasterpam" or (method == "kmedoids" and pool > blocked_baselines.KMEDOIDS_EXACT_MAX):
        # CLARA: a dense sample of CLARA_SAMPLE_SIZE X-rays at a time
        blocks += 4 * DENSE_MATRICES[method] * blocked_baselines.CLARA_SAMPLE_SIZE ** 2
    if method == "probcover":  # each X-ray's purity at every radius of the grid, one byte each
        blocks += 200 * pool
    if method == "facility-location":  # the sampled clients' copy (models/blocked_baselines.facility_location)
        blocks += 4 * min(pool, blocked_baselines.FACILITY_CLIENTS_MAX) * dim
    return fixed + blocks


def largest_pool(method, dim, budget):
    """The largest pool (X-rays) whose peak_bytes stays within ``budget`` bytes (0 if none).

    peak_bytes grows with the pool within the dense range and within the blocked range, but drops where the
    blocked code takes over; each range is searched on its own."""
    def largest_in(low, high):  # the largest pool in [low, high] that fits, low - 1 if none; high None: unbounded
        if peak_bytes(method, low, dim) > budget:
            return low - 1
        step = 1
        while high is None and peak_bytes(method, low + step, dim) <= budget and step < 2**40:
            step *= 2
        fits, fails = low, (low + step if high is None else high + 1)
        if high is not None and peak_bytes(method, high, dim) <= budget:
            return high
        while fails - fits > 1:
            middle = (fits + fails) // 2
            fits, fails = (middle, fails) if peak_bytes(method, middle, dim) <= budget else (fits, middle)
        return fits

    blocked = largest_in(pool_blocks.DENSE_POOL_MAX + 1, None)
    return blocked if blocked > pool_blocks.DENSE_POOL_MAX else max(largest_in(1, pool_blocks.DENSE_POOL_MAX), 0)
