"""Writing a file of embeddings: the resumable OUTPUT.partial of xray_to_hdf5.py, the attributes it records, and
a whole array in one go (write_embeddings, for synthetic data).

The HDF5 layout (data/csv_hdf5.py): dataset 'dataset', float32 (rows, D), row i the embedding of CSV row i.
xray_to_hdf5.py fills OUTPUT.partial in batches (EmbeddingWriter); ``rows_done`` says how far it got, so an
interrupted run resumes where it stopped (resume_position) when its inputs are the same (RESUME_KEYS), and the
file is renamed to OUTPUT only once complete. OUTPUT.lock keeps a second run from writing the same output.
Before the rename the writer stores the completion record (rows written and their SHA-256, data/csv_hdf5.py)
and reads the whole file back against it, so that rows a full disk swallowed are never published; any write
or flush error stops the run with one line (utils/atomic.WriteFailed), the .partial kept, OUTPUT untouched.
"""
import hashlib
import logging
import os

import h5py
import numpy as np

from data.csv_hdf5 import (HDF5_DATASET, ROWS_SHA256, ROWS_WRITTEN, RecordMismatch, check_completion_record,
                           plain_attribute)
from data.dicom import DESCRIPTION as DICOM_DESCRIPTION, WINDOWING
from utils.atomic import WriteFailed, atomic_path, write_problem
from utils.errors import UserError
from utils.logs import LOGGER_NAME
from utils.run_lock import RunLock

PARTIAL_SUFFIX = ".partial"  # OUTPUT.partial holds an unfinished run until it is renamed to OUTPUT
LOCK_SUFFIX = ".lock"  # OUTPUT.lock: held by the run that writes OUTPUT (rank 0, the only writer under torchrun)
# Attributes that must match for a run to resume an unfinished file: same rows, same encoder, same arithmetic.
# decoded_on: "cpu" or "cuda" (--decoder torchvision on a GPU decodes with nvjpeg and resizes in float: other pixels).
RESUME_KEYS = ("csv_rows", "csv_path_sha256", "encoder", "model", "weights", "weights_sha256", "precision",
               "decoder", "preprocessing", "dicom_windowing", "decoded_on")
# A .partial written before --decoder existed was made with PIL; one written before DICOM input held no DICOM file.
RESUME_DEFAULTS = {"decoder": "pil", "dicom_windowing": "voi_lut"}

log = logging.getLogger(LOGGER_NAME)


def embedding_attributes(frame, csv_path, encoder, precision, decoder, root, weights_sha256):
    """The attributes stored in the HDF5: what was embedded, with which encoder and weights, and how.

    ``encoder`` is models/encoders' Encoder (its name, weights, dim, attrs and preprocessing are read);
    ``weights_sha256`` the SHA-256 of its weights file, or "" where there is none (or on ranks other than 0).
    """
    paths_text = "\n".join(frame["Path"].astype(str).tolist()).encode("utf-8")
    return {
        "csv_rows": len(frame),
        "csv_path_sha256": hashlib.sha256(paths_text).hexdigest(),
        "csv_file": os.path.basename(csv_path),
        "encoder": encoder.name,
        "model": encoder.model_name,
        "weights": encoder.weights,
        **{key: weights_sha256 for key in encoder.hash_attrs},
        **encoder.attrs,
        "embedding_dim": encoder.dim,
        "precision": precision,
        "decoder": decoder,
        "preprocessing": encoder.pipeline.description,
        # How DICOM files among the images were windowed (data/dicom.py): files made by another rule differ.
        "dicom_windowing": encoder.pipeline.dicom_windowing,
        "dicom_preprocessing": DICOM_DESCRIPTION.format(rule=WINDOWING[encoder.pipeline.dicom_windowing]),
        "decoded_on": "cuda" if getattr(encoder.pipeline, "decodes_on_device", False) else "cpu",
        "image_root": os.path.abspath(root) if root else os.getcwd(),
        "created_by": "xray_to_hdf5.py",
    }


def locked_resume_position(output, attrs, overwrite, on_exit):
    """Lock OUTPUT for this run until ``on_exit`` closes, then return ``resume_position``. Runs on rank 0."""
    lock = RunLock(output + LOCK_SUFFIX, f"--output_path {output}")
    note = lock.acquire()
    on_exit.callback(lock.release)
    if note:
        log.info(note)
    return resume_position(output, attrs, overwrite)


def resume_position(output, attrs, overwrite):
    """First row still to embed: 0 for a fresh run, else where OUTPUT.partial stopped. Runs on rank 0."""
    partial = output + PARTIAL_SUFFIX
    if not os.path.exists(partial):
        return 0
    try:
        with h5py.File(partial, "r") as f:
            stored = {key: plain_attribute(f.attrs.get(key, RESUME_DEFAULTS.get(key))) for key in RESUME_KEYS}
            if stored["decoded_on"] is None:  # a .partial from before it was recorded: PIL decodes on the CPU only
                stored["decoded_on"] = "cpu" if stored["decoder"] == "pil" else "not recorded"
            rows_done = int(f.attrs.get("rows_done", 0))
            valid = HDF5_DATASET in f and f[HDF5_DATASET].shape == (attrs["csv_rows"], attrs["embedding_dim"])
    except OSError as err:
        # h5py's own lock; not just "lock", which h5py's "truncated file ... sblock" message also holds
        if "unable to lock file" in str(err).lower():
            raise UserError(f"{partial}: in use by another program (close it, or wait for it to finish)") from None
        if not overwrite:
            raise UserError(f"{partial}: unfinished file is damaged and cannot be resumed (killed while writing, or "
                            "a full disk?); pass --overwrite to start over, or delete it") from None
        log.warning("%s: unfinished file is damaged (unreadable); starting over (--overwrite)", partial)
        os.remove(partial)
        return 0
    different = [key for key in RESUME_KEYS if stored[key] != attrs.get(key, RESUME_DEFAULTS.get(key))]
    if not valid and not different:
        different = ["dataset shape"]
    different = [f"decoding device ({stored[key]} there, {attrs[key]} here; --decoder torchvision decodes on the "
                 "GPU with other pixels)" if key == "decoded_on" else key for key in different]
    if different:
        if not overwrite:
            raise UserError(f"{partial}: unfinished run made with a different {', '.join(different)}; it cannot be "
                            "resumed with these inputs: delete it, or pass --overwrite to start over")
        log.warning("%s: unfinished run made with a different %s; starting over (--overwrite)", partial,
                    ", ".join(different))
        os.remove(partial)
        return 0
    log.info("%s: resuming an unfinished run at row %d of %d", partial, rows_done, attrs["csv_rows"])
    return rows_done


