"""The embeddings of one split (a positive CSV and a normal CSV) held in memory as one table.

Positive-CSV rows come first, normal-CSV rows after them, in one (rows, D)
float32 tensor read straight from the HDF5 files (no intermediate copy), so a
task is just two index arrays into it and can be gathered on any device.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

import constants
from data.asl import ASL_SIZE, append_asl, asl_features
from data.conditions import require_condition_columns
from data.csv_hdf5 import read_csv, read_embeddings_beside
from data.embedding_origin import EmbeddingOrigin
from data.labels import POSITIVE_VALUES, UNCERTAIN, numeric_labels


@dataclass
class XrayTable:
    embeddings: torch.Tensor  # (rows, D): positive-CSV rows, then normal-CSV rows
    asl: torch.Tensor | None  # (rows, 3) Sex, Age, Frontal/Lateral, or None without USE_ASL
    positive_rows: dict  # condition -> int64 array of table rows positive for it
    uncertain_counts: dict  # condition -> how many of its positives are uncertain (-1)
    num_positive_csv_rows: int
    num_normal_rows: int
    positive_csv: str
    normal_csv: str
    columns: tuple = ()  # the positive CSV's column names
    origin: EmbeddingOrigin | None = None  # which encoder made the embeddings; None when not recorded
    _buffer: torch.Tensor | None = field(default=None, init=False, repr=False)  # see selector_input

    @property
    def embedding_size(self):
        return self.embeddings.shape[1]

    @property
    def selector_input_size(self):
        return self.embedding_size + (ASL_SIZE if self.asl is not None else 0)

    @property
    def normal_row_offset(self):
        return self.num_positive_csv_rows

    def describe_labels(self):
        """One line: positives per condition, and how many of them are uncertain (-1) counted as positive."""
        counts = ", ".join(f"{c} {len(rows)} ({self.uncertain_counts[c]} uncertain)"
                           for c, rows in self.positive_rows.items())
        return f"{self.positive_csv}: positives per condition (uncertain -1 counts as positive): {counts}"

    def to(self, device):
        self._buffer = None
        self.embeddings = self.embeddings.to(device)
        if self.asl is not None:
            self.asl = self.asl.to(device)
        return self

    def selector_input(self, rows, reuse_buffer=False):
        """rows (B, P) -> (B, P, D [+3]): what the selector reads; ASL appended when in use (data.asl.append_asl).

        With ``reuse_buffer`` the result is written into a buffer kept by the table
        and overwritten by the next such call: on a CPU, gathering a training batch
        (64 x 1000 x 512 floats) into fresh memory costs about three times as much
        as into memory already mapped. Use it only when the previous result is no
        longer needed (the next training step, after the backward pass).
        """
        batch, pool = rows.shape
        flat_rows = rows.reshape(-1)
        if reuse_buffer:
            size = batch * pool * self.selector_input_size
            if self._buffer is None or self._buffer.numel() < size or self._buffer.device != self.embeddings.device:
                self._buffer = torch.empty(size, dtype=self.embeddings.dtype, device=self.embeddings.device)
            out = self._buffer[:size].view(batch * pool, self.selector_input_size)
        else:
            out = torch.empty(batch * pool, self.selector_input_size, dtype=self.embeddings.dtype,
                              device=self.embeddings.device)
        if self.asl is None:
            torch.index_select(self.embeddings, 0, flat_rows, out=out)
        else:
            append_asl(self.embeddings.index_select(0, flat_rows), self.asl.index_select(0, flat_rows), out)
        return out.view(batch, pool, self.selector_input_size)

    def classifier_input(self, rows):
        """rows (..., n) -> (..., n, D): the classifier always sees the image embedding only."""
        return self.embeddings.index_select(0, rows.reshape(-1)).view(*rows.shape, self.embedding_size)


def load_xray_table(positive_csv, normal_csv, conditions, use_asl=False, hold_out=constants.HOLD_OUT):
    """Read and validate a split's CSV/HDF5 pairs; every problem is a one-line UserError.

    ``hold_out`` only shapes the settings suggested when a condition column is missing.
    """
    positive_frame = read_csv(positive_csv, required_columns=["Path"])
    require_condition_columns(positive_frame, conditions, positive_csv, hold_out)
    positive_frame = numeric_labels(positive_frame, conditions, positive_csv)
    normal_frame = read_csv(normal_csv)
    num_positive, num_normal = len(positive_frame), len(normal_frame)
    embeddings, origin = read_embeddings_beside([positive_csv, normal_csv], [num_positive, num_normal])

    asl = None
    if use_asl:
        asl = torch.from_numpy(np.concatenate([asl_features(positive_frame, positive_csv),
                                               asl_features(normal_frame, normal_csv)]))

    positive_rows, uncertain_counts = {}, {}
    for condition in conditions:
        values = positive_frame[condition].to_numpy()
        positive_rows[condition] = np.flatnonzero(np.isin(values, POSITIVE_VALUES)).astype(np.int64)
        uncertain_counts[condition] = int((values == UNCERTAIN).sum())
    return XrayTable(embeddings=torch.from_numpy(embeddings), asl=asl, positive_rows=positive_rows,
                     uncertain_counts=uncertain_counts,
                     num_positive_csv_rows=num_positive, num_normal_rows=num_normal,
                     positive_csv=positive_csv, normal_csv=normal_csv, columns=tuple(positive_frame.columns),
                     origin=origin)
