"""A client for the UAPI socket of any userspace WireGuard (pywgd, wireguard-go, ...).

`interfaces()` lists /var/run/wireguard/*.sock as `wg` does; `request()` sends
one request and returns the reply text up to and including the `errno=` line;
`get()` and `set_()` are the two operations.
"""

from __future__ import annotations

import os
import socket
from typing import Final

SOCKET_DIR: Final = "/var/run/wireguard"
TIMEOUT: Final = 5.0
MAX_REPLY: Final = 16 << 20


class UapiClientError(OSError):
    """The socket could not be reached, or the reply was not a UAPI reply."""


def interfaces(directory: str = SOCKET_DIR) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except PermissionError:
        raise UapiClientError(f"cannot read {directory}: run as root") from None
    return sorted(n[: -len(".sock")] for n in names if n.endswith(".sock"))


def request(name: str, text: str, *, directory: str = SOCKET_DIR) -> str:
    path = os.path.join(directory, f"{name}.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise UapiClientError(f"no such interface: {name} (no {path})") from None
        except PermissionError:
            raise UapiClientError(f"cannot connect to {path}: run as root") from None
        except OSError as exc:
            raise UapiClientError(f"cannot connect to {path}: {exc.strerror}") from None
        sock.sendall(text.encode())
        reply = b""
        while not (reply.startswith(b"errno=") or b"\nerrno=" in reply) or not reply.endswith(
            b"\n\n"
        ):
            chunk = sock.recv(65536)
            if not chunk:
                raise UapiClientError(f"{name}: the daemon closed the connection mid-reply")
            reply += chunk
            if len(reply) > MAX_REPLY:
                raise UapiClientError(f"{name}: reply too long")
    return reply.decode()


def errno_of(reply: str) -> int:
    for line in reversed(reply.splitlines()):
        if line.startswith("errno="):
            return int(line[len("errno=") :])
    raise UapiClientError("no errno in reply")


def get(name: str, *, directory: str = SOCKET_DIR) -> str:
    return request(name, "get=1\n\n", directory=directory)


def set_(name: str, body: str, *, directory: str = SOCKET_DIR) -> int:
    """Send `set=1` with the body lines (`key=value\\n`...); returns the errno (0 = done)."""
    text = body if body.startswith("set=1\n") else "set=1\n" + body
    if not text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n\n"
    return errno_of(request(name, text, directory=directory))
