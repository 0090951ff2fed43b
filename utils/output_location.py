"""Checking, before any work, that an output can be created there: the same one-line messages in every command.

``check_output_location``: the place can be written. ``check_output_file``: a result file (select_xrays.py,
classify_xrays.py, xray_to_hdf5.py) is not a folder, not one of the inputs, and not an existing file unless
--overwrite. ``refuse_replacing``: an output folder (evaluate.py, prepare_data.py) holds none of the files the
command writes unless --overwrite. run_selector.py keeps its own rule for a run folder, which can be resumed.
"""
import os

from utils.errors import UserError


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


def check_output_file(path, flag, inputs=None, overwrite=False, kind="a CSV file name", folder_must_exist=False):
    """Refuse, before any work, a file output that is a folder, cannot be written, is one of the inputs, or
    exists without ``overwrite`` (it may be a to_label.csv a radiologist has started filling in). Reads only.

    inputs: {input flag: (what it is, its path or None)}; overwriting a pool CSV, say, would orphan its HDF5.
    kind: what to give instead of a folder. folder_must_exist: the command does not create the output's folder.
    """
    if os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a folder; give {kind}")
    folder = os.path.dirname(os.path.abspath(path))
    if folder_must_exist and not os.path.isdir(folder):
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    check_output_location(path, flag)
    for input_flag, (what, input_path) in (inputs or {}).items():
        if input_path is not None and _same_file(path, input_path):
            raise UserError(f"{flag} {path}: is the {what} input file (the same file as {input_flag}); choose "
                            "another name")
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{flag} {path}: already exists; pass --overwrite to replace it, or choose another name")


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
