"""Progress bars on stderr that stay readable in a terminal and in a log file.

A bar is always shown (as every command shows its bars), on stderr, so stdout
keeps only the lines scripts read; those go through utils.logs, which prints
with ``tqdm.write`` so that a line never lands on a bar's line. On a terminal a
bar is redrawn ten times a second; when stderr is a file (a batch job's log) at
most every LOG_FILE_INTERVAL seconds, so the log gets an occasional progress
line with the ETA instead of one per step. There a log line written through
``tqdm.write`` ends the bar's line instead of erasing the bar and drawing it
again (which in a file would add one copy of the bar per log line).
"""
import sys

from tqdm import tqdm

TERMINAL_INTERVAL = 0.1  # seconds between redraws on a terminal (tqdm's default)
LOG_FILE_INTERVAL = 30.0  # seconds between redraws when stderr is redirected to a file


class _LogFileBar(tqdm):
    """A bar in a file: drawn at most every ``mininterval`` seconds, also when lines are logged beside it."""

    _line_open = False  # the bar was drawn and its line not yet ended

    def display(self, *args, **kwargs):
        self._line_open = True
        return super().display(*args, **kwargs)

    def clear(self, nolock=False):
        # tqdm.write clears every bar before its line: a terminal erases the bar, a file can only end its line.
        if not self.disable and self._line_open:
            self.fp.write("\n")
            self._line_open = False

    def refresh(self, nolock=False, lock_args=None):
        if nolock:  # the redraw tqdm.write (and tqdm's monitor thread) ask for: wait for the next interval instead
            return True
        return super().refresh(nolock=nolock, lock_args=lock_args)


def progress_bar(**kwargs):
    """A tqdm bar on stderr (total, rate and ETA); keyword arguments go to tqdm."""
    interactive = sys.stderr.isatty()
    options = {"file": sys.stderr, "dynamic_ncols": True,
               "mininterval": TERMINAL_INTERVAL if interactive else LOG_FILE_INTERVAL}
    return (tqdm if interactive else _LogFileBar)(**{**options, **kwargs})

