"""The package's shape: no import circle between its modules, nothing imports the command line, no module too long.

The graph holds every import statement of every module of `hf_hybrid/`, at any depth: a function's own
`from . import x` counts as much as the module's first line, since a circle through a lazy import is still one (it
works only for as long as the import stays lazy). Imports by name (`importlib.import_module`) are not read.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_hybrid"
MAX_LINES = 500


def module_names(root: Path) -> dict[str, Path]:
    """Each module of the package at `root` by its dotted name (a package by its own name, not `__init__`)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that the module `name` (at `path`) imports anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # `from package import name`: the submodule `name` where there is one, else the package itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` of a module the package does not have (a name inside it): its nearest module.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as the modules along it, the first repeated at the end; None if there is none."""
    done, path, on_path = set(), [], set()

    def visit(name):
        path.append(name)
        on_path.add(name)
        for imported in sorted(graph.get(name, ())):
            if imported in on_path:
                return [*path[path.index(imported) :], imported]
            if imported not in done:
                cycle = visit(imported)
                if cycle:
                    return cycle
        on_path.discard(path.pop())
        done.add(name)
        return None

    for name in sorted(graph):
        if name not in done:
            cycle = visit(name)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_circle():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"


def test_no_module_imports_the_command_line():
    """`hf_hybrid.cli` is the command's front door: what a command needs lives in a module the others can import."""
    importers = sorted(name for name, imported in import_graph(PACKAGE).items() if "hf_hybrid.cli" in imported)
    assert importers == [], f"{', '.join(importers)} import(s) hf_hybrid.cli"


def test_no_module_is_longer_than_500_lines():
    lengths = {path.relative_to(PACKAGE.parent): path.read_text().count("\n") for path in PACKAGE.rglob("*.py")}
    too_long = {str(path): lines for path, lines in sorted(lengths.items()) if lines > MAX_LINES}
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}"


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


# Fake packages with the imports the graph must read, and the circle (or none) they make.
LAYOUTS = {
    "a circle through a function's own import": (
        {
            "__init__.py": "",
            "cli.py": "from .jobs import run\n",
            "jobs.py": "def run():\n    from .cli import main\n",
        },
        ["pkg.cli", "pkg.jobs", "pkg.cli"],
    ),
    "a circle through a subpackage and its parent": (
        {
            "__init__.py": "",
            "loading.py": "import pkg.bulk.workers\n",
            "bulk/__init__.py": "from .workers import work\n",
            "bulk/workers.py": "def work():\n    from .. import loading\n",
        },
        ["pkg.bulk.workers", "pkg.loading", "pkg.bulk.workers"],
    ),
    "a circle of one module and a name of its package": (
        {
            "__init__.py": "from .table import COMMANDS\n",
            "table.py": "from . import helper\nCOMMANDS = {}\n",
            "helper.py": "def f():\n    from pkg import COMMANDS\n",
        },
        ["pkg", "pkg.table", "pkg.helper", "pkg"],
    ),
    "submodules importing their package's leaf __init__": (
        {
            "__init__.py": "NAMES = {}\n",
            "one.py": "from . import NAMES\nfrom .two import f\n",
            "two.py": "from . import NAMES\n\ndef f():\n    import pkg.three\n",
            "three.py": "import os\n",
        },
        None,
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_graph_finds_a_circle_where_there_is_one(layout, tmp_path):
    files, cycle = LAYOUTS[layout]
    assert find_cycle(import_graph(write_package(tmp_path, files))) == cycle
