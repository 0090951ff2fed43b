"""Writing a result CSV atomically: a failed run leaves no half-written file and keeps any earlier one."""
import os

from utils.atomic import atomic_path, atomic_write_json
from utils.errors import UserError


def write_csv(frame, out):
    """Write ``frame`` to ``out`` (without the index) through a temporary file; creates the folder."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False)
    except OSError as err:
        raise UserError(f"--out {out}: cannot write ({err.strerror or err})") from None


def sidecar_path(out):
    """The JSON record written beside a result CSV: predictions.csv -> predictions.csv.json."""
    return os.fspath(out) + ".json"


def write_sidecar(record, out):
    """Write ``record`` (what produced the CSV ``out``: the classifier, the inputs) to sidecar_path(out)."""
    try:
        atomic_write_json(record, sidecar_path(out))
    except OSError as err:
        raise UserError(f"--out {out}: cannot write {sidecar_path(out)} ({err.strerror or err})") from None
