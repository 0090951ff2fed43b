"""Which condition columns a CSV has, and the ``--set`` line that names them.

The conditions a run uses are two settings, ``NON_HOLD_OUT`` (meta-training) and
``HOLD_OUT`` (never seen in meta-training; may be empty). A dataset other than
CheXpert has other columns, so every error about a missing condition column
says which ``--set NON_HOLD_OUT=... --set HOLD_OUT=...`` fits the CSV at hand.
"""
import shlex

import pandas as pd

from data.labels import LABEL_VALUES, POSITIVE_VALUES
from utils.config import with_all_conditions
from utils.errors import UserError

NO_FINDING = "No Finding"
# CheXpert-layout columns that hold 1/0/-1 labels but are not findings a task can be about.
NOT_CONDITIONS = ("Path", "Sex", "Age", "Frontal/Lateral", "Laterality", "AP/PA", NO_FINDING, "Support Devices")


def label_columns(frame):
    """The columns of ``frame`` that look like condition labels: only 1, 0, -1 or blank, at least one positive.

    Used to suggest settings, never to choose them silently.
    """
    found = []
    for column in frame.columns:
        if column in NOT_CONDITIONS or str(column).startswith("Unnamed:"):
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        if (values.notna() | frame[column].isna()).all() and values.dropna().isin(LABEL_VALUES).all() \
                and values.isin(POSITIVE_VALUES).any():
            found.append(column)
    return found


def split_conditions(conditions, hold_out_preference):
    """(NON_HOLD_OUT, HOLD_OUT) for ``conditions``: the preferred held-out ones among them are held out,
    unless that would leave nothing to meta-train on."""
    hold_out = [c for c in conditions if c in hold_out_preference]
    non_hold_out = [c for c in conditions if c not in hold_out]
    if not non_hold_out:
        return list(conditions), []
    return non_hold_out, hold_out


def set_line(non_hold_out, hold_out, other_settings=()):
    """The exact command-line words: ``--set NAME=VALUE`` for ``other_settings`` then both condition settings."""
    assignments = [*other_settings, f"NON_HOLD_OUT={','.join(non_hold_out)}", f"HOLD_OUT={','.join(hold_out)}"]
    return " ".join(f"--set {shlex.quote(a)}" for a in assignments)


def suggestion(frame, hold_out_preference, available=None):
    """A sentence naming the ``--set`` line that fits the condition columns ``available`` (by default: the
    label-like columns of ``frame``), or saying there are none."""
    columns = label_columns(frame) if available is None else list(available)
    if not columns:
        return ("it has no column of 1/0/-1 labels besides 'No Finding' to use as a condition (positives are 1, "
                "or -1 for uncertain)")
    non_hold_out, hold_out = split_conditions(columns, hold_out_preference)
    return f"its condition columns fit: {set_line(non_hold_out, hold_out)}"


def evaluation_suggestion(frame, available=None):
    """For evaluate.py on a dataset whose columns are not the checkpoint's conditions: the ``--conditions``
    words that evaluate the CSV's condition columns, which the selector never met (reported unseen).
    A ``--set NON_HOLD_OUT=...`` there would report them as seen."""
    columns = label_columns(frame) if available is None else list(available)
    if not columns:
        return ("it has no column of 1/0/-1 labels besides 'No Finding' to use as a condition (positives are 1, "
                "or -1 for uncertain)")
    return (f"its condition columns can be evaluated as conditions the selector never met (reported unseen): "
            f"--conditions {shlex.quote(','.join(columns))}; or give a checkpoint condition's name in this dataset "
            "with --condition_map OLD=NEW")


def require_condition_columns(frame, conditions, source, hold_out_preference, purpose="named by NON_HOLD_OUT / "
                              "HOLD_OUT", available=None):
    """Refuse ``frame`` when it lacks a column for one of ``conditions``, suggesting the settings that fit it."""
    missing = [c for c in conditions if c not in frame.columns]
    if missing:
        raise UserError(f"{source}: no column for condition(s) {', '.join(repr(c) for c in missing)} "
                        f"({purpose}); {suggestion(frame, hold_out_preference, available)}")


def parse_condition_map(texts):
    """``--condition_map`` values ('OLD=NEW,OLD=NEW', repeatable) -> {OLD: NEW}, in the order given."""
    mapping = {}
    for text in texts or []:
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            old, sep, new = (s.strip() for s in item.partition("="))
            if not sep or not old or not new:
                raise UserError(f"--condition_map: expected OLD=NEW (a condition of the checkpoint = a column of the "
                                f"test CSV), got {item!r}")
            if old in mapping and mapping[old] != new:
                raise UserError(f"--condition_map: {old!r} is mapped twice ({mapping[old]!r} and {new!r})")
            mapping[old] = new
    return mapping


def rename_conditions(config, mapping, columns, csv_path):
    """``config`` with its condition settings renamed by ``mapping`` {checkpoint's name: test CSV's column}.

    A condition keeps its setting, so its group: a NON_HOLD_OUT condition mapped to a test column is still
    one the selector met in meta-training ('seen'), a HOLD_OUT one still held out ('unseen'). Refused: a
    name that is not a condition of ``config``, a target that is not one of ``columns``, and two
    conditions ending up under one name.
    """
    conditions = list(config["NON_HOLD_OUT"]) + list(config["HOLD_OUT"])
    unknown = [old for old in mapping if old not in conditions]
    if unknown:
        raise UserError(f"--condition_map: {', '.join(repr(c) for c in unknown)} is not a condition of the checkpoint "
                        f"(NON_HOLD_OUT: {', '.join(config['NON_HOLD_OUT'])}; HOLD_OUT: "
                        f"{', '.join(config['HOLD_OUT']) or 'none'})")
    missing = [new for new in mapping.values() if new not in columns]
    if missing:
        raise UserError(f"--condition_map: {csv_path} has no column {', '.join(repr(c) for c in missing)}")
    renamed = {name: [mapping.get(c, c) for c in config[name]] for name in ("NON_HOLD_OUT", "HOLD_OUT")}
    merged = renamed["NON_HOLD_OUT"] + renamed["HOLD_OUT"]
    for new in dict.fromkeys(merged):
        sources = [old for old, renamed_to in zip(conditions, merged) if renamed_to == new]
        if len(sources) > 1:
            raise UserError(f"--condition_map: {' and '.join(repr(s) for s in sources)} of the checkpoint would both "
                            f"be evaluated as {new!r}; map each condition to a column of its own")
    return with_all_conditions({**config, **renamed})
