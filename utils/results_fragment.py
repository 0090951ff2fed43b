"""Numbers the docs quote, written by the script that measured them (the results convention).

A measuring script writes a Markdown *fragment*: its first line an HTML comment naming the command and
the machine, then the tables and sentences with the numbers, then a visible line saying where they come
from. A docs page holds a copy of it between ``<!-- results: NAME.md -->`` and ``<!-- /results -->``;
``make docs-numbers`` (scripts/docs_numbers.py) refreshes every copy, and tests/test_docs_numbers.py
fails when a copy differs from its fragment. Fragments are written only when asked (``--docs_fragment``
or ``--docs_results``), so that a user's own runs never change the repository's docs.
"""
import contextlib
import io
import os
import platform
import shlex
import sys

import torch

from utils.atomic import atomic_write_text

FRAGMENT_FOLDER = os.path.join("docs", "results")  # relative to the repository root
OTHER_MACHINES = "on other machines the numbers may differ in the last digits"


def machine_description(device="cpu"):
    """'2 CPU cores (AMD EPYC 7B13), torch 2.14.1 with 2 threads, load average 1.2' and the GPU's name when
    ``device`` is one. The load average (1 minute, when the fragment is written): a shared machine is slower."""
    text = (f"{os.cpu_count()} CPU cores ({cpu_model()}), torch {torch.__version__} with {torch.get_num_threads()} "
            f"thread(s), load average {os.getloadavg()[0]:.1f}")
    if torch.device(device).type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(torch.device(device))}"
    return text


def cpu_model():
    """The CPU's model name as the system reports it ('unknown CPU' when it does not)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def command_line(script, argv=None):
    """The command as a reader would type it from the repository root: ``python3 bench/x.py --a 1``."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return " ".join(["python3", script, *map(shlex.quote, argv)])


def fragment_text(body, command, machine):
    """The fragment: the ``made by`` comment, ``body`` (Markdown), and the visible line naming its origin."""
    body = body.strip("\n")
    return (f"<!-- made by: {command}; machine: {machine} -->\n{body}\n\n"
            f"*Made by `{command}` on {machine}; {OTHER_MACHINES}.*\n")


def write_fragment(path, body, command, machine):
    """Write the fragment atomically to ``path`` (its folder created) and say so on stdout."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    atomic_write_text(fragment_text(body, command, machine), path)
    print(f"docs fragment written: {path} (copy it into the docs with: make docs-numbers)")


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text):
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


@contextlib.contextmanager
def recorded_stdout():
    """Print as usual, and keep what was printed: ``with recorded_stdout() as record: ...; record.getvalue()``.
    For a benchmark whose printed report is the fragment."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield tee.copy


def run_writing_report(main, argv, fragment_path, script, device, first, last):
    """Run ``main(argv)`` printing as usual; with ``fragment_path``, write what it printed from the line that
    starts with ``first`` up to ``last`` (not included) as the fragment of ``script`` run on ``device``.
    For benchmarks whose printed report is the fragment (bench/train_step.py, bench/embed.py)."""
    with recorded_stdout() as printed:
        main(argv)
    if fragment_path:
        report = printed.getvalue().split(last)[0]
        write_fragment(fragment_path, report[report.index(first):].strip(), command_line(script, argv),
                       machine_description(device))
