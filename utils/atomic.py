"""Write files so that a crash never leaves a truncated or half-written one.

Everything is written to a temporary file in the destination's folder and
renamed into place only when complete (``os.replace`` is atomic on POSIX), so a
reader sees either the old file or the whole new one.

The finished file has the permissions a plain ``open(path, "w")`` would give
it: those of the file it replaces, or for a new file 0666 minus the user's
umask (0644 under the usual umask 022), so colleagues who can read the run's
log can read its checkpoints and results too. (``tempfile.mkstemp`` would leave
0600.)
"""
import contextlib
import json
import os
import secrets
import shutil
import stat

import torch

NEW_FILE_MODE = 0o666  # what open() asks for; the kernel removes the umask's bits


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = os.fspath(path)
    tmp = _create_temporary(path)
    try:
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
    """``torch.save`` to ``path`` through a temporary file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
