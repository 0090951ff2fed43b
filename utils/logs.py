"""The 'medselect' logger: lines go through tqdm (so progress bars stay intact) and to a run log file."""
import logging
import sys

from tqdm import tqdm

LOGGER_NAME = "medselect"


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(log_file=None):
    """Log INFO and above to stderr, and to ``log_file`` when given. Returns the logger."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    if log_file:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    logger.propagate = False
    return logger
