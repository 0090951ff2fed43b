"""CheXpert's coding of a finding, and MedSelect's reading of it (the paper's reading: uncertain counts as positive; docs/embedding.md)."""
import numpy as np
import pandas as pd

from utils.errors import UserError

POSITIVE = 1.0
NEGATIVE = 0.0
UNCERTAIN = -1.0  # CheXpert's "uncertain"; MedSelect counts it as positive
POSITIVE_VALUES = (POSITIVE, UNCERTAIN)
LABEL_VALUES = (POSITIVE, NEGATIVE, UNCERTAIN)  # blank means "not mentioned", i.e. not positive
ALLOWED_TEXT = "1 (positive), 0 (negative), -1 (uncertain, counted as positive) or blank"


def numeric_labels(frame, columns, source):
    """``frame`` with each of ``columns`` as floats, refusing any value other than 1, 0, -1 or blank.

    Anything else (2, 'yes', text) would silently count as "not positive"; the error names the
    column, the first bad row (0-based, as pandas counts data rows) and its value.
    """
    converted = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column].notna() & ~values.isin(LABEL_VALUES)
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            value = frame[column].iloc[row]
            value = value.item() if isinstance(value, np.generic) else value  # 2.0, not np.float64(2.0)
            raise UserError(f"{source}: column {column!r} row {row} is {value!r}; allowed values: "
                            f"{ALLOWED_TEXT}")
        converted[column] = values
    return frame.assign(**converted) if converted else frame
