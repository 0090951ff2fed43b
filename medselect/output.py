"""Writing a result CSV atomically: a failed run leaves no half-written file and keeps any earlier one."""
import os

from utils.atomic import atomic_path
from utils.errors import UserError
from utils.output_location import check_output_location


def check_output_path(out, inputs, overwrite=False):
    """Refuse, before any work, an --out that cannot be written, is a folder or one of the input files
    (overwriting a pool CSV would orphan its HDF5), or exists without ``overwrite`` (it may be a
    to_label.csv a radiologist has started filling in)."""
    if os.path.isdir(out):
        raise UserError(f"--out {out}: is a folder; give a CSV file name")
    check_output_location(out, "--out")
    for name, path in inputs.items():
        if path is not None and os.path.exists(path) and os.path.exists(out) and os.path.samefile(out, path):
            raise UserError(f"--out {out}: is the {name} input file; choose another name")
    if os.path.exists(out) and not overwrite:
        raise UserError(f"--out {out}: already exists; pass --overwrite to replace it, or choose another name")


def write_csv(frame, out):
    """Write ``frame`` to ``out`` (without the index) through a temporary file; creates the folder."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False)
    except OSError as err:
        raise UserError(f"--out {out}: cannot write ({err.strerror or err})") from None
