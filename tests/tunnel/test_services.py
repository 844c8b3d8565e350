"""The systemd units, `pywg service`, sd_notify messages and journald log lines.

The units shipped in pywg/system/units are installed the way `pywg service
install` installs them (into a temporary directory, with this environment's
`pywg`) and checked by `systemd-analyze verify`, which also checks that each
ExecStart names an executable file. A template unit is verified through an
instance (``pywgd@wg0.service``, a link to the template, as systemd resolves
one). `sdnotify` is checked against a datagram socket this test binds;
`journal` against a file whose device and inode JOURNAL_STREAM names.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pywg.cmd import coordinator as coordinator_cli
from pywg.cmd import daemon as daemon_cli
from pywg.cmd.main import main as pywg_main
from pywg.system import journal, sdnotify, services

VERIFY_TIMEOUT = 20.0
pytestmark = pytest.mark.time_limit(30)


def _instances(prefix: Path) -> list[str]:
    """The units to verify in `prefix`: plain ones, and an instance `wg0` of each template."""
    names = []
    for name in services.UNITS:
        if name.endswith("@.service"):
            instance = name.replace("@.", "@wg0.")
            (prefix / instance).symlink_to(name)
            name = instance
        names.append(str(prefix / name))
    return names


def _verify(paths: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *paths],
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT,
    )


@pytest.mark.needs_root("systemd-analyze")
def test_installed_units_verify_clean(tmp_path: Path) -> None:
    assert pywg_main(["service", "install", "--prefix", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(services.UNITS)
    paths = _instances(tmp_path)
    result = _verify(paths)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # an unknown key is only a warning
    pywg = services.find_executable()
    for path in paths:
        text = Path(path).read_text()
        assert services.PLACEHOLDER not in text
        assert f"ExecStart={pywg} " in text
        assert "Type=notify" in text


@pytest.mark.needs_root("systemd-analyze")
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a wrong key, and a missing executable, are reported."""
    text = services.render("pywg-relay.service", "/nonexistent/pywg")
    (tmp_path / "missing.service").write_text(text)
    (tmp_path / "typo.service").write_text(
        services.render("pywg-relay.service", services.find_executable()).replace(
            "NoNewPrivileges=", "NoNewPrivilege="
        )
    )
    missing = _verify([str(tmp_path / "missing.service")])
    assert missing.returncode != 0 and "/nonexistent/pywg" in missing.stderr
    typo = _verify([str(tmp_path / "typo.service")])
    assert "NoNewPrivilege" in typo.stderr


def test_install_dry_run_and_uninstall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = tmp_path / "units"
    args = ["--prefix", str(prefix), "--unit", "pywg-coordinator.service"]
    assert pywg_main(["service", "install", *args, "--dry-run", "--pywg", "/opt/x/pywg"]) == 0
    assert not prefix.exists()
    assert "ExecStart=/opt/x/pywg coordinator serve" in capsys.readouterr().out
    assert pywg_main(["service", "install", *args, "--pywg", "/opt/x/pywg"]) == 0
    unit = prefix / "pywg-coordinator.service"
    assert unit.stat().st_mode & 0o777 == 0o644
    assert pywg_main(["service", "uninstall", *args, "--dry-run"]) == 0
    assert unit.exists()
    assert pywg_main(["service", "uninstall", *args]) == 0
    assert not unit.exists()
    assert pywg_main(["service", "install", *args, "--pywg", "relative/pywg"]) == 1


# -- sd_notify ------------------------------------------------------------------------------


def _listener(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


def test_sdnotify_to_a_path_and_to_an_abstract_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.ready("up\non port 1")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up on port 1"
        assert sdnotify.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
    name = f"pywg-test-{os.getpid()}"
    with _listener(b"\0" + name.encode()) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.status("serving")
        assert sock.recv(4096) == b"STATUS=serving"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.ready()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    assert not sdnotify.ready()  # no listener: reported, never raised


def test_children_do_not_inherit_the_notify_socket() -> None:
    env = sdnotify.child_environment({"NOTIFY_SOCKET": "/run/x", "PATH": "/bin"})
    assert env == {"PATH": "/bin"}


# -- journald -------------------------------------------------------------------------------


def _journal_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, journal_on: bool) -> str:
    """What coordinator-style logging writes to a file that is (or is not) the journal."""
    out = tmp_path / "stderr"
    with open(out, "w") as handle:
        info = os.fstat(handle.fileno())
        stream = f"{info.st_dev}:{info.st_ino}" if journal_on else f"{info.st_dev}:1"
        monkeypatch.setenv("JOURNAL_STREAM", stream)
        monkeypatch.setattr(sys, "stderr", handle)
        try:
            coordinator_cli.setup_logging(verbose=True)
            log = logging.getLogger("pywg.svc")
            log.debug("detail")
            log.info("listening")
            log.warning("two\nlines")
            log.error("failed")
        finally:
            logging.getLogger("pywg").handlers.clear()
    return out.read_text()


def test_journal_lines_have_priorities_and_no_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _journal_log(tmp_path, monkeypatch, journal_on=True)
    assert text.splitlines() == [
        "<7>pywg.svc: detail",
        "<6>pywg.svc: listening",
        "<4>pywg.svc: two",
        "<4>lines",
        "<3>pywg.svc: failed",
    ]


def test_elsewhere_lines_keep_their_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _journal_log(tmp_path, monkeypatch, journal_on=False)
    first = text.splitlines()[0]
    assert first.endswith(" pywg.svc: detail") and first[2] == ":" and "<" not in first


def test_pywgd_lines_on_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pywgd keeps wireguard-go's level words, without the date, with a priority."""
    out = tmp_path / "stdout"
    with open(out, "w") as handle:
        info = os.fstat(handle.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        monkeypatch.setenv("LOG_LEVEL", "verbose")
        monkeypatch.setattr(sys, "stdout", handle)
        try:
            daemon_cli.setup_logging("wg9")
            logging.getLogger("pywg.daemon").info("UAPI listener started")
        finally:
            logging.getLogger("pywg").handlers.clear()
    assert out.read_text() == "<6>DEBUG: (wg9) UAPI listener started\n"


def test_a_stream_without_a_file_is_not_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not journal.is_journal(io.StringIO())