class EmbeddingWriter:
    """OUTPUT.partial: the (rows, D) dataset filled in batches, with the number of finished rows in ``rows_done``.

    Each batch is written and flushed before ``rows_done`` moves past it, so a
    killed run never claims rows it has not stored. ``digest`` hashes the rows in order for the completion record.
    """

    def __init__(self, path, file, rows_done, created):
        self.path, self.file, self.rows_done, self.created = path, file, rows_done, created
        self.digest = hashlib.sha256()
        if rows_done:  # resumed: the record covers the rows of the earlier run too
            for start in range(0, rows_done, 65536):
                self.digest.update(np.ascontiguousarray(file[HDF5_DATASET][start:min(start + 65536, rows_done)],
                                                        dtype=np.float32).data)

    @classmethod
    def open(cls, path, rows, dim, attrs, start_row):
        created = not os.path.exists(path)
        try:
            file = h5py.File(path, "a" if not created else "w")
        except OSError as err:
            raise UserError(f"{path}: cannot open for writing ({write_problem(err)})") from None
        if created:
            with _writing(path, file, remove=True):
                _new_embeddings_file(file, rows, dim, attrs)
                file.attrs["rows_done"] = 0
                file.attrs["complete"] = False
                file.flush()
        return cls(path, file, start_row, created)

    def write(self, lo, embeddings):
        """Store rows lo .. lo + len(embeddings); they must follow the rows already done."""
        assert lo == self.rows_done, (lo, self.rows_done)
        hi = lo + len(embeddings)
        with _writing(self.path, self.file):
            self.file[HDF5_DATASET][lo:hi] = embeddings
            self.file.flush()
            self.file.attrs["rows_done"] = hi
            self.file.flush()
        self.digest.update(np.ascontiguousarray(embeddings, dtype=np.float32).data)
        self.rows_done = hi

    def finish(self, output):
        """Write the completion record, read the file back against it, and rename it to ``output``
        (atomically replacing an older one). A failure leaves the .partial unrenamed and ``output`` as it was."""
        with _writing(self.path, self.file):
            self.file.attrs[ROWS_WRITTEN] = self.rows_done
            self.file.attrs[ROWS_SHA256] = self.digest.hexdigest()
            self.file.attrs["complete"] = True
            self.file.flush()
            self.file.close()
        try:
            check_completion_record(self.path)
        except RecordMismatch as err:  # what was written is not what is stored: nothing in it can be trusted
            os.remove(self.path)
            raise UserError(f"{self.path}: does not read back as written ({err.problem}); it was removed and "
                            f"{output} left as it was") from None
        os.replace(self.path, output)

    def abandon(self):
        """Close after a failure; keep the file when it holds finished rows. Returns what happened, for the user."""
        _close_quietly(self.file)
        if not os.path.exists(self.path):
            return "free space and rerun the same command to start over"
        if self.rows_done == 0 and self.created:
            os.remove(self.path)
            return "nothing was written"
        return (f"the {self.rows_done} finished rows are kept in {self.path}: rerun the same command to resume "
                "from there")


class _writing:
    """Context manager: an error of h5py writing or flushing ``file`` becomes one line (WriteFailed) naming the
    disk problem and ``path``; the file is closed (and with ``remove`` deleted)."""

    def __init__(self, path, file, remove=False):
        self.path, self.file, self.remove = path, file, remove

    def __enter__(self):
        return self

    def __exit__(self, kind, err, traceback):
        if err is None or not isinstance(err, (OSError, RuntimeError)):
            return False
        _close_quietly(self.file)
        if self.remove and os.path.exists(self.path):
            os.remove(self.path)
        raise WriteFailed(self.path, err) from None


def _close_quietly(file):
    try:
        file.close()
    except (OSError, RuntimeError, AttributeError):  # closing flushes again, which fails the same way
        pass


def write_embeddings(hdf5_path, embeddings, attrs):
    """A whole (rows, D) array as a file of embeddings with ``attrs`` and its completion record, written through
    a temporary file (utils/atomic.py), so that a failure leaves no file and an older one as it was."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    record = {ROWS_WRITTEN: len(embeddings), ROWS_SHA256: hashlib.sha256(embeddings.data).hexdigest()}
    with atomic_path(hdf5_path) as tmp, h5py.File(tmp, "w") as file:
        _new_embeddings_file(file, *embeddings.shape, {**attrs, **record})
        file[HDF5_DATASET][...] = embeddings


def _new_embeddings_file(file, rows, dim, attrs):
    """The (rows, D) float32 dataset of an open, new HDF5 file, and the file's attributes."""
    file.create_dataset(HDF5_DATASET, shape=(rows, dim), dtype=np.float32)
    file.attrs.update(attrs)
