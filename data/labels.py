"""CheXpert's coding of a finding, and MedSelect's reading of it (SPEC §3)."""

POSITIVE = 1.0
NEGATIVE = 0.0
UNCERTAIN = -1.0  # CheXpert's "uncertain"; MedSelect counts it as positive
POSITIVE_VALUES = (POSITIVE, UNCERTAIN)
LABEL_VALUES = (POSITIVE, NEGATIVE, UNCERTAIN)  # blank means "not mentioned", i.e. not positive
