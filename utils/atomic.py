"""Write files so that a crash never leaves a truncated or half-written one.

Everything is written to a temporary file in the destination's folder and
renamed into place only when complete (``os.replace`` is atomic on POSIX), so a
reader sees either the old file or the whole new one.

A write that fails for want of room or for a device error (a full disk, a quota, an I/O error) stops the
command with one line naming the file and the problem (``WriteFailed``), the earlier file left as it was.

The finished file has the permissions a plain ``open(path, "w")`` would give
it: those of the file it replaces, or for a new file 0666 minus the user's
umask (0644 under the usual umask 022), so colleagues who can read the run's
log can read its checkpoints and results too. (``tempfile.mkstemp`` would leave
0600.)
"""
import contextlib
import errno
import json
import os
import secrets
import shutil
import stat

import torch

from utils.errors import UserError

NEW_FILE_MODE = 0o666  # what open() asks for; the kernel removes the umask's bits
# errno values of a write that cannot complete on this device: the user frees space or fixes the disk
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)


class WriteFailed(UserError):
    """A file could not be written (full disk, quota, I/O error); ``path`` names it. Any earlier file is unchanged."""

    def __init__(self, path, err, outcome="nothing was replaced"):
        self.path, self.cause = os.fspath(path), err
        super().__init__(f"{self.path}: {write_problem(err)} (while writing it; {outcome})")


def write_problem(err):
    """The problem of a failed write in a few words: 'No space left on device' for ENOSPC (also where h5py
    or torch only quote it in their message)."""
    if getattr(err, "errno", None):
        return os.strerror(err.errno)
    text = str(err)
    known = next((os.strerror(n) for n in WRITE_ERRNOS if os.strerror(n) in text or f"errno = {n}," in text), None)
    return known or text.strip().splitlines()[0]


def is_write_error(err):
    return isinstance(err, OSError) and err.errno in WRITE_ERRNOS


@contextlib.contextmanager
def reporting_write_errors(path):
    """Turn a full disk, a quota or an I/O error inside the block into ``WriteFailed`` naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        # torch.save reports the file object's OSError as the context of its own RuntimeError ('unexpected pos')
        cause = next((e for e in (err, err.__context__, err.__cause__) if is_write_error(e)), None)
        if cause is None:
            raise
        raise WriteFailed(path, cause) from None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = os.fspath(path)
    tmp = _create_temporary(path)
    try:
        with reporting_write_errors(path):
            yield tmp
        _keep_mode_of_replaced_file(tmp, path)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def _create_temporary(path):
    """Create an empty, new temporary file beside ``path`` the way open() creates files (umask applies)."""
    folder, name = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE))
            return tmp
        except FileExistsError:
            continue


def _keep_mode_of_replaced_file(tmp, path):
    """Writing over an existing file with open() keeps its permissions; do the same."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    os.chmod(tmp, mode)


def atomic_torch_save(obj, path):
    """``torch.save`` to ``path`` through a temporary file. Through a Python file object, so that a full disk
    raises OSError with its errno (torch's own writer reports only 'unexpected pos ...')."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)


def atomic_write_text(text, path):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def atomic_write_json(obj, path):
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def atomic_link_or_copy(source, path):
    """Make ``path`` the same file as ``source``: a hard link (no extra space), or a copy where the
    filesystem has no hard links. Replaces ``path`` atomically."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            os.link(source, tmp)
        except OSError:  # e.g. FAT, some network or FUSE filesystems
            with atomic_path(path) as copy:
                shutil.copyfile(source, copy)
            return
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
