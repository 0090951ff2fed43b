"""Refresh every copy of a results fragment in README.md and docs/ (``make docs-numbers``).

    python3 scripts/docs_numbers.py           # replace each copy by its fragment
    python3 scripts/docs_numbers.py --check   # only report copies that differ (exit 1), change nothing

A docs page quotes measured numbers only as a copy of the fragment that the measuring script wrote to
docs/results/NAME.md (utils/results_fragment.py), held between the lines

    <!-- results: NAME.md -->
    ...
    <!-- /results -->

A marker naming a fragment that does not exist, or one left unclosed, is an error (exit 2).
"""
import argparse
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.atomic import atomic_write_text  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.results_fragment import FRAGMENT_FOLDER  # noqa: E402

OPEN = re.compile(r"^<!--\s*results:\s*(\S+?)\s*-->\s*$")
CLOSE = re.compile(r"^<!--\s*/results\s*-->\s*$")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="report the copies that differ from their fragment and exit 1; change nothing")
    parser.add_argument("--root", default=ROOT, help="the repository (default: the one holding this script)")
    return parser


def docs_pages(root):
    """README.md and every Markdown page of docs/ (not the fragments themselves)."""
    return [os.path.join(root, "README.md"), *sorted(glob.glob(os.path.join(root, "docs", "*.md")))]


def copies(text, page="page"):
    """[(fragment name, first line index of the copy, index of the closing line)] of a page's text."""
    found, lines, start, name = [], text.splitlines(), None, None
    for i, line in enumerate(lines):
        if OPEN.match(line):
            if name is not None:
                raise UserError(f"{page}:{start}: results marker for {name} is not closed before line {i + 1}")
            name, start = OPEN.match(line).group(1), i + 1
        elif CLOSE.match(line):
            if name is None:
                raise UserError(f"{page}:{i + 1}: <!-- /results --> without an opening marker")
            found.append((name, start, i))
            name = None
    if name is not None:
        raise UserError(f"{page}:{start}: results marker for {name} is never closed")
    return found


def refreshed(text, fragments_folder, page="page"):
    """The page's text with every copy replaced by its fragment's current content."""
    lines = text.splitlines(keepends=True)
    for name, start, end in reversed(copies(text, page)):
        fragment = os.path.join(fragments_folder, name)
        if not os.path.isfile(fragment):
            raise UserError(f"{page}:{start}: results marker names {name}, which is not in "
                            f"{os.path.relpath(fragments_folder, os.getcwd())}/")
        with open(fragment, encoding="utf-8") as f:
            content = f.read()
        if not content.endswith("\n"):
            content += "\n"
        lines[start:end] = [content]
    return "".join(lines)


def stale_pages(root):
    """{page path: refreshed text} for the pages whose copies differ from their fragments."""
    folder = os.path.join(root, FRAGMENT_FOLDER)
    stale = {}
    for page in docs_pages(root):
        with open(page, encoding="utf-8") as f:
            text = f.read()
        new = refreshed(text, folder, os.path.relpath(page, root))
        if new != text:
            stale[page] = new
    return stale


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        stale = stale_pages(args.root)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for page, text in stale.items():
        name = os.path.relpath(page, args.root)
        if args.check:
            print(f"{name}: a results copy differs from its fragment (run: make docs-numbers)")
        else:
            atomic_write_text(text, page)
            print(f"{name}: results copies refreshed")
    if not stale:
        print("every results copy matches its fragment")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
