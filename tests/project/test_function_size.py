"""No Python function in src/ is longer than MAX_LINES: long ones are split into named steps.

A function's length runs from its ``def`` line to its last line (decorators
not counted, nested functions counted in their parent and on their own).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

MAX_LINES = 60

# Generated or table-like functions that may be longer, each with its reason. Keep it empty.
ALLOWED: dict[str, str] = {}


Function = ast.FunctionDef | ast.AsyncFunctionDef


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Every function in `tree` with its qualified name (Class.method, outer.inner)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, Function):
            yield prefix + node.name, node
        if isinstance(node, Function | ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def length(node: Function) -> int:
    assert node.end_lineno is not None
    return node.end_lineno - node.lineno + 1


def test_no_function_over_the_limit(src_trees: dict[str, ast.Module]) -> None:
    too_long = {
        f"{path}:{name}": length(node)
        for path, tree in src_trees.items()
        for name, node in functions(tree)
        if length(node) > MAX_LINES
    }
    unexcused = {key: n for key, n in too_long.items() if key not in ALLOWED}
    assert not unexcused, f"over {MAX_LINES} lines: " + ", ".join(
        f"{key} ({n})" for key, n in sorted(unexcused.items())
    )


def test_lengths_leave_decorators_out() -> None:
    tree = ast.parse("class C:\n    @staticmethod\n    @other\n    def f():\n        pass\n")
    [(name, node)] = list(functions(tree))
    assert name == "C.f" and length(node) == 2
