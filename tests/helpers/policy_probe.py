"""TCP and UDP echo services in a lab host, and probes of them from another host.

Test-only helpers of tests/mesh/test_mesh_policy.py (the access policy, end
to end). Every socket is made in its host's namespace (`Host.socket`) by this
process, so a probe costs no process start; the services answer on IPv4 and
IPv6 alike (one dual-stack socket a port). `expect` runs many probes at once
and names every one whose outcome differs from the one expected.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from pywg.lab import Host

PROBE_TIMEOUT = 1.0  # seconds a probe waits: the lab's round trips take milliseconds


def _dual_stack(host: Host, kind: int, port: int) -> socket.socket:
    sock = host.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    return sock


class EchoServices:
    """TCP and UDP echo on `tcp` and `udp` ports of `host`, until `close`."""

    def __init__(self, host: Host, *, tcp: Iterable[int] = (), udp: Iterable[int] = ()) -> None:
        self.sockets: list[socket.socket] = []
        for port in tcp:
            listener = _dual_stack(host, socket.SOCK_STREAM, port)
            listener.listen(16)
            self._thread(self._accept, listener)
        for port in udp:
            self._thread(self._datagrams, _dual_stack(host, socket.SOCK_DGRAM, port))

    def _thread(self, body: Callable[[socket.socket], None], sock: socket.socket) -> None:
        self.sockets.append(sock)
        threading.Thread(target=body, args=(sock,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                self._thread(self._echo, conn)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    @staticmethod
    def _datagrams(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data, source = sock.recvfrom(4096)
                if source is None:  # shut down
                    return
                sock.sendto(data, source)

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def tcp_echo(host: Host, address: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection from `host` to address:port opens and echoes."""
    with host.socket(_family(address), socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
            sock.sendall(b"policy")
            return sock.recv(16) == b"policy"
        except OSError:
            return False


def udp_echo(host: Host, address: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a datagram from `host` to address:port comes back."""
    with host.socket(_family(address), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(b"policy", (address, port))
            return sock.recv(16) == b"policy"
        except OSError:
            return False


class HeldConnection:
    """One TCP connection to an echo service, kept open across changes."""

    def __init__(self, host: Host, address: str, port: int) -> None:
        self.sock = host.socket(_family(address), socket.SOCK_STREAM)
        self.sock.settimeout(PROBE_TIMEOUT)
        self.sock.connect((address, port))

    def echoes(self, data: bytes = b"still here") -> bool:
        try:
            self.sock.sendall(data)
            got = b""
            while len(got) < len(data):
                more = self.sock.recv(len(data) - len(got))
                if not more:
                    return False
                got += more
            return got == data
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


Probe = tuple[str, Callable[[], bool], bool]  # what, the probe, whether it should pass


def expect(probes: Iterable[Probe]) -> list[str]:
    """Run `probes` at once; the description of each whose outcome was not the expected."""
    probes = list(probes)
    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
        outcomes = list(pool.map(lambda probe: probe[1](), probes))
    return [
        f"{what}: {'passed' if got else 'dropped'}, expected {'pass' if want else 'drop'}"
        for (what, _, want), got in zip(probes, outcomes, strict=True)
        if got != want
    ]
