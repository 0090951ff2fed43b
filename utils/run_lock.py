"""One run at a time per output: a lock file that holds the owner's process id.

Two runs writing into the same run folder (or the same output file) at once
would mix their checkpoints and results. A command takes the lock for its whole
run and refuses to start when another live process holds it.

How it works: the lock file is locked with ``flock``, which the kernel releases
when the process ends in any way (exit, Ctrl-C, SIGTERM, SIGKILL, a crash), so
a lock is never held by a dead process. The file also records who holds it (pid,
host, start time, command) so that a refused run can name the other one. A lock
file left behind by a process that was killed before it could remove the file
is therefore *stale*, and it is recognised as such by the lock being free: the
new run takes it over and says so once. Taking over is safe because every file
the commands write is replaced atomically, so a killed run leaves complete
files only (and run_selector.py's last.pt to --resume from).

On a filesystem without ``flock`` (some network and FUSE mounts) the recorded
pid decides instead: a lock of a process on this host that no longer exists is
stale; one of another host cannot be checked and is refused with the file to
delete once the user knows that run has ended. (Without flock, two runs started
in the same instant could both pass; with it, exactly one does.)
"""
import errno
import json
import os
import socket
import sys
import time

from utils.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: fall back to the recorded pid
    fcntl = None

FOLDER_LOCK = ".lock"  # the lock file inside a locked output folder
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class LockHeld(UserError):
    """Another live run holds the lock."""


class RunLock:
    """The lock at ``path`` for ``what`` (e.g. "--out runs/a"), taken with :meth:`acquire`.

    Use as a context manager, or call :meth:`acquire` and :meth:`release`.
    ``acquire`` returns a note for the log when it took over a stale lock.
    """

    def __init__(self, path, what):
        self.path, self.what = os.fspath(path), what
        self._fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def acquire(self):
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                raise UserError(f"{self.what}: cannot create the lock file {self.path} ({err.strerror})") from None
            try:
                kernel_lock = _try_flock(fd)
                previous = _read_owner(fd)
                _refuse_if_held(kernel_lock, previous, self.path, self.what)
                if not _is_same_file(fd, self.path):
                    os.close(fd)  # the holder removed the file just before releasing it: try the new one
                    continue
                _write_owner(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            if previous:  # a released lock's file is removed: one still holding a record was left by a dead run
                return (f"note: {self.path}: took over the lock left by process {_describe(previous)}, which "
                        "ended without releasing it (killed?)")
            return None

    def release(self):
        """Remove the lock file (while still holding it, so no other run can slip in between)."""
        if self._fd is None:
            return
        try:
            if _is_same_file(self._fd, self.path):
                os.remove(self.path)
        except OSError:
            pass
        os.close(self._fd)  # releases the flock
        self._fd = None


def lock_folder(folder, what, on_exit):
    """Create ``folder`` if needed and lock it (FOLDER_LOCK inside) until the ExitStack ``on_exit`` closes.

    Returns the note of :meth:`RunLock.acquire` (a stale lock taken over), or None.
    """
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UserError(f"{what}: cannot create the folder ({err.strerror})") from None
    lock = RunLock(os.path.join(folder, FOLDER_LOCK), what)
    note = lock.acquire()
    on_exit.callback(lock.release)
    return note


def check_unlocked(path, what):
    """Refuse early, before any long work, when a live run holds the lock at ``path``; writes nothing."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:  # no lock file (or none we could take anyway: acquire() says why)
        return
    try:
        _refuse_if_held(_try_flock(fd), _read_owner(fd), path, what)
    finally:
        os.close(fd)  # also drops the probe's flock, if it got one


def _refuse_if_held(kernel_lock, owner, path, what):
    """Raise LockHeld when a live process holds the lock: by flock, or by the recorded pid without flock."""
    if kernel_lock is True:
        return
    this_host = owner.get("host") == socket.gethostname()
    if kernel_lock is None and (not owner or _owner_is_dead(owner)):
        return
    who = f"process {_describe(owner)}" if owner else "another process"
    advice = ("wait for it to finish or stop it" if kernel_lock is False or this_host else
              f"if that run has ended, delete {path}")
    raise LockHeld(f"{what}: in use by {who} (lock {path}); {advice}")


def _try_flock(fd):
    """True: locked now; False: another process holds it; None: this filesystem has no flock."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in _NO_FLOCK:
            return None
        raise


def _is_same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read_owner(fd):
    """The owner recorded in the lock file ({} when empty or unreadable)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode("utf-8", "replace")
        owner = json.loads(text)
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_owner(fd):
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
             "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])}
    data = (json.dumps(owner) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def _owner_is_dead(owner):
    """Only for filesystems without flock: is the recorded process known to be gone?

    A record with this very process's id comes from an earlier process that had the same id (in a
    container every run may be process 1): a process never takes the same lock twice.
    """
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    if owner["pid"] == os.getpid():
        return True
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def _describe(owner):
    """'4242 on gpu-3 (run_selector.py, started 2025-03-01 10:02:11)': enough to find the process; the lock
    file holds its whole command line."""
    program = (owner.get("command") or "?").split()[0]
    return f"{owner.get('pid', '?')} on {owner.get('host', '?')} ({program}, started {owner.get('started', '?')})"
