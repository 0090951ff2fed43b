"""Distances inside one large pool, a block of rows at a time, so that no pool x pool matrix is ever held.

The baselines of models/baselines.py select from pools of up to ``DENSE_POOL_MAX`` X-rays with full
(B, P, P) matrices, batched over tasks (evaluate.py's pools). A larger pool (a hospital's year of
X-rays in select_xrays.py) is handled one task at a time, and every pool-wide step reads the
distances from :class:`PoolDistances` in blocks of about ``BLOCK_BYTES``: nearest neighbours and
minima per block, radius counts per block, sums per block. The distances are computed by the
dense code's formula, |x|^2 + |y|^2 - 2 x.y, zero from an X-ray to itself, so both give the same
numbers up to the rounding of the matrix products (which depends on the block shape).
"""
import numpy as np
import torch

DENSE_POOL_MAX = 8192  # pools up to this size use the dense (B, P, P) code; larger ones the blocked code
BLOCK_BYTES = 64 * 2**20  # bytes of one block of distances (a few such blocks are alive at once)


def block_rows(columns, itemsize, budget=None):
    """Rows of a block with ``columns`` columns of ``itemsize`` bytes that fit in the block budget (at least 1)."""
    return max(1, (BLOCK_BYTES if budget is None else budget) // max(1, columns * itemsize))


def row_blocks(rows, columns, itemsize):
    """Consecutive slices of ``rows`` (a LongTensor or a length) of at most block_rows(columns, itemsize)."""
    total = rows if isinstance(rows, int) else len(rows)
    step = block_rows(columns, itemsize)
    for start in range(0, total, step):
        yield slice(start, min(start + step, total))


def count_true(mask, dim):
    """How many elements of a bool tensor are True along ``dim`` (int64). Summed as bytes into int32: twice as fast
    on a CPU as summing the bools themselves, which converts every element to int64 first."""
    return mask.view(torch.uint8).sum(dim, dtype=torch.int32).long()


class PoolDistances:
    """Euclidean distances between the X-rays of one pool, computed on demand.

    ``x`` (P, D) tensor. ``block(rows, cols)`` -> (len(rows), len(cols)) tensor; ``cols`` None means
    the whole pool. Indexing (``distances[i]``, ``distances[array]``) gives float64 numpy rows, so
    that code written for a (P, P) numpy matrix (kmedoids_plus_plus) reads it unchanged.
    """

    def __init__(self, x):
        self.x = x
        self.squared = (x * x).sum(-1)  # (P,)

    def __len__(self):
        return self.x.shape[0]

    @property
    def itemsize(self):
        return self.x.element_size()

    def partial(self, rows, cols=None):
        """(b, m) |x_j|^2 - 2 x_i.x_j, the squared distances less |x_i|^2, in one matrix product (addmm): the
        cheapest form for comparisons and minima along a row, where the row's constant does not matter."""
        xc, sc = (self.x, self.squared) if cols is None else (self.x[cols], self.squared[cols])
        return torch.addmm(sc.unsqueeze(0), self.x[rows], xc.T, alpha=-2)

    def block(self, rows, cols=None, self_columns=None):
        """(b, m) distances. An X-ray's distance to itself is 0, as on the dense code's zeroed diagonal: for
        ``cols`` None the columns of ``rows``; otherwise ``self_columns`` (b,) says where each row's own column
        is (None: the rows are not among ``cols``)."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.x.device).reshape(-1)
        if cols is not None:
            cols = torch.as_tensor(cols, dtype=torch.long, device=self.x.device).reshape(-1)
        d2 = self.partial(rows, cols).add_(self.squared[rows].unsqueeze(1))
        own = rows if cols is None else self_columns
        if own is not None:
            d2[torch.arange(len(rows), device=self.x.device), own] = 0.0
        return d2.clamp_(min=0).sqrt_()

    def count_within(self, rows, radius, cols=None):
        """(b,) int64: how many of ``cols`` (default: the pool) lie within ``radius`` of each of ``rows``."""
        bound = (radius * radius - self.squared[rows]).unsqueeze(1)  # d^2 <= r^2  <=>  partial <= r^2 - |x_i|^2
        return count_true(self.partial(rows, cols) <= bound, 1)

    def __getitem__(self, rows):
        single = np.ndim(rows) == 0
        values = self.block(np.atleast_1d(np.asarray(rows))).double().cpu().numpy()
        return values[0] if single else values

    def row_sums(self, members):
        """(m,) sum of each member's distances to all the members (members: LongTensor of pool positions)."""
        sums = torch.empty(len(members), dtype=self.x.dtype, device=self.x.device)
        for part in row_blocks(len(members), len(members), self.itemsize):
            own = torch.arange(part.start, part.stop, device=self.x.device)
            sums[part] = self.block(members[part], members, self_columns=own).sum(1)
        return sums
