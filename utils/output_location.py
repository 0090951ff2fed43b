"""Checking, before any work, that an output can be created there: the same one-line messages in every command.

``check_output_location``: the place can be written. ``check_output_file``: a result file (select_xrays.py,
classify_xrays.py, xray_to_hdf5.py, utils/plots.py) is not a folder, not one of the inputs nor a file an input
implies (``implied_files``: the HDF5 beside a CSV, a run folder's own files), and not an existing file unless
--overwrite. ``refuse_replacing``: an output folder (evaluate.py, prepare_data.py) holds none of the files the
command writes unless --overwrite. run_selector.py keeps its own rule for a run folder, which can be resumed.
"""
import fnmatch
import os

from utils.errors import UserError

# The files of a run folder of run_selector.py (models/checkpoint.py names them; utils may not import models):
# an output never replaces one of them.
RUN_FOLDER_FILES = ("config.json", "metrics.csv", "train.log", "last.pt", "best.pt", "best_*.pt", "model_epoch*_iter*",
                    ".lock")
RUN_FOLDER_MARKS = ("config.json", "metrics.csv")  # a folder holding one of these is a run folder


def check_output_location(path, flag, folder=False):
    """Refuse an output ``path`` (a file, or with ``folder`` a folder) that cannot be created or written:
    a regular file standing where a folder must be, or no permission in the nearest existing folder.
    Reads only; creates nothing."""
    target = os.path.abspath(path)
    existing = target if folder else os.path.dirname(target)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        if existing == target:
            raise UserError(f"{flag} {path}: exists and is not a folder")
        raise UserError(f"{flag} {path}: cannot write there ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write there (no permission to write in {existing})")


def check_output_file(path, flag, inputs=None, overwrite=False, kind="a CSV file name", folder_must_exist=False,
                      embeddings_of_inputs=True):
    """Refuse, before any work, a file output that is a folder, cannot be written, is one of the inputs or a
    file an input implies, or exists without ``overwrite`` (it may be a to_label.csv a radiologist has started
    filling in). Reads only.

    inputs: {input flag: (what it is, its path or None)}; overwriting a pool CSV, say, would orphan its HDF5.
    kind: what to give instead of a folder. folder_must_exist: the command does not create the output's folder.
    embeddings_of_inputs: an input CSV's embeddings (the HDF5 beside it) are read too; xray_to_hdf5.py, which
    writes them, passes False.
    """
    if os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a folder; give {kind}")
    folder = os.path.dirname(os.path.abspath(path))
    if folder_must_exist and not os.path.isdir(folder):
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    check_output_location(path, flag)
    for input_flag, (what, input_path) in (inputs or {}).items():
        if input_path is None:
            continue
        if _same_file(path, input_path):
            raise UserError(f"{flag} {path}: is the {what} input file (the same file as {input_flag}); choose "
                            "another name")
        for implied, how in implied_files(input_path, embeddings_of_inputs):
            if _same_file(path, implied):
                raise UserError(f"{flag} {path}: is {how} the {what} input ({input_flag} {input_path}); choose "
                                "another name")
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{flag} {path}: already exists; pass --overwrite to replace it, or choose another name")


def implied_files(input_path, embeddings=True):
    """[(path, how it belongs to the input, for 'is ... the input')]: the files an input brings along, which no
    output may replace: the HDF5 of embeddings beside a CSV (with ``embeddings``), and the files of the run
    folder an input is or lies in."""
    input_path = os.fspath(input_path)
    implied = []
    if embeddings and input_path.lower().endswith(".csv"):
        implied.append((os.path.splitext(input_path)[0] + ".hdf5", "the embeddings file beside"))
    is_folder = os.path.isdir(input_path)
    run_folder = input_path if is_folder else os.path.dirname(os.path.abspath(input_path))
    if any(os.path.isfile(os.path.join(run_folder, mark)) for mark in RUN_FOLDER_MARKS):
        how = "a file of" if is_folder else "a file of the run folder of"
        implied += [(os.path.join(run_folder, name), how)
                    for name in sorted(os.listdir(run_folder))
                    if any(fnmatch.fnmatch(name, pattern) for pattern in RUN_FOLDER_FILES)]
    return implied


def refuse_replacing(folder, flag, names, overwrite, what):
    """Refuse, without ``overwrite``, an output folder that already holds one of the files ``names``
    (``what`` they are, for the message)."""
    existing = [name for name in names if os.path.exists(os.path.join(folder, name))]
    if existing and not overwrite:
        raise UserError(f"{flag} {folder}: already holds {what} ({', '.join(existing)}); pass --overwrite to "
                        "replace them, or choose another folder")


def _same_file(path, other):
    """The same path, or (both existing) the same file by another name (a link)."""
    other = os.fspath(other)
    if os.path.abspath(path) == os.path.abspath(other):
        return True
    return os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other)
