"""The results convention: every number the docs quote from a run is a copy of the fragment that the
measuring script wrote (docs/results/NAME.md), and `make docs-numbers` (scripts/docs_numbers.py) keeps
the copies equal to their fragments. No test compares a fresh run's numbers with the docs: training
trajectories differ slightly between CPUs."""
import os

import pandas as pd
import pytest

from scripts import demo_report, docs_numbers
from tests.conftest import ROOT, run_main
from utils.results_fragment import OTHER_MACHINES, fragment_text

FRAGMENTS = os.path.join(ROOT, "docs", "results")


def test_every_results_copy_in_the_docs_is_its_fragment():
    # Whatever pages and fragments exist: each marker names an existing fragment and holds it unchanged.
    stale = docs_numbers.stale_pages(ROOT)
    assert not stale, f"results copies differ from their fragments in {sorted(stale)}: run make docs-numbers"


def test_every_fragment_names_its_command_and_machine():
    names = [n for n in os.listdir(FRAGMENTS) if n.endswith(".md")] if os.path.isdir(FRAGMENTS) else []
    for name in names:
        with open(os.path.join(FRAGMENTS, name), encoding="utf-8") as f:
            first = f.readline()
        assert first.startswith("<!-- made by: ") and "; machine: " in first and first.rstrip().endswith("-->"), \
            f"docs/results/{name}: the first line must be <!-- made by: COMMAND; machine: MACHINE -->"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path):
    """A repository with README.md, one docs page quoting two fragments, and the fragments."""
    write(tmp_path / "README.md", "# readme\n")
    write(tmp_path / "docs" / "results" / "a.md", "<!-- made by: x; machine: y -->\n| a | 0.610 |\n")
    write(tmp_path / "docs" / "results" / "b.md", "<!-- made by: z; machine: y -->\nb took 19.9 ms\n")
    write(tmp_path / "docs" / "page.md", "intro\n<!-- results: a.md -->\n<!-- made by: x; machine: y -->\n"
                                         "| a | 0.604 |\n<!-- /results -->\nbetween\n<!-- results: b.md -->\n"
                                         "<!-- /results -->\nend\n")
    return tmp_path


def test_every_measured_number_in_the_prose_is_in_a_fragment_of_its_page():
    # Prose that sums up a table ("+0.016 to +0.088 at K = 10") drifts with it unless it is checked too.
    unquoted = docs_numbers.unquoted_pages(ROOT)
    assert not unquoted, {os.path.relpath(page, ROOT): numbers for page, numbers in unquoted.items()}


def test_prose_numbers_absent_from_the_pages_fragments_are_reported(project, capsys):
    page = project / "docs" / "page.md"
    page.write_text(page.read_text() + (
        "It gained +0.021 and −0.604 here, 0.610 there, and 0.999 is a threshold.\n"
        "A message `AUROC +0.333 in topk` and a code block are not measurements:\n```\nrun --lr +0.444\n```\n"
        "A span over two lines, `shown as\n+0.555`, then +0.777 outside it.\n"), encoding="utf-8")
    # 0.604 is only in the page's stale copy, not in fragment a.md (0.610): the prose quoting it has drifted
    assert docs_numbers.unquoted_numbers(page.read_text(), str(project / "docs" / "results")) == [
        (10, "+0.021"), (10, "−0.604"), (16, "+0.777")]
    code, out, _ = run_main(docs_numbers.main, ["--check", "--root", project], capsys)
    assert code == 1 and "+0.021 (line 10)" in out


def test_a_drifted_copy_is_reported_then_refreshed(project, capsys):
    code, out, _ = run_main(docs_numbers.main, ["--check", "--root", project], capsys)
    assert code == 1 and "docs/page.md" in out
    assert "0.604" in (project / "docs" / "page.md").read_text()  # --check changes nothing
    code, _, err = run_main(docs_numbers.main, ["--root", project], capsys)
    assert code == 0, err
    assert (project / "docs" / "page.md").read_text() == (
        "intro\n<!-- results: a.md -->\n<!-- made by: x; machine: y -->\n| a | 0.610 |\n<!-- /results -->\n"
        "between\n<!-- results: b.md -->\n<!-- made by: z; machine: y -->\nb took 19.9 ms\n<!-- /results -->\nend\n")
    code, _, _ = run_main(docs_numbers.main, ["--check", "--root", project], capsys)
    assert code == 0


@pytest.mark.parametrize("page, problem", [
    ("<!-- results: missing.md -->\n<!-- /results -->\n", "missing.md, which is not in"),
    ("<!-- results: a.md -->\nno end\n", "never closed"),
    ("text\n<!-- /results -->\n", "without an opening marker"),
])
def test_a_marker_without_its_fragment_or_its_end_is_an_error(project, capsys, page, problem):
    write(project / "docs" / "other.md", page)
    code, _, err = run_main(docs_numbers.main, ["--root", project], capsys)
    assert code == 2 and problem in err and "docs/other.md" in err
    assert "0.604" in (project / "docs" / "page.md").read_text()  # nothing written


def test_a_fragment_names_its_command_and_machine_first_and_visibly():
    text = fragment_text("| a | 1 |\n", "python3 bench/x.py --n 3", "2 CPU cores (Some CPU), torch 2.0")
    lines = text.splitlines()
    assert lines[0] == "<!-- made by: python3 bench/x.py --n 3; machine: 2 CPU cores (Some CPU), torch 2.0 -->"
    assert lines[1] == "| a | 1 |"
    assert "`python3 bench/x.py --n 3`" in lines[-1] and "2 CPU cores (Some CPU)" in lines[-1]
    assert OTHER_MACHINES in lines[-1]


def test_selection_modes_table_reads_each_difference_from_either_side_of_its_pair():
    def row(group, method, mean, reference=None, diff=None):
        return {"group": group, "condition": "overall", "method": method, "num_tasks": 7, "mean_auroc": mean,
                "reference": reference, "diff_vs_medselect": diff,
                "diff_ci_low": None if diff is None else diff - 0.01,
                "diff_ci_high": None if diff is None else diff + 0.01}
    rows = []
    for group in ("seen", "unseen", "all"):
        rows += [row(group, m, mean) for m, mean in zip(demo_report.MODES, (0.60, 0.62, 0.65, 0.55, 0.54))]
        # sample − sample-distinct is stored (the evaluation's order), so sample-distinct − sample is its negation
        rows.append(row(group, "medselect-sample-distinct", 0.62, "medselect-sample", -0.02))
        rows.append(row(group, "medselect-sample-distinct", 0.62, "medselect-topk", 0.03))
    lines = demo_report.selection_modes_table(pd.DataFrame(rows), {"seed": 0})
    assert lines[0].startswith("Seed 0; 7 tasks per group")
    assert lines[4] == "| seen | 0.600 | 0.620 | 0.650 | 0.550 | 0.540 | +0.030 [+0.020, +0.040] | " \
                       "+0.020 [+0.010, +0.030] |"
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| seen", "| held out", "| all"]
