"""Age, Sex and Laterality features appended to the selector's input when USE_ASL is on (the paper's Age, Sex and Laterality variant; docs/training.md#settings)."""
import numpy as np
import pandas as pd

from utils.errors import UserError

# CheXpert training-set statistics used by the original code to standardise age.
MEAN_AGE = 60.33
STD_AGE = 17.92
ASL_SIZE = 3  # Sex, Age, Frontal/Lateral, in that order
# CheXpert names the column "Frontal/Lateral"; the original README called it "Laterality".
LATERALITY_COLUMNS = ("Frontal/Lateral", "Laterality")


def asl_features(frame, csv_path):
    """(rows, 3) float32: Sex (Female -> 1), standardised Age, Frontal (-> 1), in CSV order."""
    laterality = next((c for c in LATERALITY_COLUMNS if c in frame.columns), None)
    missing = [c for c in ("Sex", "Age") if c not in frame.columns]
    if laterality is None:
        missing.append("Frontal/Lateral")
    if missing:
        raise UserError(f"{csv_path}: USE_ASL needs column(s) {', '.join(repr(c) for c in missing)}")
    age = pd.to_numeric(frame["Age"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(age)
    if bad.any():
        row = int(np.argmax(bad))
        raise UserError(f"{csv_path}: column 'Age' must be a number on every row "
                        f"(row {row} is {frame['Age'].iloc[row]!r})")
    features = np.empty((len(frame), ASL_SIZE), dtype=np.float32)
    features[:, 0] = (frame["Sex"] == "Female").to_numpy(dtype=np.float32)
    features[:, 1] = (age - MEAN_AGE) / STD_AGE
    features[:, 2] = (frame[laterality] == "Frontal").to_numpy(dtype=np.float32)
    return features
