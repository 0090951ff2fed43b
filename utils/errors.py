"""User-facing errors: one readable line, exit code 2, no traceback.

Library code raises :class:`UserError` for anything the user can fix (a missing
file, a wrong column, a bad value). Each command line entry point wraps its
``main`` with :func:`run_cli`, which turns such an error into one line on
stderr and exit status 2. Programming errors still raise with a traceback.
"""
import contextlib
import signal
import sys

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def run_cli(main, argv=None):
    """Run ``main(argv)``; report a UserError or Ctrl-C as one line and exit non-zero."""
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM (a scheduler stopping the job) ends the run like Ctrl-C, so that its clean-up runs (an unfinished
    file is closed, a lock released) and run_cli reports it; the previous handler is restored on leaving."""
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
