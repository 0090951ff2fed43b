"""CheXpert's train.csv / valid.csv, or any CSV in its column layout (your own dataset).

Needs ``Path``, ``No Finding`` and one column per condition in use. The patient is
CheXpert's ``patientNNNNN`` part of ``Path`` unless a column names it.
"""
import pandas as pd

from data.conditions import NO_FINDING, require_condition_columns
from data.csv_hdf5 import read_csv
from data.datasets.source import Source
from data.labels import numeric_labels


def read_chexpert(csv_paths, conditions, hold_out, patient_column=None):
    """The rows of CheXpert-layout CSVs, in file order (several files are stacked)."""
    frames = []
    for csv_path in csv_paths:
        frame = read_csv(csv_path, required_columns=["Path", NO_FINDING])
        require_condition_columns(frame, conditions, csv_path, hold_out)
        frames.append(numeric_labels(frame, [NO_FINDING, *conditions], csv_path))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return Source(frame=frame, conditions=list(conditions), files=list(csv_paths), patient_column=patient_column)
