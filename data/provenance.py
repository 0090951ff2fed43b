"""Which dataset a split CSV belongs to: what evaluate.py reports for the selector's training data and its test data.

A dataset is the folder of its split CSVs; where prepare_data.py made them, its
prepare_data.json beside them names the layout it read (chexpert, nih, mimic) and
the label file, so a selector trained on NIH ChestX-ray14 and tested on MIMIC-CXR-JPG
says so in its results.
"""
import os

from utils.hashing import file_sha256
from utils.json_files import read_json_object

PREPARE_RECORD = "prepare_data.json"  # written by prepare_data.py beside the split CSVs
UNKNOWN_ORIGINAL = "unknown (original checkpoint)"  # the original code's checkpoints record no data
UNKNOWN_NOT_RECORDED = "unknown (not recorded in the checkpoint)"


def dataset_of(csv_path):
    """{'csv', 'folder', 'format', 'source'} of a split CSV; format and source are None without prepare_data.json."""
    folder = os.path.dirname(os.path.abspath(csv_path))
    record = read_json_object(os.path.join(folder, PREPARE_RECORD))
    files = record.get("files") or [None]
    return {"csv": os.path.abspath(csv_path), "folder": folder, "format": record.get("format"), "source": files[0]}


def training_dataset(csv_path, original_checkpoint):
    """dataset_of the CSV a selector was meta-trained on; {'unknown': why} when its checkpoint does not say."""
    if csv_path is None:
        return {"unknown": UNKNOWN_ORIGINAL if original_checkpoint else UNKNOWN_NOT_RECORDED}
    return dataset_of(csv_path)


def found_moved(trained, record, tested):
    """``trained`` (a training_dataset) with 'moved_to' = the test data's folder when the recorded training
    folder is another one but the test folder holds the training CSV itself: a file of the same name and the
    SHA-256 the checkpoint recorded (``record``: its data record of --train_pos_csv). A project that was moved
    or copied is then still the same dataset, decided by content rather than by path."""
    if not trained or "unknown" in trained or not isinstance(record, dict) or not record.get("csv_sha256") \
            or trained["folder"] == tested["folder"]:
        return trained
    candidate = os.path.join(tested["folder"], os.path.basename(record["csv"]))
    if os.path.isfile(candidate) and file_sha256(candidate) == record["csv_sha256"]:
        return {**trained, "moved_to": tested["folder"]}
    return trained


def describe(dataset):
    """One line naming the dataset, e.g. '/data/nih (nih, from /downloads/nih/Data_Entry_2017.csv)'."""
    if "unknown" in dataset:
        return dataset["unknown"]
    if dataset.get("moved_to"):
        return (f"the test data's own dataset, moved or copied (recorded at {dataset['folder']}; its training CSV "
                f"is in {dataset['moved_to']} with the same content)")
    if dataset["format"] is None:
        return dataset["folder"]
    source = f", from {dataset['source']}" if dataset["source"] else ""
    return f"{dataset['folder']} ({dataset['format']}{source})"


def is_transfer(datasets, condition_map):
    """Whether the selector is tested on another dataset than the one it was trained on (another folder of
    split CSVs), or with renamed conditions; unknown training data is not called a transfer.
    datasets: {'trained_on': training_dataset or None, 'tested_on': dataset_of}."""
    trained = datasets["trained_on"]
    return bool(condition_map) or bool(trained and trained.get("folder") and not trained.get("moved_to")
                                       and trained["folder"] != datasets["tested_on"]["folder"])


def provenance_line(checkpoint_path, datasets, condition_map, group_of):
    """One sentence: where the selector was trained and where it is tested, and the conditions renamed
    (``condition_map`` {checkpoint's name: test column}, ``group_of`` {test column: 'seen' / 'unseen'})."""
    tested = f"test data {describe(datasets['tested_on'])}"
    line = (f"Selector {checkpoint_path}, trained on {describe(datasets['trained_on'])}; {tested}."
            if checkpoint_path else f"{tested[0].upper()}{tested[1:]}.")
    if condition_map:
        line += " Conditions renamed for the test data (checkpoint → test column): " + ", ".join(
            f"{old} → {new} ({group_of[new]})" for old, new in condition_map.items()) + "."
    return line
