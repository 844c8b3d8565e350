"""pywg's import graph: no cycle, and every layer imports only what lies below it.

The graph has one node per module of src/pywg (a package is its __init__)
and an edge for every import, wherever it is written: at module level, in a
function, under ``if TYPE_CHECKING``, absolute or relative. ``from . import x``
and ``from pkg import x`` point at the submodule ``pkg.x`` when there is one,
else at ``pkg`` itself (a name defined in its __init__). Nothing is left out:
the re-exports in package __init__ files make no cycle today, so they are
checked as well.

The layers (docs/architecture.md): the sans-IO core is the modules at
the top of src/pywg; above it are the I/O shell (pywg.asyncio), the OS glue
(pywg.system), the user-space network stack (pywg.netstack), the mesh, the
lab, the interop suite and the commands (pywg.cmd). The core imports none of
those, and only the commands import pywg.cmd.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = "pywg"
ABOVE_THE_CORE = (
    "pywg.asyncio",
    "pywg.cmd",
    "pywg.system",
    "pywg.mesh",
    "pywg.lab",
    "pywg.interop",
    "pywg.proxy",
    "pywg.netstack",
)
COMMANDS = "pywg.cmd"
# modules outside pywg.cmd that may import it, each with its reason
COMMAND_SHIMS = {
    "pywg.__main__": "`python3 -m pywg` is the `pywg` command: it only calls pywg.cmd.main",
}

Graph = dict[str, dict[str, int]]  # module -> {module it imports: line of the first import}


# -- the checker ---------------------------------------------------------------------------


def package_modules(src: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under the directory `src`: dotted name -> file."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _targets(node: ast.Import | ast.ImportFrom, here: str, modules: Mapping[str, Path]) -> set[str]:
    """The modules of the graph one import statement in module `here` points at."""
    if isinstance(node, ast.Import):
        found = set()
        for alias in node.names:
            name = alias.name
            while name and name not in modules:  # `import a.b.c` of a name defined in a.b
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
        return found
    base = node.module or ""
    if node.level:  # relative: from the package `here` is in (or is)
        package = here if modules[here].name == "__init__.py" else here.rpartition(".")[0]
        parts = package.split(".")
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    found = set()
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in modules:
            found.add(submodule)
        elif base in modules:
            found.add(base)
    return found


def import_graph(src: Path, package: str) -> Graph:
    """Who imports whom among the modules of `package` (only edges inside the package)."""
    modules = package_modules(src, package)
    graph: Graph = {name: {} for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, name, modules):
                    graph[name].setdefault(target, node.lineno)
    return graph


def _components(graph: Graph) -> Iterator[list[str]]:
    """Strongly connected components (Tarjan), each as a list of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                yield from visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            yield component

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)


def _cycle_through(graph: Graph, start: str, members: set[str]) -> list[str]:
    """One shortest cycle start -> ... -> start inside `members` (breadth first)."""
    paths = {nxt: [start, nxt] for nxt in graph[start] if nxt in members}
    frontier = list(paths)
    while start not in paths:
        step = []
        for node in frontier:
            for nxt in graph[node]:
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    step.append(nxt)
        frontier = step
    return paths[start]


def find_cycles(graph: Graph) -> list[list[str]]:
    """One import cycle per tangle of modules that import each other, e.g. [a, b, a]."""
    cycles = []
    for component in _components(graph):
        members = set(component)
        start = min(members)
        if len(members) > 1 or start in graph[start]:
            cycles.append(_cycle_through(graph, start, members))
    return cycles


def _describe(graph: Graph, cycle: list[str]) -> str:
    steps = (f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle))
    return " -> ".join([*steps, cycle[-1]])


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# -- pywg ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph(repo_root: Path) -> Graph:
    return import_graph(repo_root / "src", PACKAGE)


def test_no_import_cycle(graph: Graph) -> None:
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


def test_the_core_imports_no_layer_above_it(graph: Graph, repo_root: Path) -> None:
    core = [
        name
        for name, path in package_modules(repo_root / "src", PACKAGE).items()
        if path.parent == repo_root / "src" / PACKAGE and name not in COMMAND_SHIMS
    ]
    assert "pywg.device" in core and "pywg" in core  # the top level, its __init__ included
    wrong = [
        f"{name} imports {target} (line {line})"
        for name in core
        for target, line in graph[name].items()
        if any(_inside(target, layer) for layer in ABOVE_THE_CORE)
    ]
    assert not wrong, "the sans-IO core reaches above itself:\n" + "\n".join(wrong)


def test_only_the_commands_import_pywg_cmd(graph: Graph) -> None:
    wrong = [
        f"{name} imports {target} (line {line})"
        for name, imports in graph.items()
        if not _inside(name, COMMANDS) and name not in COMMAND_SHIMS
        for target, line in imports.items()
        if _inside(target, COMMANDS)
    ]
    assert not wrong, "pywg.cmd is imported from outside the commands:\n" + "\n".join(wrong)


# -- the checker on a package made for it ---------------------------------------------------


def _make_package(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "src"


def test_checker_finds_a_planted_cycle(tmp_path: Path) -> None:
    src = _make_package(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import A\n",  # a re-export, outside the cycle
            "pkg/a.py": "from . import b\nA = 1\n",  # relative, names a submodule
            "pkg/b.py": "def later():\n    from .sub.c import C\n    return C\n",  # in a function
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "import pkg.a\nC = 2\n",  # absolute, closes the cycle
            "pkg/d.py": "from pkg import A\nfrom .sub import c\n",  # no cycle through d
        },
    )
    graph = import_graph(src, "pkg")
    assert graph["pkg.d"] == {"pkg": 1, "pkg.sub.c": 2}
    cycles = find_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert _describe(graph, cycles[0]) == (
        "pkg.a (line 1) -> pkg.b (line 2) -> pkg.sub.c (line 1) -> pkg.a"
    )


def test_checker_finds_a_module_importing_itself(tmp_path: Path) -> None:
    src = _make_package(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from pkg import a\n"})
    assert find_cycles(import_graph(src, "pkg")) == [["pkg.a", "pkg.a"]]


def test_no_one_letter_module_aliases(repo_root: Path) -> None:
    """`import x as T` hides what T is; src/ names modules in full."""
    found = []
    for name, path in package_modules(repo_root / "src", PACKAGE).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found += [
                    f"{name}:{node.lineno}: {alias.name} as {alias.asname}"
                    for alias in node.names
                    if alias.asname is not None and len(alias.asname) == 1
                ]
    assert not found, "one-letter import aliases:\n" + "\n".join(found)
