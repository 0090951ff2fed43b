"""utils/run_lock.py: one run per output; a live holder is named, a killed one's lock is taken over."""
import json
import os
import socket

import pytest

from tests.output_helpers import lock_held_by_other_process, stale_lock
from utils import run_lock
from utils.run_lock import LockHeld, RunLock, check_unlocked


def test_a_live_holder_is_refused_and_named(tmp_path):
    path = tmp_path / "x.lock"
    with lock_held_by_other_process(path) as pid:
        before = path.read_text()
        for attempt in (lambda: RunLock(path, "--out x").acquire(), lambda: check_unlocked(path, "--out x")):
            with pytest.raises(LockHeld) as refusal:
                attempt()
            message = str(refusal.value)
            assert message.startswith("--out x: in use by process ") and f"process {pid} on " in message
            assert str(path) in message and "\n" not in message
        assert path.read_text() == before  # the holder's record is untouched
    assert not path.exists()  # released on exit


def test_lock_is_exclusive_within_one_process_too_and_released(tmp_path):
    path = tmp_path / "x.lock"
    first = RunLock(path, "a")
    assert first.acquire() is None
    assert json.loads(path.read_text())["pid"] == os.getpid()
    with pytest.raises(LockHeld):
        RunLock(path, "b").acquire()
    first.release()
    assert not path.exists()
    with RunLock(path, "c"):  # free again, and no note: nothing stale
        assert path.exists()
    assert not path.exists()


def test_a_killed_holders_lock_is_taken_over_with_a_note(tmp_path):
    path = tmp_path / "x.lock"
    dead = stale_lock(path)
    check_unlocked(path, "x")  # not refused
    lock = RunLock(path, "x")
    note = lock.acquire()
    assert note.startswith(f"note: {path}: took over the lock left by process {dead} ") and "killed" in note
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def test_without_flock_the_recorded_pid_decides(tmp_path, monkeypatch):
    """Filesystems without flock: a dead pid on this host is stale, a live one or another host's is refused."""
    monkeypatch.setattr(run_lock, "_try_flock", lambda fd: None)
    path = tmp_path / "x.lock"
    dead = stale_lock(path)
    note = RunLock(path, "x").acquire()
    assert f"process {dead} " in note
    path.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(LockHeld, match="wait for it to finish"):
        RunLock(path, "x").acquire()
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # an earlier process 1 in a
    lock = RunLock(path, "x")                                                        # container, say
    assert f"process {os.getpid()} " in lock.acquire()
    lock.release()
    path.write_text(json.dumps({"pid": 1, "host": "another-host"}))
    with pytest.raises(LockHeld, match=f"if that run has ended, delete {path}"):
        RunLock(path, "x").acquire()
    with pytest.raises(LockHeld, match="another-host"):
        check_unlocked(path, "x")


def test_a_folder_without_write_permission_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(run_lock.UserError, match="cannot create the lock file"):
        RunLock(folder / "x.lock", "x").acquire()
