"""Reading a CSV of X-rays and the HDF5 of embeddings beside it (docs/embedding.md#output: row i of the HDF5 is CSV row i), with clear errors.

Row i of the HDF5 dataset ``dataset`` is the embedding of CSV row i; nothing here
reorders, skips or drops a row.
"""
import hashlib
import os

import h5py
import numpy as np
import pandas as pd

from data.embedding_origin import check_same_encoder, known_origin, origin_from_attributes
from utils.errors import UserError

HDF5_DATASET = "dataset"
FINITE_CHECK_ROWS = 65536  # rows checked for NaN/inf at a time, to keep the check's memory small
FINGERPRINT_ROWS = 256  # rows of an HDF5 that its fingerprint hashes


def hdf5_path_for(csv_path):
    """``folder/train_pos.csv`` -> ``folder/train_pos.hdf5`` (same folder, same stem)."""
    return os.path.splitext(csv_path)[0] + ".hdf5"


def read_csv(csv_path, required_columns=("Path",), header_only=False):
    """Read a CSV (only its header with ``header_only``), refusing a missing file or missing columns in one line."""
    if not os.path.isfile(csv_path):
        raise UserError(f"{csv_path}: CSV file not found")
    try:
        frame = pd.read_csv(csv_path, low_memory=False, nrows=0 if header_only else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as err:
        raise UserError(f"{csv_path}: cannot read CSV ({str(err).strip().splitlines()[0]})") from None
    return require_columns(frame, required_columns, csv_path)


def require_columns(frame, columns, source):
    """``frame``, refusing in one line (naming ``source``) one that lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}; "
                        f"found {', '.join(repr(c) for c in frame.columns)}")
    return frame


def embedding_shape(hdf5_path):
    """(rows, D) of the dataset in ``hdf5_path``, validating that it is there and two-dimensional."""
    with _open_dataset(hdf5_path) as (_, dataset):
        return tuple(dataset.shape)


def read_attributes(hdf5_path):
    """The HDF5 file's attributes as plain Python values (what xray_to_hdf5.py recorded; {} for none)."""
    with _open_dataset(hdf5_path) as (file, _):
        return {key: plain_attribute(value) for key, value in file.attrs.items()}


def plain_attribute(value):
    """An HDF5 attribute as a plain Python value (str, int, float, bool), for comparisons and messages."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_embeddings_into(hdf5_path, out, expected_rows, csv_path):
    """Copy the HDF5 dataset into ``out`` (a float32 array view of shape (rows, D)) and validate it.

    Reads straight into the caller's array so that the embeddings of several
    files can share one table without an extra copy.
    """
    with _open_dataset(hdf5_path) as (_, dataset):
        rows = dataset.shape[0]
        if rows != expected_rows:
            raise UserError(f"{csv_path} has {expected_rows} rows but {hdf5_path} has {rows} embeddings; "
                            "row i of the HDF5 must be the embedding of CSV row i")
        if dataset.shape[1] != out.shape[1]:
            raise UserError(f"{hdf5_path}: embeddings have size {dataset.shape[1]}, expected {out.shape[1]} "
                            "(all files of a run must come from the same encoder)")
        for start in range(0, rows, FINITE_CHECK_ROWS):
            stop = min(start + FINITE_CHECK_ROWS, rows)
            chunk = out[start:stop]
            dataset.read_direct(chunk, source_sel=np.s_[start:stop])
            finite = np.isfinite(chunk).all(axis=1)
            if not finite.all():
                bad_row = start + int(np.argmin(finite))
                raise UserError(f"{hdf5_path}: embedding of row {bad_row} (CSV {csv_path} row {bad_row}) "
                                "contains NaN or infinity")


def read_embeddings_beside(csv_paths, row_counts):
    """The embeddings of several CSVs stacked in one (sum of rows, D) float32 array, and their EmbeddingOrigin.

    Each CSV's embeddings come from the HDF5 beside it, which must hold one row per CSV row
    (``row_counts``); D is the first file's. Files made by different encoders are refused before any
    embedding is read. Each file is read straight into its slice of the result (no intermediate copy).
    """
    hdf5_paths = [hdf5_path_for(p) for p in csv_paths]
    _, dim = embedding_shape(hdf5_paths[0])
    origins = [origin_from_attributes(read_attributes(h), h) for h in hdf5_paths]
    first = known_origin(*origins)
    for origin in origins:
        check_same_encoder(first, origin)
    embeddings = np.empty((sum(row_counts), dim), dtype=np.float32)  # (sum of rows, D)
    start = 0
    for csv_path, hdf5_path, rows in zip(csv_paths, hdf5_paths, row_counts):
        read_embeddings_into(hdf5_path, embeddings[start:start + rows], rows, csv_path)
        start += rows
    return embeddings, first


def _not_embeddings(node):
    """What is wrong with ``node`` as a (rows, D) float array of embeddings, or None."""
    if not isinstance(node, h5py.Dataset):
        return f"is a {type(node).__name__.lower()}, not a dataset"
    if node.ndim != 2 or node.dtype.kind != "f" or node.shape[1] < 1:
        text = " (text)" if node.dtype.kind in "SUO" else ""
        return f"has shape {node.shape} and dtype {node.dtype}{text}"
    return None


def hdf5_fingerprint(hdf5_path):
    """A short hash of the embeddings' shape, dtype and FINGERPRINT_ROWS evenly spaced rows (first and last too).

    Cheap whatever the file's size: it reads at most FINGERPRINT_ROWS rows (0.5 MB at D = 512), not the
    whole file, yet tells apart files of other X-rays, other row counts or order, and embeddings
    recomputed with another encoder or preprocessing (which change every row). A change confined to
    rows between the sampled ones goes unnoticed.
    """
    with _open_dataset(hdf5_path) as (_, dataset):
        rows = dataset.shape[0]
        sampled = np.unique(np.linspace(0, rows - 1, num=min(rows, FINGERPRINT_ROWS)).round().astype(np.int64))
        values = dataset[sampled] if rows else np.empty((0, dataset.shape[1]), dataset.dtype)
        digest = hashlib.sha256(f"{dataset.shape} {dataset.dtype.str}".encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()[:16]


class _open_dataset:
    """Context manager: (file, dataset) for ``hdf5_path`` with one-line errors."""

    def __init__(self, hdf5_path):
        self.path = hdf5_path
        self.file = None

    def __enter__(self):
        if not os.path.isfile(self.path):
            raise UserError(f"{self.path}: HDF5 file of embeddings not found (it must sit beside the CSV "
                            "with the same name; make it with xray_to_hdf5.py)")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as err:
            raise UserError(f"{self.path}: not a readable HDF5 file ({err})") from None
        if HDF5_DATASET not in self.file:
            names = ", ".join(self.file.keys()) or "none"
            self.file.close()
            raise UserError(f"{self.path}: no dataset named '{HDF5_DATASET}' (found: {names})")
        dataset = self.file[HDF5_DATASET]
        problem = _not_embeddings(dataset)
        if problem:
            self.file.close()
            raise UserError(f"{self.path}: '{HDF5_DATASET}' {problem}; expected a 2-D float array (rows, D), one "
                            "embedding per CSV row, as xray_to_hdf5.py writes")
        return self.file, dataset

    def __exit__(self, *exc):
        self.file.close()
        return False
