"""The home relay's tests' pieces: a relay on a thread, and synthetic nodes that speak to it.

- :class:`RelayThread` runs a `pywg.mesh.relayserver.Relay` on its own uvloop
  loop on a thread (on 127.0.0.1, ports the kernel picks); `call` runs a
  function on that loop and returns its result, `stats` reads the counters.
- :class:`Node` is one member: WireGuard key, control key, node id.
- :class:`UdpNode` plays a node's WireGuard socket: associations (signed STUN
  Binding requests) and tagged datagrams.
- :class:`TcpNode` plays a node (or anything else) on the TCP port: TLS
  without verification, the HTTP upgrade, the hello, frames; every step is
  its own method so a test can stop after any of them.

Everything blocks with a timeout; nothing waits unbounded.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import uvloop
from nacl.signing import SigningKey

from pywg import stun
from pywg.mesh import relayproto as rp
from pywg.mesh import wire
from pywg.mesh.relayserver import Member, Relay, RelayConfig

T = TypeVar("T")
TIMEOUT = 5.0


def wg(kind: int, size: int) -> bytes:
    """An untagged WireGuard-shaped message: type, three zero bytes, random rest."""
    return bytes([kind, 0, 0, 0]) + os.urandom(size - 4)


@dataclass(frozen=True)
class Node:
    wg_key: bytes
    control: SigningKey
    node_id: int

    @classmethod
    def make(cls, node_id: int) -> Node:
        return cls(os.urandom(32), SigningKey.generate(), node_id)

    @property
    def member(self) -> Member:
        return Member(self.wg_key, bytes(self.control.verify_key), self.node_id)


class RelayThread:
    """A Relay on a thread of its own; `close` stops it (also on a failed start)."""

    def __init__(self, config: RelayConfig) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.relay = Relay(config)
        try:
            asyncio.run_coroutine_threadsafe(self.relay.start(), self.loop).result(TIMEOUT)
        except BaseException:
            self.close()
            raise

    @property
    def key(self) -> bytes:
        return self.relay.key

    @property
    def udp(self) -> tuple[str, int]:
        return ("127.0.0.1", self.relay.udp_port)

    @property
    def tcp_port(self) -> int:
        return self.relay.tcp_port

    def call(self, function: Callable[[], T]) -> T:
        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(TIMEOUT)

    def stats(self) -> dict[str, int]:
        return self.call(self.relay.stats)

    def wait_stat(self, name: str, at_least: int = 1, deadline: float = TIMEOUT) -> int:
        """The counter `name` once it reaches `at_least` (AssertionError after `deadline`)."""
        end = time.monotonic() + deadline
        while True:
            value = self.stats().get(name, 0)
            if value >= at_least or time.monotonic() > end:
                assert value >= at_least, f"{name} = {value}, expected >= {at_least}"
                return value
            time.sleep(0.02)

    def close(self) -> None:
        if self.loop.is_running():
            self.call(self.relay.close)
            time.sleep(0.05)  # the transports' connection_lost callbacks
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        if not self.loop.is_running():
            self.loop.close()


class UdpNode:
    """A node's WireGuard socket toward a relay's UDP port."""

    def __init__(self, node: Node, relay: RelayThread) -> None:
        self.node = node
        self.relay = relay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)

    def association(self, time_ms: int | None = None, relay_key: bytes | None = None) -> bytes:
        """An association request (not sent)."""
        return wire.association_request(
            stun.new_transaction_id(),
            self.node.wg_key,
            self.node.control,
            relay_key if relay_key is not None else self.relay.key,
            int(time.time() * 1000) if time_ms is None else time_ms,
        )

    def associate(self) -> int:
        """Associate and return the node id in the relay's answer."""
        self.sock.sendto(self.association(), self.relay.udp)
        response = stun.parse_binding_response(self.recv())
        assert response.mapped == self.sock.getsockname()
        node_id = wire.answered_node_id(response)
        assert node_id is not None
        return node_id

    def send(self, destination: int, message: bytes) -> None:
        self.sock.sendto(rp.tag(message, destination), self.relay.udp)

    def recv(self, timeout: float = TIMEOUT) -> bytes:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(70000)
        return data

    def nothing(self, wait: float = 0.3) -> bool:
        """Whether nothing arrives within `wait` seconds."""
        try:
            self.recv(wait)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


class TcpNode:
    """A client of a relay's TCP port, one step at a time."""

    def __init__(self, port: int, *, tls: bool = True, host: str = "127.0.0.1") -> None:
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock: socket.socket = raw
        self.binding = b""
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.sock = context.wrap_socket(raw, server_hostname="relay.test")
            der = self.sock.getpeercert(binary_form=True)
            assert der is not None
            self.binding = rp.certificate_binding(der)
        self.decoder = rp.FrameDecoder()
        self.frames: list[rp.Frame] = []
        self.rest = b""

    def upgrade(self, host: str = "relay.test") -> None:
        self.sock.sendall(rp.upgrade_request(host))
        head = self.read_head()
        rp.parse_upgrade_response(head)
        self.frames += self.decoder.feed(self.rest)

    def read_head(self) -> bytes:
        buffer = b""
        while (split := rp.split_head(buffer)) is None:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError(f"closed after {buffer!r}")
            buffer += data
        head, self.rest = split  # a body, or the first frames
        return head

    def read_frame(self, timeout: float = TIMEOUT) -> rp.Frame:
        self.sock.settimeout(timeout)
        while not self.frames:
            data = self.sock.recv(70000)
            if not data:
                raise EOFError("the relay closed the connection")
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    def read_datagram(self, timeout: float = TIMEOUT) -> bytes:
        """The next DATAGRAM's message (PINGs skipped)."""
        while True:
            kind, payload = self.read_frame(timeout)
            if kind == rp.FrameType.DATAGRAM:
                return payload
            assert kind in (rp.FrameType.PING, rp.FrameType.PONG), kind

    def challenge(self) -> rp.Challenge:
        kind, payload = self.read_frame()
        assert kind == rp.FrameType.CHALLENGE
        return rp.Challenge.parse(payload)

    def hello(self, node: Node, relay_key: bytes, control: SigningKey | None = None) -> rp.Frame:
        """Send a HELLO for `node` (signed by `control`, default its own); the answer frame."""
        challenge = self.challenge()
        assert challenge.relay_key == relay_key and challenge.version == rp.PROTOCOL_VERSION
        signer = control if control is not None else node.control
        hello = rp.node_hello(node.wg_key, signer, challenge, self.binding)
        self.send_frame(rp.FrameType.HELLO, hello.encode())
        answer = self.read_frame()
        if answer.kind == rp.FrameType.OK:
            ok = rp.Ok.parse(answer.payload)
            assert ok.verify(relay_key, hello) and ok.node_id == node.node_id
        return answer

    def connect(self, node: Node, relay_key: bytes) -> TcpNode:
        self.upgrade()
        answer = self.hello(node, relay_key)
        assert answer.kind == rp.FrameType.OK, answer
        return self

    def send_frame(self, kind: int, payload: bytes) -> None:
        self.sock.sendall(rp.encode_frame(kind, payload))

    def send(self, destination: int, message: bytes) -> None:
        self.send_frame(rp.FrameType.DATAGRAM, rp.tag(message, destination))

    def closed_within(self, seconds: float) -> bool:
        """Whether the relay closes the connection within `seconds` (reading all it sends)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except (ConnectionError, ssl.SSLError):
                return True
        return False

    def close(self) -> None:
        self.sock.close()
