"""The repository stands on its own, and src/ says what the code is, not how it came to be.

Nothing in a tracked text file points outside the repository: no relative
path that climbs out of it, no notes file that is not in it. Comments and
docstrings in src/ carry no history ("issue 7", "this stop"): they cite the
spec or say why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

THIS_FILE = Path(__file__).resolve()  # spells out the patterns it looks for

NOTES_FILES = re.compile(r"\bDESIGN\.md\b|\b(?:PERF|MESH|PROTOCOL)-NOTES\b")
RELATIVE_PATH = re.compile(r"(?:\.\./)+[\w./-]*")
HISTORY = re.compile(r"\bissue \d+|\bthis stop\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def tracked(repo_root: Path) -> dict[str, str]:
    """Every tracked text file: its path from the root -> its text."""
    if shutil.which("git") is None or not (repo_root / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=repo_root, capture_output=True, check=True, timeout=30
    )
    texts = {}
    for name in listed.stdout.decode().split("\0"):
        path = repo_root / name
        if not name or path.resolve() == THIS_FILE or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            texts[name] = data.decode("utf-8", errors="replace")
    return texts


def _offences(root: Path, texts: dict[str, str]) -> Iterator[tuple[str, int, str]]:
    """(file, line, what) for every reference out of the repository and every history marker."""
    for name, text in texts.items():
        for number, line in enumerate(text.splitlines(), 1):
            for match in NOTES_FILES.finditer(line):
                if match.group() not in {Path(n).name for n in texts}:
                    yield name, number, match.group()
            for match in RELATIVE_PATH.finditer(line):
                target = (root / name).parent / match.group()
                if not target.resolve().is_relative_to(root.resolve()):
                    yield name, number, match.group()
            if name.startswith("src/"):
                for match in HISTORY.finditer(line):
                    yield name, number, match.group()


def test_nothing_points_outside_the_repository(repo_root: Path, tracked: dict[str, str]) -> None:
    assert len(tracked) > 100 and "pyproject.toml" in tracked
    found = [f"{name}:{line}: {what}" for name, line, what in _offences(repo_root, tracked)]
    assert not found, "references out of the repository or history in src/:\n" + "\n".join(found)


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    texts = {
        "README.md": "see ../shared/notes and PERF-NOTES\n",
        "tests/x.py": "# ../../y ../README.md\n",
        "src/m.py": "# issue 7; this stop\n",
        "docs.md": "issue 7 is fine outside src/\n",
    }
    assert sorted(_offences(tmp_path, texts)) == [
        ("README.md", 1, "../shared/notes"),
        ("README.md", 1, "PERF-NOTES"),
        ("src/m.py", 1, "issue 7"),
        ("src/m.py", 1, "this stop"),
        ("tests/x.py", 1, "../../y"),
    ]
