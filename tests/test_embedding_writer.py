"""data/embedding_writer.py: resuming an unfinished OUTPUT.partial (hand-written files), and whole files in one go."""
import hashlib
import os

import h5py
import numpy as np
import pytest

from data.embedding_writer import EmbeddingWriter, resume_position, write_embeddings
from utils.errors import UserError

ATTRS = {"csv_rows": 6, "csv_path_sha256": "ab12", "encoder": "moco", "model": "resnet18", "weights": "w.pth.tar",
         "weights_sha256": "cd34", "precision": "fp32", "decoder": "pil", "preprocessing": "resize 320",
         "decoded_on": "cpu", "embedding_dim": 3}


def write_partial(path, attrs, rows_done, shape=(6, 3)):
    with h5py.File(path, "w") as f:
        f.create_dataset("dataset", shape=shape, dtype=np.float32)
        f.attrs.update(attrs)
        f.attrs["rows_done"] = rows_done


def test_a_fresh_run_starts_at_row_0(tmp_path):
    assert resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=False) == 0


def test_a_matching_partial_resumes_where_it_stopped(tmp_path):
    write_partial(tmp_path / "x.hdf5.partial", ATTRS, rows_done=4)
    assert resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=False) == 4
    # A file written before --decoder existed has no 'decoder' attribute: it was made with PIL.
    write_partial(tmp_path / "x.hdf5.partial", {k: v for k, v in ATTRS.items() if k != "decoder"}, rows_done=2)
    assert resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=False) == 2


def test_a_partial_of_other_inputs_is_refused_or_discarded_with_overwrite(tmp_path):
    partial = tmp_path / "x.hdf5.partial"
    write_partial(partial, {**ATTRS, "decoder": "torchvision"}, rows_done=4)
    with pytest.raises(UserError, match=r"x\.hdf5\.partial: unfinished run made with a different decoder; it cannot "
                                        r"be resumed with these inputs: delete it, or pass --overwrite"):
        resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=False)
    assert partial.exists()
    assert resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=True) == 0
    assert not partial.exists()


def test_a_partial_decoded_on_another_device_is_refused(tmp_path):
    """--decoder torchvision decodes with nvjpeg and resizes in float on a GPU: its rows never join CPU-decoded ones."""
    partial = tmp_path / "x.hdf5.partial"
    torchvision = {**ATTRS, "decoder": "torchvision"}
    write_partial(partial, {**torchvision, "decoded_on": "cuda"}, rows_done=4)
    with pytest.raises(UserError, match=r"made with a different decoding device \(cuda there, cpu here; "):
        resume_position(str(tmp_path / "x.hdf5"), torchvision, overwrite=False)
    # Before the device was recorded: a torchvision .partial may be either, a PIL one was decoded on the CPU.
    write_partial(partial, {k: v for k, v in torchvision.items() if k != "decoded_on"}, rows_done=4)
    with pytest.raises(UserError, match=r"decoding device \(not recorded there, cpu here"):
        resume_position(str(tmp_path / "x.hdf5"), torchvision, overwrite=False)
    write_partial(partial, {k: v for k, v in ATTRS.items() if k != "decoded_on"}, rows_done=4)
    assert resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=False) == 4


def test_a_partial_of_another_shape_is_not_resumed(tmp_path):
    write_partial(tmp_path / "x.hdf5.partial", ATTRS, rows_done=4, shape=(6, 5))
    with pytest.raises(UserError, match="made with a different dataset shape"):
        resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=False)


def test_the_writer_stores_rows_in_order_and_renames_when_complete(tmp_path):
    partial, output = str(tmp_path / "x.hdf5.partial"), str(tmp_path / "x.hdf5")
    embeddings = np.arange(18, dtype=np.float32).reshape(6, 3)
    writer = EmbeddingWriter.open(partial, 6, 3, ATTRS, 0)
    writer.write(0, embeddings[:4])
    assert writer.abandon().startswith("the 4 finished rows are kept in")
    with h5py.File(partial, "r") as f:
        assert f.attrs["rows_done"] == 4 and not f.attrs["complete"]
    writer = EmbeddingWriter.open(partial, 6, 3, ATTRS, resume_position(output, ATTRS, overwrite=False))
    writer.write(4, embeddings[4:])
    writer.finish(output)
    assert os.listdir(tmp_path) == ["x.hdf5"]
    with h5py.File(output, "r") as f:
        assert f["dataset"][...].tobytes() == embeddings.tobytes()
        assert f.attrs["complete"] and f.attrs["rows_done"] == 6 and f.attrs["decoder"] == "pil"
        # the completion record covers the rows of the interrupted run too
        assert f.attrs["rows_written"] == 6
        assert f.attrs["rows_sha256"] == hashlib.sha256(embeddings.tobytes()).hexdigest()


def test_a_truncated_partial_is_reported_as_damaged_not_in_use(tmp_path):
    """h5py's message for a truncated file ('... sblock ...') holds the word 'lock'; it is no lock."""
    partial = tmp_path / "x.hdf5.partial"
    write_partial(partial, ATTRS, rows_done=4, shape=(600, 3))
    partial.write_bytes(partial.read_bytes()[:1000])
    with pytest.raises(UserError, match=r"x\.hdf5\.partial: unfinished file is damaged and cannot be resumed .*; "
                                        r"pass --overwrite to start over, or delete it"):
        resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=False)
    assert partial.exists()
    assert resume_position(str(tmp_path / "x.hdf5"), ATTRS, overwrite=True) == 0
    assert not partial.exists()


def test_write_embeddings_gives_exactly_the_array_and_the_attributes(tmp_path):
    embeddings = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    write_embeddings(str(tmp_path / "e.hdf5"), embeddings, {"note": "synthetic"})
    with h5py.File(tmp_path / "e.hdf5", "r") as f:
        assert list(f) == ["dataset"] and f["dataset"].dtype == np.float32
        assert f["dataset"][...].tobytes() == embeddings.tobytes()
        # the completion record: rows and the SHA-256 of their bytes (computed here with hashlib)
        assert dict(f.attrs) == {"note": "synthetic", "rows_written": 5,
                                 "rows_sha256": hashlib.sha256(embeddings.tobytes()).hexdigest()}
    assert os.listdir(tmp_path) == ["e.hdf5"]


def test_a_failed_write_leaves_the_older_file_as_it_was(tmp_path):
    path = str(tmp_path / "e.hdf5")
    write_embeddings(path, np.ones((2, 3), np.float32), {"note": "older"})
    with pytest.raises(TypeError):  # h5py cannot store an arbitrary object as an attribute
        write_embeddings(path, np.zeros((4, 3), np.float32), {"note": object()})
    assert os.listdir(tmp_path) == ["e.hdf5"]
    with h5py.File(path, "r") as f:
        assert f["dataset"][...].tolist() == [[1.0] * 3] * 2 and f.attrs["note"] == "older"
