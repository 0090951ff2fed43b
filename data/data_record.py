"""What data a run was trained on, recorded in its checkpoint so that a resume on other data is refused.

For each data argument (--train_pos_csv, ...) the record holds the CSV's path,
its row count and SHA-256 (CSVs are small: 25 MB hash in about 0.1 s), and the
fingerprint of the HDF5 beside it (shape, dtype and a fixed sample of rows; see
``hdf5_fingerprint``), which costs the same whatever the file's size (about 20 ms
for 200,000 x 512 embeddings, where hashing the whole 410 MB file takes 1.6 s).
Files compare by content, not by path, so a data folder that was moved or
copied still resumes.
"""
import os

from data.csv_hdf5 import embedding_shape, hdf5_fingerprint, hdf5_path_for
from utils.errors import UserError
from utils.hashing import file_sha256


def record_inputs(csv_paths):
    """{argument: {'csv', 'csv_rows', 'csv_sha256', 'hdf5', 'hdf5_fingerprint'}} for {argument: CSV path}.

    Call it after the files were validated (the CSV's row count is that of its HDF5).
    """
    record = {}
    for argument, csv_path in csv_paths.items():
        hdf5 = hdf5_path_for(csv_path)
        record[argument] = {"csv": os.path.abspath(csv_path), "csv_rows": embedding_shape(hdf5)[0],
                            "csv_sha256": file_sha256(csv_path), "hdf5": os.path.abspath(hdf5),
                            "hdf5_fingerprint": hdf5_fingerprint(hdf5)}
    return record


def check_same_inputs(recorded, current, checkpoint_path):
    """Refuse, naming the first file that differs, when ``current`` is not the data of ``recorded``.

    Returns notes for the log: a record-less checkpoint cannot be checked, and files found at another
    path with the same content are accepted.
    """
    if not recorded:
        return [f"{checkpoint_path} does not record the data it was trained on; resuming without checking it"]
    notes = []
    for argument, now in current.items():
        then = recorded.get(argument)
        if then is None:
            continue
        flag = f"--{argument}"
        if then["csv_rows"] != now["csv_rows"] or then["csv_sha256"] != now["csv_sha256"]:
            rows = (f"{then['csv_rows']} rows then, {now['csv_rows']} now" if then["csv_rows"] != now["csv_rows"]
                    else f"same {now['csv_rows']} rows, other content")
            raise UserError(f"{flag} {now['csv']}: differs from the CSV this run was trained on ({then['csv']}, "
                            f"{rows}); resume with the run's own data, or start a new run")
        if then["hdf5_fingerprint"] != now["hdf5_fingerprint"]:
            raise UserError(f"{now['hdf5']}: embeddings differ from those this run was trained on ({then['hdf5']}); "
                            "resume with the run's own data, or start a new run")
        if then["csv"] != now["csv"] or then["hdf5"] != now["hdf5"]:
            notes.append(f"{flag}: {now['csv']} has the same content as {then['csv']}, which the run was trained on")
    return notes
