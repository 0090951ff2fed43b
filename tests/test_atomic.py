"""utils/atomic.py: complete files only, with the permissions a plain open() would give them."""
import os

import pytest
import torch

from tests.output_helpers import mode, plain_open_mode, umask
from utils import atomic
from utils.atomic import atomic_link_or_copy, atomic_path, atomic_torch_save, atomic_write_text


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_get_the_mode_of_a_plain_open(tmp_path, mask):
    expected = plain_open_mode(tmp_path, mask)
    assert expected == 0o666 & ~mask
    with umask(mask):
        atomic_write_text("x", tmp_path / "a.txt")
        atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "a.pt")
    assert mode(tmp_path / "a.txt") == expected and mode(tmp_path / "a.pt") == expected
    assert sorted(os.listdir(tmp_path)) == sorted(["a.txt", "a.pt", f"plain{mask:o}"])  # no temporary left


def test_replacing_a_file_keeps_its_mode_as_open_does(tmp_path):
    path = tmp_path / "shared.csv"
    path.write_text("old")
    os.chmod(path, 0o640)
    with umask(0o022):
        atomic_write_text("new", path)
    assert path.read_text() == "new" and mode(path) == 0o640


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.csv"]


def test_link_or_copy_makes_the_same_file(tmp_path, monkeypatch):
    source = tmp_path / "model_epoch1_iter30"
    source.write_bytes(b"weights")
    (tmp_path / "best.pt").write_bytes(b"older best")
    atomic_link_or_copy(source, tmp_path / "best.pt")
    assert os.path.samefile(source, tmp_path / "best.pt")

    def no_links(*args):
        raise OSError("hard links not supported")

    monkeypatch.setattr(atomic.os, "link", no_links)
    with umask(0o022):
        atomic_link_or_copy(source, tmp_path / "copy.pt")
    assert (tmp_path / "copy.pt").read_bytes() == b"weights" and mode(tmp_path / "copy.pt") == 0o644
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "copy.pt", "model_epoch1_iter30"]
