"""Drawing MedSelect tasks (the paper's Methods: task construction; docs/evaluation.md#tasks-and-methods): a pool and a disjoint query set for one condition.

Task i of a task set is a pure function of (seed, stream, i): its random numbers
come from ``numpy.random.default_rng((seed, stream, i))``, so meta-validation
and meta-test see the same tasks every time, on any device, in any batch size.

A task costs the same however large the CSVs are: it draws a fixed number of
distinct row numbers (``Generator.choice`` without replacement uses Floyd's
algorithm on large populations) instead of building sets over every row.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from utils.errors import UserError

# Independent random streams, so that meta-train, meta-val and meta-test tasks (seen and held-out
# conditions) never share their random numbers.
TRAIN_STREAM, VALIDATION_STREAM, TEST_STREAM, HELD_OUT_TEST_STREAM = 0, 1, 2, 3


@dataclass(frozen=True)
class TaskShape:
    """How many X-rays of each kind one task holds."""
    pool_size: int
    pool_positives: int
    query_size: int
    query_positives: int

    @property
    def pool_negatives(self):
        return self.pool_size - self.pool_positives

    @property
    def query_negatives(self):
        return self.query_size - self.query_positives

    @property
    def positives_needed(self):
        return self.pool_positives + self.query_positives

    @property
    def negatives_needed(self):
        return self.pool_negatives + self.query_negatives

    @classmethod
    def from_config(cls, config):
        shape = cls(pool_size=config["UNLABELED_POOL_SIZE"],
                    pool_positives=math.ceil(config["UNLABELED_POOL_SIZE"] * config["UNLABELED_POS_FRAC"]),
                    query_size=config["QUERY_SET_SIZE"],
                    query_positives=math.ceil(config["QUERY_SET_SIZE"] * config["QUERY_POS_FRAC"]))
        if not 0 < shape.query_positives < shape.query_size:
            raise UserError(f"QUERY_SET_SIZE={shape.query_size} with QUERY_POS_FRAC={config['QUERY_POS_FRAC']} "
                            f"gives {shape.query_positives} positive(s) in the query set; the query set must "
                            "hold both classes for its AUROC to exist")
        return shape


@dataclass
class TaskBatch:
    """A batch of tasks as row numbers into an XrayTable; labels are 1 (positive) / 0 (normal)."""
    condition: torch.Tensor     # (B,) index into the sampler's conditions
    pool_rows: torch.Tensor     # (B, P)
    pool_labels: torch.Tensor   # (B, P)
    query_rows: torch.Tensor    # (B, Q)
    query_labels: torch.Tensor  # (B, Q)

    def __len__(self):
        return self.pool_rows.shape[0]


class TaskSampler:
    """Draws tasks for the given conditions from an XrayTable, deterministically by task index."""

    def __init__(self, table, conditions, shape, seed, stream):
        self.table = table
        self.conditions = list(conditions)
        self.shape = shape
        self.seed = seed
        self.stream = stream
        self._positive_rows = [table.positive_rows[c] for c in self.conditions]
        self._check_enough_xrays()

    def _check_enough_xrays(self):
        shape = self.shape
        for condition, rows in zip(self.conditions, self._positive_rows):
            if len(rows) < shape.positives_needed:
                raise UserError(
                    f"{self.table.positive_csv}: condition '{condition}' has {len(rows)} positive X-ray(s) "
                    f"(1 or -1), but one task needs {shape.positives_needed} "
                    f"({shape.pool_positives} in the pool + {shape.query_positives} in the query set)")
        if self.table.num_normal_rows < shape.negatives_needed:
            raise UserError(
                f"{self.table.normal_csv}: {self.table.num_normal_rows} normal X-ray(s), but one task needs "
                f"{shape.negatives_needed} ({shape.pool_negatives} in the pool + "
                f"{shape.query_negatives} in the query set)")

    def task_arrays(self, task_index):
        """Task ``task_index`` as numpy arrays: condition, pool rows/labels, query rows/labels."""
        shape = self.shape
        rng = np.random.default_rng((self.seed, self.stream, task_index))
        condition = int(rng.integers(len(self.conditions)))
        candidates = self._positive_rows[condition]
        positives = candidates[rng.choice(len(candidates), shape.positives_needed, replace=False)]
        normals = self.table.normal_row_offset + rng.choice(
            self.table.num_normal_rows, shape.negatives_needed, replace=False)
        # The first rows drawn go to the pool, the rest to the query set: disjoint by construction.
        pool_rows = np.concatenate([positives[:shape.pool_positives], normals[:shape.pool_negatives]])
        query_rows = np.concatenate([positives[shape.pool_positives:], normals[shape.pool_negatives:]])
        pool_labels = np.repeat(np.array([1, 0], dtype=np.int64), [shape.pool_positives, shape.pool_negatives])
        query_labels = np.repeat(np.array([1, 0], dtype=np.int64), [shape.query_positives, shape.query_negatives])
        pool_order = rng.permutation(shape.pool_size)
        query_order = rng.permutation(shape.query_size)
        return (condition, pool_rows[pool_order], pool_labels[pool_order],
                query_rows[query_order], query_labels[query_order])

    def draw_arrays(self, task_indices):
        """Stacked numpy arrays of the given tasks: condition (B,), pool (B, P) x2, query (B, Q) x2."""
        tasks = [self.task_arrays(int(i)) for i in task_indices]
        return tuple(np.stack(column) for column in zip(*tasks))

    def draw(self, task_indices, device="cpu"):
        """The given tasks as a TaskBatch on ``device``."""
        return to_task_batch(self.draw_arrays(task_indices), device)


def to_task_batch(arrays, device):
    condition, pool_rows, pool_labels, query_rows, query_labels = (
        torch.from_numpy(a).to(device, non_blocking=True) for a in arrays)
    return TaskBatch(condition, pool_rows, pool_labels, query_rows, query_labels)


class FixedTaskSet:
    """Tasks 0..num_tasks-1 of a sampler, drawn once and kept (meta-validation, meta-test).

    Kept as row numbers only (num_tasks x (pool + query) integers), not embeddings.
    """

    def __init__(self, sampler, num_tasks):
        self.sampler = sampler
        self.num_tasks = num_tasks
        self._arrays = sampler.draw_arrays(range(num_tasks))

    def __len__(self):
        return self.num_tasks

    @property
    def conditions(self):
        return self.sampler.conditions

    def condition_ids(self):
        return self._arrays[0]

    def batches(self, batch_size, device="cpu"):
        """TaskBatches of at most ``batch_size`` tasks, in task order."""
        for start in range(0, self.num_tasks, batch_size):
            yield to_task_batch(tuple(a[start:start + batch_size] for a in self._arrays), device)
