"""Rows as CSV text, for the result files that are written whole through utils/atomic.py.

metrics.csv (run_selector.py) and evaluate.py's results.csv, per_task.csv and selection_analysis.csv
are all written by this one function, so they share one dialect: the csv module's default, with
lines ending in \\r\\n.
"""
import csv
import io


def csv_text(rows, columns):
    """CSV text of ``rows`` (dicts; a missing key or None is written blank) under the header ``columns``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()
