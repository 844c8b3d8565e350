"""pywg.system.secretfile: the one writer of private keys and node state on disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pywg.system.secretfile import read_or_create_secret, write_secret_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert write_secret_file(str(tmp_path / "key"), "secret\n")
    finally:
        os.umask(old)
    assert (tmp_path / "key").read_text() == "secret\n"
    assert _mode(tmp_path / "key") == 0o600
    assert os.listdir(tmp_path) == ["key"]  # no temporary file left


def test_replace_swaps_the_file_and_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    (tmp_path / "key").symlink_to(target)
    assert write_secret_file(str(tmp_path / "key"), "new\n")
    assert not (tmp_path / "key").is_symlink()
    assert (tmp_path / "key").read_text() == "new\n"
    assert target.read_text() == "untouched\n"


def test_without_replace_the_first_writer_wins(tmp_path: Path) -> None:
    path = str(tmp_path / "key")
    assert write_secret_file(path, "first\n", replace=False)
    assert not write_secret_file(path, "second\n", replace=False)
    assert (tmp_path / "key").read_text() == "first\n"
    assert _mode(tmp_path / "key") == 0o600
    assert os.listdir(tmp_path) == ["key"]


def test_read_or_create_secret(tmp_path: Path) -> None:
    path = str(tmp_path / "relay.key")
    first = read_or_create_secret(path)
    assert len(first) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_or_create_secret(path) == first  # kept, not made again
    with open(path, "w") as handle:
        handle.write("not base64 of 32 bytes\n")
    with pytest.raises(ValueError, match="does not hold a key"):
        read_or_create_secret(path)
