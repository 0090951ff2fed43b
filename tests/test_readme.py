"""README.md cannot drift from the code.

* Every ```bash block of README.md runs, on stand-ins for the demo's files, unless a
  ``<!-- needs: real-data | gpu | long-run -->`` line right before it says why it cannot run here.
* Every command line of README.md (in its blocks and its entry-point table, runnable or not) is
  accepted by that command's own argument parser: no flag that does not exist, no required one missing.
* Every link to a docs/ page points to a page that exists and, with ``#anchor``, to one of its headings.
"""
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_SETTINGS, run_main, write_tiny_split

README = os.path.join(ROOT, "README.md")
NEEDS_MARKER = re.compile(r"<!--\s*needs:\s*([\w\-| ]+?)\s*-->")
NEEDS_REASONS = {"real-data", "gpu", "long-run"}
# The programs a README command line starts with: the script (or module) whose parser reads its arguments.
PROGRAM = re.compile(r"^(?:python3|\.venv/bin/python)\s+(-m\s+[\w.]+|[\w/]+\.py)\b(.*)$")


def readme_text():
    with open(README, encoding="utf-8") as f:
        return f.read()


def bash_blocks(text):
    """[(first line number, code, reason it cannot run here or None)] of the ```bash blocks."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            previous = next((line for line in reversed(lines[:start - 1]) if line.strip()), "")
            marker = NEEDS_MARKER.search(previous)
            blocks.append((start + 1, "\n".join(body), marker.group(1) if marker else None))
        i += 1
    return blocks


def command_lines(code):
    """The code's command lines: continuation lines joined, comments and shell decoration removed."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"^(do|then)\s+", "", line).rstrip(";").strip()
        # what runs the program: `time`, environment settings, torchrun and its options
        line = re.sub(r"^(time\s+|\w+=\S*\s+)+", "", line)
        line = re.sub(r"^torchrun(\s+--\S+)*\s+(?=\S+\.py\b)", "python3 ", line)
        if PROGRAM.match(line):
            commands.append(line)
    return commands


def table_commands(text):
    """The command lines written as inline code in README's tables."""
    return [c for c in re.findall(r"^\|\s*`([^`]+)`", text, flags=re.M) if PROGRAM.match(c)]


def parse_with_its_parser(command):
    """Parse a README command line with the command's own parser (shell variables stand for one value)."""
    program, rest = PROGRAM.match(command).groups()
    module = program.split()[1] if program.startswith("-m") else program[:-len(".py")].replace("/", ".")
    argv = [re.sub(r"\$\w+", "x", word) for word in shlex.split(rest)]
    parser = importlib.import_module(module).get_args_parser()
    return parser.parse_args(argv)


def test_readme_names_why_each_block_it_does_not_run():
    blocks = bash_blocks(readme_text())
    assert blocks, "README.md has no bash block"
    for line, _, reason in blocks:
        if reason is not None:
            assert set(reason.replace(" ", "").split("|")) <= NEEDS_REASONS, f"README.md:{line}: needs: {reason}"
    assert any(reason is None for _, _, reason in blocks), "no README block runs on the demo data"


@pytest.mark.parametrize("command", sorted({c for _, code, _ in bash_blocks(readme_text()) for c in command_lines(code)}
                                           | set(table_commands(readme_text()))))
def test_every_readme_command_line_is_accepted_by_its_parser(command):
    try:
        parse_with_its_parser(command)
    except SystemExit as exit_:  # argparse's way of refusing
        pytest.fail(f"README.md: {command!r} is refused by its parser (exit {exit_.code})")


def test_the_parser_check_would_catch_a_renamed_flag():
    with pytest.raises(SystemExit):
        parse_with_its_parser("python3 select_xrays.py --checkpoint c --pool_csv p.csv -k 3 --output x.csv")
    with pytest.raises(SystemExit):  # a required argument left out
        parse_with_its_parser("python3 run_selector.py --train_pos_csv a.csv")


def heading_anchor(heading):
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_to_docs_point_to_existing_pages_and_headings():
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", readme_text())
    assert links
    for page, anchor in links:
        path = os.path.join(ROOT, page)
        assert os.path.isfile(path), f"README.md links to {page}, which does not exist"
        if anchor:
            with open(path, encoding="utf-8") as f:
                anchors = {heading_anchor(h) for h in re.findall(r"^#+\s+(.*)$", f.read(), flags=re.M)}
            assert anchor in anchors, f"README.md links to {page}#{anchor}: no such heading"


@pytest.fixture
def demo_stand_in(tmp_path, capsys):
    """A folder laid out as after ``make demo``, with tiny synthetic embeddings and a briefly trained selector
    in place of the demo's pictures, the repository's files linked in and ``.venv/bin/python`` this Python."""
    for name in os.listdir(ROOT):
        if name not in {".git", ".venv", "demo_data", "demo_runs", "runs"} and not name.startswith("."):
            os.symlink(os.path.join(ROOT, name), tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)

    splits = tmp_path / "demo_data" / "splits"
    data = []
    for name, seed in (("train", 1), ("val", 2), ("test", 3)):
        pos, norm = write_tiny_split(splits, name, seed=seed)
        data += [f"--{name}_pos_csv", pos, f"--{name}_norm_csv", norm]
    for suffix in (".csv", ".hdf5"):  # the pool: test positives stand for the demo's 100 test X-rays
        shutil.copy(splits / f"test_pos{suffix}", tmp_path / "demo_data" / f"demo_pool{suffix}")

    import run_selector
    settings = [a for s in TINY_SETTINGS for a in ("--set", s)]
    code, _, err = run_main(run_selector.main, data[:8] + ["--out", tmp_path / "demo_runs" / "selector"] + settings,
                            capsys)
    assert code == 0, err
    return tmp_path


def test_every_runnable_readme_block_runs_on_the_demo_files(demo_stand_in):
    runnable = [(line, code) for line, code, reason in bash_blocks(readme_text()) if reason is None]
    environment = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    for line, code in runnable:
        done = subprocess.run(["bash", "-e", "-c", code], cwd=demo_stand_in, env=environment,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README.md block at line {line} failed:\n{done.stderr[-3000:]}"
    # what the demo block promises, checked in its files
    chosen = (demo_stand_in / "demo_runs" / "to_label.csv").read_text().splitlines()
    assert len(chosen) == 1 + 10
    assert (demo_stand_in / "demo_runs" / "selector" / "training_curves.png").stat().st_size > 0
    results = (demo_stand_in / "demo_runs" / "quick_test" / "results.csv").read_text()
    assert all(method in results for method in ("medselect-topk", "random", "kmedoids"))
