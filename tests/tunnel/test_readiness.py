"""sd_notify readiness of real processes: READY=1 from the main process, once it serves.

Each command runs in a namespace of the lab with NOTIFY_SOCKET naming a
datagram socket this test binds (a path: an abstract socket would belong to
the test's own network namespace), as systemd starts a ``Type=notify`` unit.
SO_PASSCRED gives each message's sender, so the test also checks what
``NotifyAccess=main`` needs: the message comes from the main process, and the
coordinator's relay (its child) sends none.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.wg_nodes import pywgd_path
from pywg.keys import PrivateKey
from pywg.lab import Host
from pywg.system import uapi_client
from pywg.system.services import find_executable

PREFIX = "pwsvc"
START_TIMEOUT = 15.0
UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid (unix(7))


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(str(tmp_path / "notify"))
    with sock:
        yield sock


def receive(sock: socket.socket, timeout: float) -> tuple[int, str] | None:
    """The next message: (sender pid, text), or None after `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
    except TimeoutError:
        return None
    pids = [
        UCRED.unpack(bytes(payload[: UCRED.size]))[0]
        for level, kind, payload in ancillary
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
    ]
    assert len(pids) == 1
    return pids[0], data.decode()


def start(host: Host, sock: socket.socket, log: Path, *argv: str) -> subprocess.Popen[bytes]:
    """`argv` in `host` as systemd starts a Type=notify service; its stderr into `log`."""
    env = {"NOTIFY_SOCKET": sock.getsockname(), "LOG_LEVEL": "error"}
    with open(log, "wb") as handle:
        return host.popen(*argv, env=env, stdout=subprocess.DEVNULL, stderr=handle)


def wait_ready(sock: socket.socket, process: subprocess.Popen[bytes], log: Path) -> str:
    """The READY=1 message, which must come from `process` itself."""
    message = receive(sock, START_TIMEOUT)
    if message is None:
        pytest.fail(f"no READY=1 from the service; its stderr: {log.read_text()[-500:]}")
    pid, text = message
    assert pid == process.pid, f"READY=1 from pid {pid}, not the main process {process.pid}"
    assert text.split("\n")[0] == "READY=1", text
    return text


@pytest.mark.needs_lab("pywgd")
@pytest.mark.time_limit(30)
def test_pywgd_is_ready_once_its_uapi_socket_answers(
    host: Host, notify_socket: socket.socket, tmp_path: Path
) -> None:
    name = f"{PREFIX}0"
    log = tmp_path / "stderr"
    daemon = start(host, notify_socket, log, pywgd_path(), "-f", name)
    text = wait_ready(notify_socket, daemon, log)
    assert "STATUS=UAPI listening on" in text
    assert "listen_port=" in uapi_client.get(name)  # answers at once, no retry
    daemon.terminate()
    assert daemon.wait(10) == 0
    stopping = receive(notify_socket, 5)
    assert stopping is not None and stopping[1].startswith("STOPPING=1")


def _answers_http(host: Host, port: int) -> bool:
    with host.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
        sock.sendall(b"GET /v1/nope HTTP/1.0\r\n\r\n")
        return sock.recv(16).startswith(b"HTTP/1.")


@pytest.mark.needs_lab()
@pytest.mark.time_limit(30)
def test_coordinator_is_ready_once_it_answers_and_its_relay_stays_quiet(
    host: Host, notify_socket: socket.socket, tmp_path: Path
) -> None:
    port = 8580
    log = tmp_path / "stderr"
    coordinator = start(
        host,
        notify_socket,
        log,
        find_executable(),
        "coordinator",
        "serve",
        "--plain-http",
        "--listen",
        f"127.0.0.1:{port}",
        "--relay-host",
        "127.0.0.1",
        "--state",
        str(tmp_path / "state"),
    )
    wait_ready(notify_socket, coordinator, log)
    assert _answers_http(host, port)
    # the relay child (TCP 443 here) comes up after; it must not speak for the unit
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers_tcp(host, 443):
        assert time.monotonic() < deadline, "the relay child never listened"
        time.sleep(0.1)
    assert receive(notify_socket, 1.0) is None
    coordinator.terminate()
    assert coordinator.wait(10) == 0
    stopping = receive(notify_socket, 5)
    assert stopping == (coordinator.pid, "STOPPING=1")


def _answers_tcp(host: Host, port: int) -> bool:
    with host.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.needs_lab()
@pytest.mark.time_limit(30)
def test_relay_is_ready_once_it_listens(
    host: Host, notify_socket: socket.socket, tmp_path: Path
) -> None:
    members = tmp_path / "members.json"
    members.write_text('{"members": []}')
    log = tmp_path / "stderr"
    relay = start(
        host,
        notify_socket,
        log,
        find_executable(),
        "relay",
        "serve",
        "--members",
        str(members),
        "--state",
        str(tmp_path / "relay"),
        "--listen",
        "127.0.0.1",
    )
    text = wait_ready(notify_socket, relay, log)
    assert "STATUS=UDP port 3478, TCP port 443" in text
    assert _answers_tcp(host, 443)
    relay.terminate()
    assert relay.wait(10) == 0
    assert receive(notify_socket, 5) == (relay.pid, "STOPPING=1")


@pytest.mark.needs_lab()
@pytest.mark.time_limit(30)
def test_up_is_ready_once_the_interface_is_configured(
    host: Host, notify_socket: socket.socket, tmp_path: Path
) -> None:
    name = f"{PREFIX}1"
    config = tmp_path / f"{name}.conf"
    config.write_text(
        f"[Interface]\nPrivateKey = {PrivateKey.generate().to_base64()}\n"
        "Address = 198.18.7.1/24\nListenPort = 51820\n"
    )
    log = tmp_path / "stderr"
    up = start(host, notify_socket, log, find_executable(), "up", str(config))
    text = wait_ready(notify_socket, up, log)
    assert f"STATUS={name} is up, UDP port 51820" in text
    assert "198.18.7.1/24" in host.run("ip", "-o", "address", "show", "dev", name).stdout
    assert "listen_port=51820" in uapi_client.get(name)
    up.terminate()
    assert up.wait(10) == 0
    stopping = receive(notify_socket, 5)
    assert stopping is not None and stopping[1].startswith("STOPPING=1")
