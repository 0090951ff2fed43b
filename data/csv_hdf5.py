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
# The completion record, written last by xray_to_hdf5.py (data/embedding_writer.py): the rows written and the
# SHA-256 of their float32 bytes in row order. A file without it (the original code's) is read as before.
ROWS_WRITTEN, ROWS_SHA256 = "rows_written", "rows_sha256"
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
    if any(c not in frame.columns for c in required_columns):
        refuse_other_separator(frame, csv_path)
    return require_columns(frame, required_columns, csv_path)


def refuse_other_separator(frame, csv_path):
    """A CSV saved with ';' (a spreadsheet's European default), tabs or '|' reads as one column: say so."""
    if len(frame.columns) != 1:
        return
    header = str(frame.columns[0])
    separator = next((s for s in (";", "\t", "|") if s in header), None)
    if separator is not None:
        columns = ", ".join(repr(c) for c in header.split(separator))
        raise UserError(f"{csv_path}: columns are separated by {separator!r}, not commas (found {columns}); save it "
                        "as a comma-separated CSV")


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
    files can share one table without an extra copy. A file whose completion record does not match its rows,
    or that claims to be complete yet holds a row of zeros (never written), is refused.
    """
    with _open_dataset(hdf5_path) as (file, dataset):
        rows = dataset.shape[0]
        if rows != expected_rows:
            raise UserError(f"{csv_path} has {expected_rows} rows but {hdf5_path} has {rows} embeddings; "
                            "row i of the HDF5 must be the embedding of CSV row i")
        if dataset.shape[1] != out.shape[1]:
            raise UserError(f"{hdf5_path}: embeddings have size {dataset.shape[1]}, expected {out.shape[1]} "
                            "(all files of a run must come from the same encoder)")
        record = CompletionCheck(hdf5_path, file.attrs)
        for start in range(0, rows, FINITE_CHECK_ROWS):
            stop = min(start + FINITE_CHECK_ROWS, rows)
            chunk = out[start:stop]
            dataset.read_direct(chunk, source_sel=np.s_[start:stop])
            finite = np.isfinite(chunk).all(axis=1)
            if not finite.all():
                bad_row = start + int(np.argmin(finite))
                raise UserError(f"{hdf5_path}: embedding of row {bad_row} (CSV {csv_path} row {bad_row}) "
                                "contains NaN or infinity")
            record.add(start, chunk)
        record.check(rows)


def check_completion_record(hdf5_path):
    """Read the whole file back and refuse it if its completion record does not match (see CompletionCheck)."""
    with _open_dataset(hdf5_path) as (file, dataset):
        record = CompletionCheck(hdf5_path, file.attrs)
        for start in range(0, dataset.shape[0], FINITE_CHECK_ROWS):
            record.add(start, dataset[start:start + FINITE_CHECK_ROWS])
        record.check(dataset.shape[0])


class RecordMismatch(UserError):
    """A file whose completion record does not match its rows; ``problem`` says how, without advice."""

    def __init__(self, path, problem):
        self.problem = problem
        super().__init__(f"{path}: {problem}; make the file again with xray_to_hdf5.py")


class CompletionCheck:
    """Checks rows read in order against the file's completion record (ROWS_WRITTEN, ROWS_SHA256), and, in a
    file marked complete, that no row is all zeros (HDF5 leaves rows never written as zeros). A file with
    neither record nor mark (the original code's) passes unchecked."""

    def __init__(self, hdf5_path, attrs):
        self.path = hdf5_path
        self.rows_written = plain_attribute(attrs.get(ROWS_WRITTEN))
        self.sha256 = plain_attribute(attrs.get(ROWS_SHA256))
        self.claims_complete = plain_attribute(attrs.get("complete")) is True
        self.digest = hashlib.sha256() if self.sha256 is not None else None

    def add(self, start, chunk):
        """Rows start .. start + len(chunk), in order."""
        if self.digest is not None:
            self.digest.update(np.ascontiguousarray(chunk, dtype=np.float32).data)  # no copy
        if self.claims_complete:
            zero = ~np.asarray(chunk).any(axis=1)
            if zero.any():
                raise RecordMismatch(self.path, f"row {start + int(np.argmax(zero))} is all zeros in a file marked "
                                                "complete: it was never written (a full disk?)")

    def check(self, rows):
        if self.digest is None:
            return
        if self.rows_written != rows or self.digest.hexdigest() != self.sha256:
            raise RecordMismatch(self.path, f"its completion record ({self.rows_written} rows, checksum) does not "
                                            f"match its {rows} rows: the file is damaged or was cut short (a full "
                                            "disk?)")


def read_embeddings_beside(csv_paths, row_counts):
    """The embeddings of several CSVs stacked in one (sum of rows, D) float32 array, and their EmbeddingOrigin.

    Each CSV's embeddings come from the HDF5 beside it, which must hold one row per CSV row
    (``row_counts``); D is the first file's. Files made by different encoders are refused before any
    embedding is read. Each file is read straight into its slice of the result (no intermediate copy).
    """
    hdf5_paths = [hdf5_path_for(p) for p in csv_paths]
    dims = [embedding_shape(h)[1] for h in hdf5_paths]
    if len(set(dims)) > 1:  # name every file with its size: with two files, neither is 'the' odd one
        raise UserError(f"embeddings of different sizes: {', '.join(f'{h} {d}' for h, d in zip(hdf5_paths, dims))} "
                        "(all files of a run must come from the same encoder)")
    dim = dims[0]
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
