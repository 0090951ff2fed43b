"""Refresh every copy of a results fragment in README.md and docs/ (``make docs-numbers``).

    python3 scripts/docs_numbers.py           # replace each copy by its fragment
    python3 scripts/docs_numbers.py --check   # only report copies that differ (exit 1), change nothing

A docs page quotes measured numbers only as a copy of the fragment that the measuring script wrote to
docs/results/NAME.md (utils/results_fragment.py), held between the lines

    <!-- results: NAME.md -->
    ...
    <!-- /results -->

A marker naming a fragment that does not exist, or one left unclosed, is an error (exit 2).

Prose that sums up a fragment ("+0.016 to +0.088 at K = 10") must not drift from it either: every
measured-looking number outside the copies, code blocks and code spans (a signed decimal such as +0.016 or
−0.02, or an AUROC-like 0.ddd) has to occur in a fragment the same page quotes, or in
``SPECIFIED_NUMBERS`` (thresholds and settings, not measurements). ``--check`` reports the others.
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
# A number as a measurement prints it: a sign and a decimal (+0.016, −0.02), or 0 and three decimals (0.670).
MEASURED = re.compile(r"(?<![\w.])(?:[+\u2212-]\d+\.\d+|0\.\d{3})(?![\w.])")
# Numbers the docs state as settings or thresholds (not measured): cosine >= 0.999 to fp32, ProbCover's
# purity 0.95, the bootstrap's 0.95, a version's digits.
SPECIFIED_NUMBERS = {"0.999", "0.95", "0.975", "0.025"}
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


def unquoted_numbers(text, fragments_folder):
    """[(line number, number)] of the measured-looking numbers in a page's prose (outside results copies and
    code blocks) that occur in none of the fragments the page quotes."""
    lines, quoted, inside = text.splitlines(), "", set()
    for name, start, end in copies(text):
        inside.update(range(start - 1, end + 1))
        fragment = os.path.join(fragments_folder, name)
        if os.path.isfile(fragment):
            with open(fragment, encoding="utf-8") as f:
                quoted += f.read()
    known = {_magnitude(n) for n in MEASURED.findall(quoted)} | set(SPECIFIED_NUMBERS)
    found, code, in_span = [], False, False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            code = not code
            continue
        if code or i in inside or line.lstrip().startswith("<!--"):
            continue
        # a code span (which may go on over the next line) holds values and messages, not measurements
        pieces = line.split("`")
        prose = " ".join(piece for j, piece in enumerate(pieces) if (j + in_span) % 2 == 0)
        in_span ^= (len(pieces) - 1) % 2 == 1
        found += [(i + 1, n) for n in MEASURED.findall(prose) if _magnitude(n) not in known]
    return found


def _magnitude(number):
    """'−0.142' -> '0.142': prose may give a difference's size without its sign ("lost by up to 0.142")."""
    return number.lstrip("+-\u2212")


def unquoted_pages(root):
    """{page path: [(line, number)]} for the pages with prose numbers that are in none of their fragments."""
    folder = os.path.join(root, FRAGMENT_FOLDER)
    found = {}
    for page in docs_pages(root):
        with open(page, encoding="utf-8") as f:
            numbers = unquoted_numbers(f.read(), folder)
        if numbers:
            found[page] = numbers
    return found


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
    unquoted = unquoted_pages(args.root) if args.check else {}
    for page, numbers in unquoted.items():
        print(f"{os.path.relpath(page, args.root)}: numbers in the prose that none of its fragments holds: "
              + ", ".join(f"{n} (line {line})" for line, n in numbers))
    return 1 if args.check and (stale or unquoted) else 0


if __name__ == "__main__":
    sys.exit(main())
