"""A new result is written whole beside the old one, and replaces it only then (--overwrite in every command).

The new files go to a hidden staging folder inside the output folder (same filesystem, covered by the
folder's lock, utils/run_lock.py); ``publish`` moves them into the output folder with one rename each and
removes the earlier files the new result does not replace. A run that fails before that leaves the earlier
result as it was and its staging folder is removed; one killed outright leaves a staging folder that the next
run in that folder removes (``remove_stale_staging``, called under the lock).
"""
import contextlib
import glob
import os
import secrets
import shutil

from utils.atomic import WriteFailed, is_write_error

STAGING_PREFIX = ".staging-"


def new_staging_folder(out):
    """Create and return an empty staging folder inside ``out`` (which must exist)."""
    path = os.path.join(out, f"{STAGING_PREFIX}{secrets.token_hex(4)}")
    try:
        os.mkdir(path)
    except OSError as err:
        if is_write_error(err):
            raise WriteFailed(path, err) from None
        raise
    return path


def publish(staging, out, earlier=()):
    """Move every file of ``staging`` into ``out`` (one rename each, replacing files of the same name), remove the
    files ``earlier`` (names in ``out``) that the new result does not replace, and remove ``staging``."""
    names = sorted(os.listdir(staging))
    for name in names:
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    for name in earlier:
        if name not in names:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out, name))
    os.rmdir(staging)


def discard(staging):
    """Remove an unpublished staging folder and what it holds (nothing if it is gone)."""
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staged_result(out, earlier=()):
    """Yield a staging folder inside ``out``; publish it when the block succeeds, discard it when it fails.
    ``earlier``: names of earlier result files in ``out`` that the new result replaces as a whole."""
    staging = new_staging_folder(out)
    try:
        yield staging
        publish(staging, out, earlier)
    except WriteFailed as err:  # name the file as the user knows it, not its staging copy
        raise WriteFailed(os.path.join(out, os.path.relpath(err.path, staging)), err.cause) from None
    finally:
        discard(staging)


def remove_stale_staging(out):
    """Remove staging folders left in ``out`` by a run killed before it published (call it holding the lock)."""
    for path in glob.glob(os.path.join(glob.escape(out), STAGING_PREFIX + "*")):
        discard(path)
