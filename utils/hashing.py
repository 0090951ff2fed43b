"""SHA-256 of a whole file: identifies a weights file in the HDF5 attributes and a CSV in a run's data record."""
import hashlib


def file_sha256(path):
    """Hex SHA-256 of the file's bytes (hashlib reads it in chunks, so a large file is not held in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
