"""The repository's layering, read from every .py file's imports (ast; nothing is imported or run).

Each file belongs to a *component*: its top-level package (``utils``, ``data``, ``models``, ...) or, for a
file in the root folder, the module itself (``engine``, ``run_selector``, ...). Components have ranks:

    constants < utils < data < models < engine < evaluation, medselect < entry points < bench, scripts < tests

A file may import its own component, or a component of a strictly lower rank. So utils/ imports nothing of
ours but constants; no entry point imports another (each is its own component, all of one rank); bench/
does not import scripts/. Entry points only parse, wire and write, so nothing but tests/ imports one.
There is no cycle between components, and none between modules through module-level imports (a lazy
import inside a function, as models/encoders/ uses for optional libraries, is listed but allowed).
"""
import ast
import os
import re
import subprocess
from collections import defaultdict

# component -> rank; a root-folder module not listed here (and not an entry point) is reported as unranked,
# so that a new file has to be placed in the order before it is accepted.
RANKS = {
    "constants": 0,
    "utils": 1,
    "data": 2,
    "models": 3,
    "engine": 4,
    "evaluation": 5,  # what evaluate.py computes, built on the engine's selection and scoring
    "medselect": 5,  # beside evaluation/: neither imports the other
    "bench": 7, "scripts": 7,
    "tests": 8,
}
ENTRY_POINTS = ("prepare_data", "xray_to_hdf5", "run_selector", "evaluate", "select_xrays", "classify_xrays")
ENTRY_POINT_RANK = 6
MAY_IMPORT_ENTRY_POINTS = ("tests",)  # the test suite runs the commands in-process (tests/conftest.run_main)
SKIPPED_FOLDERS = {".git", ".venv", "venv", "__pycache__", "demo_data", "demo_runs", "docs", "node_modules"}


def rank_of(component):
    return ENTRY_POINT_RANK if component in ENTRY_POINTS else RANKS.get(component)


def python_files(root):
    """Repository-relative paths of every .py file under ``root``, sorted."""
    found = []
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_FOLDERS and not f.startswith("."))
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith(".py")]
    return sorted(found)


def module_name(path):
    """'data/datasets/nih.py' -> 'data.datasets.nih'; 'utils/__init__.py' -> 'utils'."""
    parts = path[:-len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree, module, is_package, known):
    """(line, imported module, at module level?) for every import in ``tree`` that names a module of ours.

    ``from a.b import c`` imports the module a.b.c when that is a file of ours, else a name of a.b.
    """
    package = module if is_package else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y / from .. import z
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            # the longest prefix that is a module of ours ('import a.b.c' where only a.b is a file: a.b)
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts:
                yield node.lineno, ".".join(parts), id(node) in top_level


def import_edges(root):
    """[(file, line, importing module, imported module, at module level?)] for the whole tree."""
    files = python_files(root)
    known = {module_name(p): p for p in files}
    edges = []
    for path in files:
        with open(os.path.join(root, path), encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        module = module_name(path)
        for line, target, top in imported_modules(tree, module, path.endswith("__init__.py"), known):
            if target != module:
                edges.append((path, line, module, target, top))
    return edges


def component(module):
    return module.split(".")[0]


def violations(edges):
    """'file:line: message' for every import that breaks the ranks, and for every file of no known rank."""
    found = []
    for path, line, module, target, _ in edges:
        source, imported = component(module), component(target)
        if source == imported:
            continue
        source_rank, imported_rank = rank_of(source), rank_of(imported)
        if source_rank is None or imported_rank is None:
            continue  # reported once per file below
        if source in ENTRY_POINTS and imported in ENTRY_POINTS:
            found.append(f"{path}:{line}: imports {target}: an entry point imports another")
        elif imported in ENTRY_POINTS and source not in MAY_IMPORT_ENTRY_POINTS:
            found.append(f"{path}:{line}: imports {target}: only tests/ may import an entry point; move what "
                         "it needs below the entry points")
        elif imported_rank >= source_rank:
            found.append(f"{path}:{line}: imports {target}: {source} (rank {source_rank}) imports {imported} "
                         f"(rank {imported_rank})")
    for module in sorted({m for _, _, m, _, _ in edges} | {t for _, _, _, t, _ in edges}):
        if rank_of(component(module)) is None:
            found.append(f"{module.replace('.', os.sep)}: component '{component(module)}' has no rank in RANKS")
    return sorted(set(found))


def cycles(edges, level="component", module_level_only=False):
    """Strongly connected sets of more than one node in the import graph (Tarjan), as sorted lists.

    level='component' joins modules into their components; level='module' keeps modules.
    """
    graph = defaultdict(set)
    for _, _, module, target, top in edges:
        if module_level_only and not top:
            continue
        a, b = (component(module), component(target)) if level == "component" else (module, target)
        if a != b:
            graph[a].add(b)
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node):  # recursive Tarjan; the graphs here are a few hundred nodes
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                result.append(sorted(members))

    for node in sorted(set(graph) | {b for targets in graph.values() for b in targets}):
        if node not in index:
            visit(node)
    return sorted(result)


