"""A user's own X-rays: the pool CSV, the HDF5 of embeddings beside it, and X-rays named by ``Path``.

Row i of the pool's HDF5 is the embedding of CSV row i (docs/embedding.md#output); X-rays in
other files (already labelled, to exclude, ground truth) are matched to pool
rows by their ``Path`` string, exactly as written.
"""
import os
import shlex
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.csv_hdf5 import hdf5_path_for, read_csv, read_embeddings_beside, require_columns
from data.embedding_origin import EmbeddingOrigin
from utils.errors import UserError

PATH_COLUMN = "Path"
EXAMPLES_SHOWN = 3  # offending Paths named in an error message


@dataclass
class Pool:
    csv_path: str
    frame: pd.DataFrame     # the CSV as read, rows in file order
    embeddings: np.ndarray  # (rows, D) float32; row i is the embedding of CSV row i
    origin: EmbeddingOrigin | None = None  # which encoder made the embeddings; None when not recorded

    def __len__(self):
        return len(self.frame)

    def rows_of(self, paths, source):
        """Pool row of each of ``paths`` (in their order); refuses Paths that are not in the pool."""
        row_of = pd.Series(np.arange(len(self.frame)), index=self.frame[PATH_COLUMN].to_numpy())
        paths = pd.Series(paths, dtype=object)
        missing = paths[~paths.isin(row_of.index)]
        if len(missing):
            raise UserError(f"{source}: {len(missing)} Path(s) are not in the pool {self.csv_path}, e.g. "
                            f"{_examples(missing)}; Paths must match the pool's 'Path' column exactly")
        return row_of.loc[paths.to_numpy()].to_numpy()


def load_pool(csv_path):
    """The pool CSV and its embeddings, validated: a missing HDF5 names the command that makes it."""
    frame = read_csv(csv_path, required_columns=[PATH_COLUMN])
    hdf5_path = hdf5_path_for(csv_path)
    if not os.path.isfile(hdf5_path):
        raise UserError(f"{hdf5_path}: embeddings of {csv_path} not found; make them first with: python3 "
                        f"xray_to_hdf5.py -d {shlex.quote(csv_path)} -o {shlex.quote(hdf5_path)} -c moco.pth.tar")
    if frame.empty:
        raise UserError(f"{csv_path}: the pool holds no X-rays (no rows)")
    frame = check_paths(frame, csv_path)
    embeddings, origin = read_embeddings_beside([csv_path], [len(frame)])
    return Pool(csv_path=csv_path, frame=frame, embeddings=embeddings, origin=origin)


def read_table(source, name, required_columns=(PATH_COLUMN,), unique=True):
    """(frame, name for messages) from a CSV path or a DataFrame, with its Paths checked."""
    if isinstance(source, pd.DataFrame):
        frame = require_columns(source, required_columns, name)
    else:
        frame, name = read_csv(os.fspath(source), required_columns=list(required_columns)), os.fspath(source)
    return check_paths(frame, name, unique), name


def check_paths(frame, source, unique=True):
    """``frame`` with its Paths as strings (a copy if they were not), refusing blank or repeated Paths.

    Every row needs a Path, and (with ``unique``) each Path appears once: Paths are how X-rays are
    matched between files, so a repeated one would be ambiguous.
    """
    paths = frame[PATH_COLUMN]
    blank = paths.isna() | (paths.astype(str).str.strip() == "")
    if blank.any():
        raise UserError(f"{source}: row {int(np.argmax(blank.to_numpy()))} has no Path")
    if paths.map(type).ne(str).any():  # e.g. Paths that pandas read as numbers
        frame = frame.assign(**{PATH_COLUMN: paths.astype(str)})
        paths = frame[PATH_COLUMN]
    repeated = paths[paths.duplicated()]
    if unique and len(repeated):
        raise UserError(f"{source}: {len(repeated)} Path(s) appear more than once, e.g. {_examples(repeated)}; "
                        "each X-ray must be listed once")
    return frame


def _examples(paths):
    shown = ", ".join(repr(p) for p in list(paths.unique())[:EXAMPLES_SHOWN])
    return shown + (", ..." if paths.nunique() > EXAMPLES_SHOWN else "")
