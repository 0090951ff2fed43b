"""docs/ cannot drift from the code, as README.md cannot (tests/test_readme.py): for every page of docs/,

* every ```bash block runs on stand-ins for the demo's files, unless a ``<!-- needs: real-data | gpu |
  long-run -->`` line right before it says why it cannot run here;
* every command line (in its blocks and in its tables' first cells, runnable or not) is accepted by that
  command's own argument parser;
* every link to another page points to a page that exists and, with ``#anchor``, to one of its headings.

New pages are checked as they appear. The blocks that run are run once, all in one stand-in folder, so the
test costs one tiny training run and the blocks' own commands.
"""
import glob
import os
import re
import subprocess

import pytest

from tests.conftest import ROOT
from tests.test_readme import (NEEDS_REASONS, bash_blocks, command_lines, demo_stand_in,  # noqa: F401 (fixture)
                               heading_anchor, parse_with_its_parser, table_commands)

PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def page_text(page):
    with open(page, encoding="utf-8") as f:
        return f.read()


def page_commands():
    """[(page name, command line)] of every block and table of every page."""
    found = []
    for page in PAGES:
        text = page_text(page)
        commands = [c for _, code, _ in bash_blocks(text) for c in command_lines(code)] + table_commands(text)
        commands = [c for c in commands if not c.split()[1].startswith("/")]  # a user's own script, not ours
        found += [(os.path.basename(page), c) for c in dict.fromkeys(commands)]
    return found


def test_docs_has_pages_with_commands():
    assert PAGES and len(page_commands()) > 20


@pytest.mark.parametrize("page", [os.path.basename(p) for p in PAGES])
def test_every_block_runs_here_or_names_why_not(page):
    for line, _, reason in bash_blocks(page_text(os.path.join(ROOT, "docs", page))):
        if reason is not None:
            assert set(reason.replace(" ", "").split("|")) <= NEEDS_REASONS, f"docs/{page}:{line}: needs: {reason}"


@pytest.mark.parametrize("page, command", page_commands())
def test_every_docs_command_line_is_accepted_by_its_parser(page, command):
    try:
        parse_with_its_parser(command)
    except SystemExit as exit_:  # argparse's way of refusing
        pytest.fail(f"docs/{page}: {command!r} is refused by its parser (exit {exit_.code})")


@pytest.mark.parametrize("page", [os.path.basename(p) for p in PAGES])
def test_links_between_pages_point_to_existing_pages_and_headings(page):
    text = page_text(os.path.join(ROOT, "docs", page))
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md|)(?:#([^)\s]+))?\)", text):
        path = os.path.normpath(os.path.join(ROOT, "docs", target)) if target else os.path.join(ROOT, "docs", page)
        assert os.path.isfile(path), f"docs/{page} links to {target}, which does not exist"
        if anchor:
            target_text = page_text(path)
            anchors = {heading_anchor(h) for h in re.findall(r"^#+\s+(.*)$", target_text, flags=re.M)}
            anchors |= set(re.findall(r"<a\s+id=\"([^\"]+)\"", target_text))  # explicit anchors
            assert anchor in anchors, f"docs/{page} links to {target}#{anchor}: no such heading or anchor"


def test_every_runnable_docs_block_runs_on_the_demo_files(demo_stand_in):
    runnable = [(os.path.basename(page), line, code) for page in PAGES
                for line, code, reason in bash_blocks(page_text(page)) if reason is None]
    assert runnable, "no docs block runs on the demo data"
    environment = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    for page, line, code in runnable:
        done = subprocess.run(["bash", "-e", "-c", code], cwd=demo_stand_in, env=environment,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"docs/{page}: block at line {line} failed:\n{done.stderr[-3000:]}"
    # The same check fails a block whose command is refused, e.g. a budget curve past the pool (20 here).
    refused = ".venv/bin/python evaluate.py --checkpoint demo_runs/selector/best.pt --test_pos_csv " \
              "demo_data/splits/test_pos.csv --test_norm_csv demo_data/splits/test_norm.csv --k 5,50 --out x"
    done = subprocess.run(["bash", "-e", "-c", refused], cwd=demo_stand_in, env=environment, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2 and "UNLABELED_POOL_SIZE" in done.stderr