def cycle_edges(edges, members, level):
    """The imports (file:line -> target) inside one cycle, to show where to cut it."""
    inside = set(members)
    key = component if level == "component" else (lambda m: m)
    return [f"{path}:{line} -> {target}" for path, line, module, target, _ in edges
            if key(module) in inside and key(target) in inside and key(module) != key(target)]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Accepted breaks of the layering, as violations() reports them without the line number ('file: message'), and
# accepted component cycles. Both are empty: the layering holds, and a new upward import fails the test. The
# comparison is exact, so an entry listed here while it is being fixed must be deleted once it is.
KNOWN_VIOLATIONS = []
KNOWN_COMPONENT_CYCLES = []


def _without_line(violation):
    return re.sub(r"^([^:]+):\d+:", r"\1:", violation)


def test_the_repository_keeps_its_layering():
    edges = import_edges(ROOT)
    assert sorted(_without_line(v) for v in violations(edges)) == sorted(KNOWN_VIOLATIONS)
    found = cycles(edges, "component")
    assert found == KNOWN_COMPONENT_CYCLES, [cycle_edges(edges, members, "component") for members in found]
    found = cycles(edges, "module", module_level_only=True)
    assert found == [], [cycle_edges(edges, members, "module") for members in found]


# The citation of a document that is not in the repository; written in two parts so this file does not match.
OUTSIDE_DOCUMENT_CITATION = "SPEC " + "\u00a7"


def tracked_text_files(root):
    """Repository-relative paths of the .py and .md files git tracks (every such file when not a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", "*.py", "*.md"], cwd=root, capture_output=True,
                                text=True, check=True).stdout
        return sorted(path for path in listed.split("\0") if path)
    except (OSError, subprocess.CalledProcessError):
        found = []
        for folder, folders, files in os.walk(root):
            folders[:] = [f for f in folders if f not in SKIPPED_FOLDERS - {"docs"} and not f.startswith(".")]
            found += [os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith((".py", ".md"))]
        return sorted(found)


def test_no_file_cites_a_document_outside_the_repository():
    """Code and docs cite the paper's sections or a docs/ page, so the repository stands on its own."""
    files = tracked_text_files(ROOT)
    assert "README.md" in files and "engine.py" in files  # the listing itself worked
    citing = []
    for path in files:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            citing += [f"{path}:{number}" for number, line in enumerate(f, 1) if OUTSIDE_DOCUMENT_CITATION in line]
    assert citing == []


def _write(root, files):
    for path, text in files.items():
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(root, path), "w") as f:
            f.write(text)


def test_the_checker_finds_each_kind_of_violation(tmp_path):
    """A hand-made tree with one violation of each rule, and the report worked out by hand."""
    _write(tmp_path, {
        "utils/__init__.py": "",
        "utils/errors.py": "",
        "utils/helper.py": "from data.table import load\nfrom utils.errors import x\nimport constants\n",
        "constants.py": "",
        "data/__init__.py": "",
        "data/table.py": "from models import net\n",  # data -> models: upward, and half of a cycle
        "models/__init__.py": "",
        "models/net.py": "from data.table import load\n",  # models -> data: allowed, closes the cycle
        "run_selector.py": "import utils.helper\n",
        "evaluate.py": "from run_selector import resolve_device\n",  # entry point -> entry point
        "bench/__init__.py": "",
        "bench/timing.py": "import xray_to_hdf5\nfrom scripts.demo import draw\n",  # entry point; scripts
        "scripts/demo.py": "",
        "xray_to_hdf5.py": "def main():\n    import evaluate\n",  # inside a function: still an import
        "tests/__init__.py": "",
        "tests/test_x.py": "import evaluate\nfrom bench.timing import t\n",  # tests may import anything
        "odd.py": "import utils\n",  # a root module with no rank
    })
    edges = import_edges(str(tmp_path))
    assert violations(edges) == sorted([
        "bench/timing.py:1: imports xray_to_hdf5: only tests/ may import an entry point; move what it needs "
        "below the entry points",
        "bench/timing.py:2: imports scripts.demo: bench (rank 7) imports scripts (rank 7)",
        "data/table.py:1: imports models.net: data (rank 2) imports models (rank 3)",
        "evaluate.py:1: imports run_selector: an entry point imports another",
        "xray_to_hdf5.py:2: imports evaluate: an entry point imports another",
        "odd: component 'odd' has no rank in RANKS",
        "utils/helper.py:1: imports data.table: utils (rank 1) imports data (rank 2)",
    ])
    assert cycles(edges, "component") == [["data", "models"]]
    assert cycles(edges, "module") == [["data.table", "models.net"]]
