"""What the project checks read: the repository's root and pywg's parsed Python sources."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top directory (where pyproject.toml is)."""
    return ROOT


@pytest.fixture(scope="session")
def src_trees() -> dict[str, ast.Module]:
    """Every Python file under src/, parsed once: its path from the root -> its syntax tree."""
    return {
        path.relative_to(ROOT).as_posix(): ast.parse(path.read_text(), str(path))
        for path in sorted((ROOT / "src").rglob("*.py"))
    }
