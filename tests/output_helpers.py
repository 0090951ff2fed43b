"""For the tests of outputs: another process that holds a RunLock (as a second run would), and file modes."""
import contextlib
import os
import signal
import stat
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HOLD = ("import sys; from utils.run_lock import RunLock\n"
         "with RunLock(sys.argv[1], 'test'):\n    print('locked', flush=True); sys.stdin.read()")


@contextlib.contextmanager
def lock_held_by_other_process(path):
    """Yield the pid of a live process that holds the lock at ``path``; it ends (releasing it) afterwards."""
    holder = start_holder(path)
    try:
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


def start_holder(path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def stale_lock(path):
    """Leave a lock file at ``path`` as a killed run leaves it: its process took it and died by SIGKILL.

    Returns the dead process's pid."""
    holder = start_holder(path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    holder.stdin.close()
    holder.stdout.close()
    assert os.path.exists(path)
    return holder.pid


@contextlib.contextmanager
def umask(mask):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def plain_open_mode(folder, mask):
    """The mode open(path, 'w') gives a new file under ``mask``: the reference, made without our code."""
    probe = os.path.join(folder, f"plain{mask:o}")
    with umask(mask):
        with open(probe, "w"):
            pass
    return mode(probe)
