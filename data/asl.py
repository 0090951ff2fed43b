"""Age, Sex and Laterality features appended to the selector's input when USE_ASL is on (the paper's Age, Sex and Laterality variant; docs/training.md#settings).

Also the one reading of a CSV's Sex, Age and view columns, which the selection analysis and
prepare_data.py --frontal_only use too.
"""
import numpy as np
import pandas as pd

from utils.errors import UserError

# CheXpert training-set statistics used by the original code to standardise age.
MEAN_AGE = 60.33
STD_AGE = 17.92
ASL_SIZE = 3  # Sex, Age, Frontal/Lateral, in that order
# CheXpert names the column "Frontal/Lateral"; the original README called it "Laterality".
LATERALITY_COLUMNS = ("Frontal/Lateral", "Laterality")
FEMALE, FRONTAL = "Female", "Frontal"  # CheXpert's values of 'Sex' and 'Frontal/Lateral' that the features mark 1


def laterality_column(frame):
    """The frame's view column: 'Frontal/Lateral' if present, else 'Laterality', else None."""
    return next((c for c in LATERALITY_COLUMNS if c in frame.columns), None)


def female(frame):
    """(rows,) float64: 1 where Sex is Female, else 0 (any other value, or blank)."""
    return (frame["Sex"] == FEMALE).to_numpy(dtype=np.float64)


def frontal(frame, column):
    """(rows,) float64: 1 where the view column ``column`` is Frontal, else 0."""
    return (frame[column] == FRONTAL).to_numpy(dtype=np.float64)


def ages(frame):
    """(rows,) float64: Age in years, NaN where it is not a number."""
    return pd.to_numeric(frame["Age"], errors="coerce").to_numpy(dtype=np.float64)


def asl_features(frame, csv_path):
    """(rows, 3) float32: Sex (Female -> 1), standardised Age, Frontal (-> 1), in CSV order.

    Every row must have a numeric Age; a missing column or a non-numeric Age is a one-line UserError.
    """
    laterality = laterality_column(frame)
    missing = [c for c in ("Sex", "Age") if c not in frame.columns]
    if laterality is None:
        missing.append("Frontal/Lateral")
    if missing:
        raise UserError(f"{csv_path}: USE_ASL needs column(s) {', '.join(repr(c) for c in missing)}")
    age = ages(frame)
    bad = ~np.isfinite(age)
    if bad.any():
        row = int(np.argmax(bad))
        raise UserError(f"{csv_path}: column 'Age' must be a number on every row "
                        f"(row {row} is {frame['Age'].iloc[row]!r})")
    features = np.empty((len(frame), ASL_SIZE), dtype=np.float32)
    features[:, 0] = female(frame)
    features[:, 1] = (age - MEAN_AGE) / STD_AGE
    features[:, 2] = frontal(frame, laterality)
    return features


def append_asl(embeddings, asl, out):
    """The selector's input with USE_ASL, written into ``out`` (rows, D + ASL_SIZE) and returned.

    Layout: the image embedding (rows, D), then the ``asl_features`` (rows, ASL_SIZE). Works on numpy arrays
    and on torch tensors alike, so that a caller can gather its rows into memory it already holds.
    """
    dim = embeddings.shape[1]
    out[:, :dim] = embeddings  # (rows, D)
    out[:, dim:] = asl  # (rows, ASL_SIZE)
    return out
