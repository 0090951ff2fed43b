"""Write files so that a crash never leaves a truncated or half-written one.

Everything is written to a temporary file in the destination's folder and
renamed into place only when complete (``os.replace`` is atomic on POSIX), so a
reader sees either the old file or the whole new one.
"""
import contextlib
import json
import os
import tempfile

import torch


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
