"""The 'medselect' logger: lines go through tqdm (so progress bars stay intact) and to a run log file.

Most lines go to stderr. The few that the original code printed on stdout, which users' scripts
read (run_selector.py's progress, meta-validation and save lines), are logged with
``extra=ORIGINAL_LINE``: they go to stdout instead, with the original's leading text.
"""
import logging
import sys

from tqdm import tqdm

LOGGER_NAME = "medselect"
ORIGINAL_LINE = {"original_line": True}  # log.info(..., extra=ORIGINAL_LINE): a line of the original's stdout


def _is_original_line(record):
    return getattr(record, "original_line", False)


class _TqdmHandler(logging.Handler):
    """Writes through tqdm to sys.stdout or sys.stderr (looked up at each line, so redirection works)."""

    def __init__(self, stream_name):
        super().__init__()
        self.stream_name = stream_name

    def emit(self, record):
        tqdm.write(self.format(record), file=getattr(sys, self.stream_name))


class _RunLogHandler(logging.FileHandler):
    """The run log file. A line that cannot be written (a full disk) stops the file, with one warning on
    stderr, instead of logging's traceback at every later line; the console keeps every line."""

    def __init__(self, path):
        super().__init__(path)
        self.failed = False

    def emit(self, record):
        if not self.failed:
            super().emit(record)

    def handleError(self, record):
        self.failed = True
        problem = sys.exc_info()[1]
        text = getattr(problem, "strerror", None) or str(problem).strip().splitlines()[0]
        tqdm.write(f"warning: {self.baseFilename}: cannot write the run log ({text}); later lines only go to the "
                   "screen", file=sys.stderr)

    def close(self):
        try:
            super().close()
        except OSError:  # closing flushes what a full disk refused
            pass


def setup_logging(log_file=None):
    """Log INFO and above to stderr (the original's lines to stdout), and to ``log_file`` when given."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for stream_name, wanted in (("stderr", lambda r: not _is_original_line(r)), ("stdout", _is_original_line)):
        console = _TqdmHandler(stream_name)
        console.setFormatter(logging.Formatter("%(message)s"))
        console.addFilter(wanted)
        logger.addHandler(console)
    if log_file:
        file_handler = _RunLogHandler(log_file)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    logger.propagate = False
    return logger
