"""utils/progress.py: a bar on stderr that the original's stdout lines never splice into, redrawn rarely in a
log file."""
import io
import sys

import pytest

from utils.logs import ORIGINAL_LINE, setup_logging
from utils.progress import LOG_FILE_INTERVAL, TERMINAL_INTERVAL, progress_bar


class Terminal(io.StringIO):
    """stdout and stderr of one terminal window: what was written to either, in order."""

    def isatty(self):
        return True


def rendered_lines(text):
    """What a terminal shows: on each line, what follows the last carriage return."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]


@pytest.mark.parametrize("write", ["logger", "print"])
def test_stdout_lines_stay_whole_beside_a_bar(monkeypatch, write):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    log = setup_logging()
    line = "epoch 1, iter 5, avg_reward 0.512, time_elapsed 2.000 sec"
    with progress_bar(total=10, desc="meta-training", mininterval=0) as bar:
        for step in range(10):
            bar.update(1)
            if step == 4 and write == "logger":
                log.info(line, extra=ORIGINAL_LINE)
            elif step == 4:
                print(line)
    shown = rendered_lines(terminal.getvalue())
    if write == "logger":  # the line on its own, the bar redrawn below it
        assert line in shown and shown.index(line) < max(i for i, s in enumerate(shown) if "10/10" in s)
    else:  # a plain print lands on the bar's line: what logging through tqdm prevents
        assert line not in shown and any(s.startswith("meta-training") and s.endswith(line) for s in shown)


def test_bar_is_always_shown_and_redrawn_rarely_in_a_log_file(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # redirected to a file: not a terminal
    bar = progress_bar(total=3, desc="meta-training")
    assert not bar.disable and bar.mininterval == LOG_FILE_INTERVAL
    bar.close()
    assert "meta-training" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", Terminal())
    with progress_bar(total=3) as bar:
        assert bar.mininterval == TERMINAL_INTERVAL


@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_logged_lines_do_not_redraw_the_bar_in_a_log_file(monkeypatch, stream):
    out, err = io.StringIO(), io.StringIO()  # both redirected to files
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    log = setup_logging()
    with progress_bar(total=40, desc="meta-training") as bar:
        for step in range(40):
            bar.update(1)
            log.info(f"line {step}", extra=ORIGINAL_LINE if stream == "stdout" else {})
    # 40 lines in well under LOG_FILE_INTERVAL: the bar drawn when it starts and when it ends, not once per line
    assert err.getvalue().count("meta-training") <= 3
    written = (out if stream == "stdout" else err).getvalue().splitlines()
    assert all(f"line {step}" in written for step in range(40))  # each line whole, on a line of its own
    assert "40/40" in err.getvalue().splitlines()[-1]
