"""A full disk, simulated: files opened for writing accept only ``limit`` bytes in all, then fail as a full
disk does (OSError ENOSPC). Patched into builtins.open (torch.save's file object, text files) and h5py's
dataset writes; no real small filesystem is needed."""
import builtins
import contextlib
import errno
import io
import os

import h5py
import numpy as np

REAL_OPEN = builtins.open
REAL_SETITEM = h5py.Dataset.__setitem__


class DiskBudget:
    """Bytes still free on the simulated disk, shared by every file written while it is in force."""

    def __init__(self, limit):
        self.left = limit
        self.written = []  # (file name, bytes) of every write that fitted, in order

    def take(self, size, name=""):
        if size > self.left:
            self.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= size
        self.written.append((os.path.basename(name), size))


class FullDiskFile(io.FileIO):
    """A binary file whose writes draw on a DiskBudget."""

    def __init__(self, path, mode, budget):
        super().__init__(path, mode)
        self.budget = budget

    def write(self, data):
        self.budget.take(len(memoryview(data).cast("B")), self.name)
        return super().write(data)


H5PY_DISK_FULL = ("Can't write data (file write failed: filename = '{}', errno = 28, error message = 'No space left "
                  "on device')")  # h5py's words for a full disk (an OSError without errno)


@contextlib.contextmanager
def full_disk(monkeypatch, limit, paths_containing="", lost_silently=False):
    """Within the block, writes to files whose path contains ``paths_containing`` fail once ``limit`` bytes
    have been written (to all of them together): open() in any writing mode (which torch.save's file object
    and text files use), and h5py dataset writes. With ``lost_silently``, h5py writes past the limit are
    dropped without an error, as when HDF5's cache cannot be written at close (rows stay zeros)."""
    budget = DiskBudget(limit)

    def limited_open(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and paths_containing in os.fspath(file) and any(c in mode for c in "wax+"):
            raw = FullDiskFile(file, mode.replace("b", "").replace("t", ""), budget)
            buffered = io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
            if "b" in mode:
                return buffered
            return io.TextIOWrapper(buffered, encoding=kwargs.get("encoding"), newline=kwargs.get("newline"))
        return REAL_OPEN(file, mode, *args, **kwargs)

    def limited_setitem(dataset, selection, value):
        if paths_containing in dataset.file.filename:
            try:
                budget.take(np.asarray(value).nbytes, dataset.file.filename)
            except OSError:
                if lost_silently:
                    return
                raise OSError(H5PY_DISK_FULL.format(dataset.file.filename)) from None
        REAL_SETITEM(dataset, selection, value)

    monkeypatch.setattr(builtins, "open", limited_open)
    monkeypatch.setattr(h5py.Dataset, "__setitem__", limited_setitem)
    try:
        yield budget
    finally:
        monkeypatch.setattr(builtins, "open", REAL_OPEN)
        monkeypatch.setattr(h5py.Dataset, "__setitem__", REAL_SETITEM)
