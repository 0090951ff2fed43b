"""Progress bars on stderr that stay readable in a terminal and in a log file.

A bar is always shown (as every command shows its bars), on stderr, so stdout
keeps only the lines scripts read; those go through utils.logs, which prints
with ``tqdm.write`` so that a line never lands on a bar's line. On a terminal a
bar is redrawn ten times a second; when stderr is a file (a batch job's log) at
most every LOG_FILE_INTERVAL seconds, so the log gets an occasional progress
line with the ETA instead of one per step.
"""
import sys

from tqdm import tqdm

TERMINAL_INTERVAL = 0.1  # seconds between redraws on a terminal (tqdm's default)
LOG_FILE_INTERVAL = 30.0  # seconds between redraws when stderr is redirected to a file


def progress_bar(**kwargs):
    """A tqdm bar on stderr (total, rate and ETA); keyword arguments go to tqdm."""
    interactive = sys.stderr.isatty()
    options = {"file": sys.stderr, "dynamic_ncols": True,
               "mininterval": TERMINAL_INTERVAL if interactive else LOG_FILE_INTERVAL}
    return tqdm(**{**options, **kwargs})

