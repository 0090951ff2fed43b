"""Checking, before any work, that an output can be created there: the same one-line messages in every command."""
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
