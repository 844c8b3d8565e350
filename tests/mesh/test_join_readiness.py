"""`pywg join` under a ``Type=notify`` unit: READY=1 from the node once its interface is up.

The node runs in a MeshLab site with NOTIFY_SOCKET naming a datagram socket
this test binds (a path, reachable from every namespace); SO_PASSCRED names
the sender, which must be the `pywg join` process itself (``NotifyAccess=main``).
At READY=1 the interface already has the tunnel addresses the coordinator gave.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from pywg.lab.mesh import MeshLab

pytestmark = pytest.mark.needs_lab("nft")

PREFIX = "pwjrd"
UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid (unix(7))


def receive(sock: socket.socket, timeout: float) -> tuple[int, str] | None:
    sock.settimeout(timeout)
    try:
        data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
    except TimeoutError:
        return None
    (pid,) = (UCRED.unpack(bytes(payload[: UCRED.size]))[0] for _, _, payload in ancillary)
    return pid, data.decode()


@pytest.mark.time_limit(30)
def test_join_is_ready_once_its_interface_is_up(
    mesh_lab: Callable[..., MeshLab], tmp_path: Path
) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(path)
        mesh = mesh_lab(tls=False, node_env={"NOTIFY_SOCKET": path})
        node = mesh.node("a", mesh.net.public("a"))
        assert node.proc is not None
        message = receive(sock, 20)
        assert message is not None, node.log_text()
        pid, text = message
        assert pid == node.proc.pid
        assert text == f"READY=1\nSTATUS={node.ifname} is up"
        assert len(node.addresses()) == 2  # IPv4 and IPv6 from the coordinator
        mesh.stop(node)
        assert receive(sock, 5) == (pid, "STOPPING=1")
