"""The home relay at 1,000 nodes and under floods: memory, file descriptors, CPU, throughput.

    sudo python3 benches/relay_load.py [--only scale,udp,preauth,nonreader,forged]
        [--nodes 1000] [--tcp-share 0.15] [--workers 3] [--seconds 3]
        [--tcp-burst 512] [--flood-rate 20000] [--flood-seconds 0] [--json]

One lab (pywg.lab, IPv4): an internet router; a public host "hub" running a
real `pywg relay serve` process with a members file of every node below
(real X25519 and Ed25519 keys); public hosts "a" and "b", each running two
`pywg.asyncio.Tunnel` processes (the C plane): one holds the other node at
its relayed endpoint [100::ID]:1 with a `RelayLink` associated with the relay
(over UDP), one holds it at its underlay address (direct); a public host
"swarm" with 250 more addresses; a public host "flood" with 40 more.

scale: the talking pair moves iperf3 TCP one stream each way (`--seconds`
each), direct and through the relay with no other node; then `--nodes`
simulated nodes associate, spread over `--workers` processes on "swarm" and
over its addresses (a few per address, as nodes behind their own NATs):
each has its own UDP socket and does the real signed association
(`pywg.mesh.wire`), refreshed every REFRESH_INTERVAL; `--tcp-share` of them
connect over TCP instead, with the real TLS, HTTP upgrade, HELLO and signed
OK (checked), and keep their connection with PINGs. With all of them
associated the pair moves iperf3 again; then every TCP node sends
`--tcp-burst` KiB of datagrams at once (for an id that is nobody's: the
relay reads and drops them), as a node that carries traffic does. Reported:
the relay's VmRSS, VmHWM (/proc/PID/status) and open fds (/proc/PID/fd)
with no node, with all of them (per node) and after the bursts (per TCP
node); the pair's throughput with them, with none, and direct (all in this
run); the relay's CPU (utime + stime, /proc/PID/stat) as a share of one
core over each transfer.

Floods, one after the other, against the same relay with the nodes still
associated, the pair's iperf3 running during each (both ways, `--seconds`
each), the flood starting a second before it and lasting at least
`--flood-seconds`:

- udp: from the 40 addresses of "flood", paced at `--flood-rate` datagrams
  per second (benches/flood.py's sendmmsg flooder): association requests for
  members' keys with forged signatures and fresh times (each costs a
  signature check once past the per-source bucket), plain Binding requests
  (answered within the bucket), tagged WireGuard messages for the pair's
  ids and others from unassociated sources, garbage;
- preauth: TCP connections from the 40 addresses, as many as each may hold
  (more than the relay allows: it refuses the rest at accept), each reopened
  when the relay closes it: a quarter never start TLS, a quarter send a
  ClientHello and stop, a quarter finish TLS and send nothing, a quarter
  finish the HTTP upgrade and never send HELLO;
- nonreader: a member connects over TCP with a 4 KiB receive buffer,
  authenticates and never reads; two members associated over UDP send it
  1,400-byte datagrams at `--flood-rate` per second; it reconnects when the
  relay closes it;
- forged: a member connected over TCP sends `--flood-rate` forged frames per
  second: DATAGRAMs with malformed messages or for ids that are nobody's,
  frames of unknown types, set-up and relay-link frames out of place, PINGs
  of the wrong size; every two seconds a frame header over the size limit
  (the relay closes the connection; it reconnects).

For each flood: the relay's VmRSS before, at its peak during, at the flood's
end and 6 s after (the handshake deadline past), each second (JSON), its
growth over the flood's second half, its CPU, the pair's throughput as a share of the
unflooded run with the nodes associated, what the flooders saw (sent,
answered, connections held and how they ended) and whether every simulated
node stayed associated. A flood paced at `--flood-rate` (0: as fast as one
process can) measures what the relay spends per unwanted datagram or
connection rather than which process wins this machine's CPUs.

Each part of the relay, the tunnels, iperf3, the simulated nodes and the
flooders share this machine's CPUs: the figures are for this lab. The
default run takes about 2-3 minutes. Needs root, iproute2 and iperf3.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from flood import Flooder, cpu_seconds, rss_kib
from pywg import stun
from pywg.keys import PrivateKey
from pywg.lab import Host, Internet, Lab, LabError, require_root
from pywg.lab.relay import read_line
from pywg.mesh import relayproto as rp
from pywg.mesh import wire
from pywg.mesh.tls import dialer_context
from relay import iperf

UDP_PORT, TCP_PORT = 3478, 8443
PAIR_IDS = {"a": 0x0A0001, "b": 0x0B0002}
RELAYED = {"a": "198.19.9.1", "b": "198.19.9.2"}  # tunnel addresses of the relayed pair
DIRECT = {"a": "198.19.10.1", "b": "198.19.10.2"}  # ... of the direct pair
DIRECT_PORT = 51821
SWARM_BASE = 0x100000  # simulated nodes' ids: SWARM_BASE + 1 ...
ROLES = {"nonreader": 0x200001, "forger": 0x200002, "sender1": 0x200003, "sender2": 0x200004}
SWARM_ADDRESSES = 250  # more addresses on "swarm": .3 ...
FLOOD_ADDRESSES = 40  # more addresses on "flood"
FLOODS = ("udp", "preauth", "nonreader", "forged")
SCENARIOS = ("scale", *FLOODS)
SETTLE = 6.0  # seconds after a flood before "after" (> the handshake deadline and a sweep)
START_TIMEOUT = 30.0
SAMPLE_EVERY = 0.1  # seconds between RSS samples
SENDER_SIZE = 1400  # bytes of a datagram sent to the non-reader
PREAUTH_PER_SOURCE = 20  # connections a preauth flooder keeps open per address (the limit is 16)
HOSTNAME = "pywg-relay"
NOBODY = 0x3FFFFF  # a node id no member has
NOBODY_FRAME = rp.encode_frame(
    rp.FrameType.DATAGRAM, rp.tag(bytes([4, 0, 0, 0]) + bytes(SENDER_SIZE - 4), NOBODY)
)


# -- identities -------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Identity:
    """A member: node id, WireGuard key pair (X25519), control key (Ed25519) seed."""

    node_id: int
    private: str  # the WireGuard private key, base64
    seed: str  # the control key's seed, hex

    @classmethod
    def make(cls, node_id: int) -> Identity:
        return cls(node_id, str(PrivateKey.generate()), bytes(SigningKey.generate()).hex())

    @property
    def wg_key(self) -> bytes:
        return bytes(PrivateKey.from_base64(self.private).public_key)

    @property
    def control(self) -> SigningKey:
        return SigningKey(bytes.fromhex(self.seed))

    def member(self) -> dict[str, Any]:
        return {
            "public_key": b64(self.wg_key),
            "control_key": b64(bytes(self.control.verify_key)),
            "node_id": self.node_id,
        }


@dataclass(frozen=True)
class RelayAddress:
    host: str
    key: bytes  # the relay key
    udp: int = UDP_PORT
    tcp: int = TCP_PORT

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "key": b64(self.key), "udp": self.udp, "tcp": self.tcp}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RelayAddress:
        return cls(data["host"], base64.b64decode(data["key"]), data["udp"], data["tcp"])


# -- /proc ------------------------------------------------------------------------------------


def status_kib(pid: int, field_name: str) -> int:
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise LabError(f"no {field_name} for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    """The relay's VmRSS every SAMPLE_EVERY seconds on a thread, from start to `stop`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, LabError):
                self.samples.append((time.monotonic(), rss_kib(self.pid)))
            self._stop.wait(SAMPLE_EVERY)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


# -- the relay protocol, a client's side (for the worker processes) ------------------------------


class Session:
    """An authenticated TCP connection to the relay (TLS, upgrade, CHALLENGE, HELLO, OK)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = rp.FrameDecoder()
        self.pending: list[rp.Frame] = []

    @classmethod
    async def open(
        cls, relay: RelayAddress, who: Identity, source: str, rcvbuf: int = 0
    ) -> Session:
        reader, writer = await tls_connect(relay, source, rcvbuf)
        try:
            session = cls(reader, writer)
            await session._authenticate(relay, who)
        except BaseException:
            writer.close()
            raise
        return session

    async def _authenticate(self, relay: RelayAddress, who: Identity) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        binding = rp.certificate_binding(ssl_object.getpeercert(binary_form=True))
        await upgrade(self.reader, self.writer, self.pending, self.decoder)
        kind, payload = await self.next()
        challenge = rp.Challenge.parse(payload)
        if kind != rp.FrameType.CHALLENGE or challenge.relay_key != relay.key:
            raise rp.RelayProtocolError("no CHALLENGE from the expected relay")
        hello = rp.node_hello(who.wg_key, who.control, challenge, binding)
        self.send(rp.FrameType.HELLO, hello.encode())
        kind, payload = await self.next()
        if kind != rp.FrameType.OK:
            raise rp.RelayProtocolError(f"refused: frame {kind}")
        ok = rp.Ok.parse(payload)
        if ok.node_id != who.node_id or not ok.verify(relay.key, hello):
            raise rp.RelayProtocolError("the OK is not the relay's for this node")

    async def next(self) -> rp.Frame:
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise EOFError("the relay closed the connection")
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def send(self, kind: int, payload: bytes) -> None:
        self.writer.write(rp.encode_frame(kind, payload))

    async def keep(self) -> None:
        """Answer PINGs and send one every KEEPALIVE_INTERVAL, until the relay closes."""

        async def pings() -> None:
            while True:
                await asyncio.sleep(rp.KEEPALIVE_INTERVAL * random.uniform(0.8, 1.0))
                self.send(rp.FrameType.PING, os.urandom(rp.PING_SIZE))

        task = asyncio.create_task(pings())
        try:
            while True:
                kind, payload = await self.next()
                if kind == rp.FrameType.PING:
                    self.send(rp.FrameType.PONG, payload)
                elif kind == rp.FrameType.CLOSE:
                    return
        finally:
            task.cancel()
            self.writer.close()


async def tls_connect(
    relay: RelayAddress, source: str, rcvbuf: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP from `source` (with a small receive buffer when `rcvbuf`), then TLS."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (relay.host, relay.tcp))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(
        sock=sock, ssl=dialer_context(), server_hostname=HOSTNAME, ssl_handshake_timeout=10
    )


async def upgrade(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pending: list[rp.Frame],
    decoder: rp.FrameDecoder,
) -> None:
    """The HTTP upgrade; frames that came with the 101 go to `pending`."""
    writer.write(rp.upgrade_request(HOSTNAME))
    buffer = b""
    while (split := rp.split_head(buffer)) is None:
        data = await reader.read(4096)
        if not data:
            raise EOFError("closed during the upgrade")
        buffer += data
    head, rest = split
    rp.parse_upgrade_response(head)
    pending += decoder.feed(rest)


class UdpNode(asyncio.DatagramProtocol):
    """A node's WireGuard socket: signed associations with the relay, refreshed."""

    def __init__(self, relay: RelayAddress, who: Identity, counts: Counter[str]) -> None:
        self.relay, self.who, self.counts = relay, who, counts
        self.control, self.wg_key = who.control, who.wg_key
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: tuple[bytes, asyncio.Future[None]] | None = None
        self.last_ms = 0
        self.answered = float("-inf")  # monotonic time of the last answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.waiting is None:
            return
        try:
            response = stun.parse_binding_response(data)
        except stun.StunError:
            return
        tid, done = self.waiting
        if response.transaction_id != tid:
            return
        if wire.answered_node_id(response) != self.who.node_id:
            self.counts["udp_wrong_answer"] += 1
            return
        self.waiting = None
        self.answered = time.monotonic()
        if not done.done():
            done.set_result(None)

    async def associate(self, attempts: int = 3, timeout: float = 2.0) -> bool:
        assert self.transport is not None
        for _ in range(attempts):
            tid = stun.new_transaction_id()
            self.last_ms = max(self.last_ms + 1, int(time.time() * 1000))
            request = wire.association_request(
                tid, self.wg_key, self.control, self.relay.key, self.last_ms
            )
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiting = (tid, done)
            self.transport.sendto(request, (self.relay.host, self.relay.udp))
            self.counts["udp_requests"] += 1
            try:
                await asyncio.wait_for(done, timeout)
            except TimeoutError:
                self.counts["udp_unanswered"] += 1
                continue
            self.counts["udp_answers"] += 1
            return True
        return False

    async def keep(self) -> None:
        """Associate now and every REFRESH_INTERVAL."""
        while True:
            await self.associate()
            await asyncio.sleep(rp.REFRESH_INTERVAL * random.uniform(0.9, 1.0))

    def associated(self) -> bool:
        return time.monotonic() - self.answered < rp.ASSOCIATION_TTL


async def udp_node(
    relay: RelayAddress, who: Identity, source: str, counts: Counter[str]
) -> UdpNode:
    loop = asyncio.get_running_loop()
    _, node = await loop.create_datagram_endpoint(
        lambda: UdpNode(relay, who, counts), local_addr=(source, 0)
    )
    return node


async def commands(on_status: Any, actions: dict[str, Any] | None = None) -> None:
    """Answer "status" on stdin with a JSON line, and "NAME ARG" for an action (a coroutine
    function of ARG) once it is done; return at "stop" or the end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        name, _, arg = (await reader.readline()).decode().strip().partition(" ")
        if actions is not None and name in actions:
            await actions[name](arg)
        elif name not in ("status", "stop", ""):
            continue
        print(json.dumps(on_status()), flush=True)
        if name in ("stop", ""):
            return


async def paced(rate: float, batch: int, send: Any) -> None:
    """Call `send()` (which sends `batch` things) at `rate` things a second (0: flat out)."""
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    while True:
        send()
        sent += batch
        await asyncio.sleep(max(0.0, start + sent / rate - loop.time()) if rate else 0)


# -- worker roles (each a process in a lab host: relay_load.py --worker ROLE CONFIG) -------------


async def swarm_worker(cfg: dict[str, Any]) -> None:
    """Simulated nodes: UDP associations kept fresh, TCP sessions kept alive."""
    relay = RelayAddress.from_json(cfg["relay"])
    counts: Counter[str] = Counter()
    udp: list[UdpNode] = []
    tasks = []
    tcp_up: dict[int, Session] = {}

    async def tcp_node(who: Identity, source: str) -> None:
        while True:
            try:
                session = await Session.open(relay, who, source)
            except (OSError, ssl.SSLError, EOFError, TimeoutError, rp.RelayProtocolError):
                counts["tcp_failed"] += 1
                await asyncio.sleep(1.0)
                continue
            counts["tcp_connects"] += 1
            tcp_up[who.node_id] = session
            with contextlib.suppress(OSError, ssl.SSLError, EOFError, rp.RelayProtocolError):
                await session.keep()
            tcp_up.pop(who.node_id, None)
            counts["tcp_lost"] += 1
            await asyncio.sleep(1.0)

    for spec in cfg["nodes"]:
        who = Identity(**spec["who"])
        if spec["tcp"]:
            tasks.append(asyncio.create_task(tcp_node(who, spec["source"])))
        else:
            node = await udp_node(relay, who, spec["source"], counts)
            udp.append(node)
            tasks.append(asyncio.create_task(node.keep()))

    def status() -> dict[str, Any]:
        return {
            "udp_associated": sum(node.associated() for node in udp),
            "tcp_up": len(tcp_up),
            **counts,
        }

    async def burst(kib: str) -> None:
        """Every TCP node sends KIB KiB of datagrams (for an id that is nobody's) at once."""
        frames = NOBODY_FRAME * (int(kib) * 1024 // len(NOBODY_FRAME))
        sessions = list(tcp_up.values())
        for session in sessions:
            session.writer.write(frames)
        with contextlib.suppress(OSError, ssl.SSLError):
            await asyncio.gather(*(session.writer.drain() for session in sessions))
        counts["burst_kib"] += int(kib) * len(sessions)

    await commands(status, {"burst": burst})


async def node_worker(cfg: dict[str, Any]) -> None:
    """One of the talking pair: a Tunnel, relayed (with a RelayLink) or direct."""
    from pywg import relayed
    from pywg.asyncio.tunnel import Tunnel
    from pywg.events import HandshakeCompleted
    from pywg.mesh.relayclient import NodeIdentity, RelayLink
    from pywg.mesh.schema import HomeRelay

    who, peer = Identity(**cfg["who"]), Identity(**cfg["peer"])
    key = PrivateKey.from_base64(who.private)
    async with Tunnel(cfg["ifname"], private_key=key, listen_port=cfg["port"]) as tunnel:
        subprocess.run(["ip", "addr", "add", cfg["addr"] + "/24", "dev", cfg["ifname"]], check=True)
        subprocess.run(["ip", "link", "set", cfg["ifname"], "up"], check=True)
        link = None
        if cfg["relay"] is not None:
            relay = RelayAddress.from_json(cfg["relay"])
            home = HomeRelay(1, "hub", relay.key, relay.host, relay.udp, relay.tcp)
            link = RelayLink(tunnel, NodeIdentity(who.wg_key, who.control), home)
            await link.start()
            if not await link.wait_transport("udp", START_TIMEOUT):
                raise SystemExit(f"the relay link did not come up: {link.last_error}")
            endpoint: Any = relayed.endpoint(1, peer.node_id)
        else:
            endpoint = (cfg["peer_host"], cfg["port"])
        tunnel.add_peer(
            str(PrivateKey.from_base64(peer.private).public_key),
            [cfg["peer_addr"] + "/32"],
            endpoint,
            persistent_keepalive=1,
        )
        while not isinstance(await tunnel.next_event(), HandshakeCompleted):
            pass
        print(json.dumps({"up": True}), flush=True)

        def status() -> dict[str, Any]:
            if link is None:
                return {}
            return {"transport": link.transport, **link.counters()}

        drain = asyncio.create_task(_drain_events(tunnel))
        await commands(status)
        drain.cancel()
        if link is not None:
            link.close()


async def _drain_events(tunnel: Any) -> None:
    while True:
        await tunnel.next_event()


def client_hello() -> bytes:
    """A TLS ClientHello (the first flight of a client that will go no further)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = dialer_context().wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def preauth_worker(cfg: dict[str, Any]) -> None:
    """TCP connections that never authenticate, held until the relay closes them."""
    relay = RelayAddress.from_json(cfg["relay"])
    hello = client_hello()
    counts: Counter[str] = Counter()
    held: set[object] = set()
    peak = [0]

    async def one(source: str, mode: str) -> None:
        token = object()
        start = time.monotonic()
        try:
            if mode in ("tcp", "clienthello"):
                reader, writer = await asyncio.open_connection(
                    relay.host, relay.tcp, local_addr=(source, 0)
                )
                if mode == "clienthello":
                    writer.write(hello)
            else:
                reader, writer = await tls_connect(relay, source)
                if mode == "upgrade":
                    await upgrade(reader, writer, [], rp.FrameDecoder())
            held.add(token)
            peak[0] = max(peak[0], len(held))
            while await reader.read(65536):
                pass
            writer.close()
        except (OSError, ssl.SSLError, EOFError, TimeoutError, rp.RelayProtocolError):
            pass
        held.discard(token)
        lasted = time.monotonic() - start
        counts[f"{mode}_closed_" + ("at_once" if lasted < 1.0 else "later")] += 1

    async def source_loop(source: str, index: int) -> None:
        modes = ("tcp", "clienthello", "tls", "upgrade")
        running: set[asyncio.Task[None]] = set()
        n = index
        while True:
            while len(running) < PREAUTH_PER_SOURCE:
                task = asyncio.create_task(one(source, modes[n % len(modes)]))
                running.add(task)
                task.add_done_callback(running.discard)
                counts["opened"] += 1
                n += 1
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(source_loop(s, i)) for i, s in enumerate(cfg["sources"])]

    def status() -> dict[str, Any]:
        return {"held": len(held), "peak_held": peak[0], **counts}

    await commands(status)
    for task in tasks:
        task.cancel()


async def nonreader_worker(cfg: dict[str, Any]) -> None:
    """A member on TCP that never reads, and two on UDP sending to it at `rate`."""
    relay = RelayAddress.from_json(cfg["relay"])
    counts: Counter[str] = Counter()
    who, target = Identity(**cfg["nonreader"]), cfg["nonreader"]["node_id"]

    async def never_read() -> None:
        while True:
            try:
                session = await Session.open(relay, who, cfg["sources"][0], rcvbuf=4096)
            except (OSError, ssl.SSLError, EOFError, TimeoutError, rp.RelayProtocolError):
                counts["nonreader_failed"] += 1
                await asyncio.sleep(0.5)
                continue
            counts["nonreader_connects"] += 1
            while not session.writer.is_closing():  # a PING now and then notices the relay's RST
                await asyncio.sleep(0.2)
                session.send(rp.FrameType.PING, os.urandom(rp.PING_SIZE))
            counts["nonreader_closed_by_relay"] += 1

    senders = []
    for name, source in zip(("sender1", "sender2"), cfg["sources"][1:], strict=False):
        node = await udp_node(relay, Identity(**cfg[name]), source, counts)
        if not await node.associate():
            raise SystemExit(f"{name} could not associate")
        senders.append(node)
    reader_task = asyncio.create_task(never_read())
    message = rp.tag(bytes([4, 0, 0, 0]) + os.urandom(SENDER_SIZE - 4), target)
    batch = 32

    def send() -> None:
        for node in senders:
            assert node.transport is not None
            for _ in range(batch // len(senders)):
                node.transport.sendto(message, (relay.host, relay.udp))
        counts["sent"] += batch

    sending = asyncio.create_task(paced(cfg["rate"], batch, send))
    await commands(lambda: dict(counts))
    sending.cancel()
    reader_task.cancel()


def forged_frames(rng: random.Random, count: int = 256) -> list[bytes]:
    """Frames an authenticated node may send but the relay must drop or skip."""
    kinds = [k for k in range(256) if k not in set(rp.FrameType)]
    out = []
    for i in range(count):
        pick = i % 6
        if pick == 0:  # a message no WireGuard message could be: wrong type or size
            kind = rng.choice([0, 5, 9, 200, 1, 2, 3])
            size = {1: 100, 2: 60, 3: 70}.get(kind, rng.randrange(4, 1400))
            message = bytes([kind]) + rng.randbytes(3) + rng.randbytes(size - 4)
            out.append(rp.encode_frame(rp.FrameType.DATAGRAM, message))
        elif pick == 1:  # for ids that are nobody's (the members are below 0x300000)
            message = bytes([4]) + rng.randrange(0x300000, 0xFFFFFF).to_bytes(3, "big")
            out.append(rp.encode_frame(rp.FrameType.DATAGRAM, message + rng.randbytes(200)))
        elif pick == 2:  # types no version knows
            out.append(rp.encode_frame(rng.choice(kinds), rng.randbytes(rng.randrange(0, 1400))))
        elif pick == 3:  # set-up frames out of place
            kind = rng.choice([rp.FrameType.HELLO, rp.FrameType.PEER_HELLO, rp.FrameType.OK])
            out.append(rp.encode_frame(kind, rng.randbytes(97)))
        elif pick == 4:  # relay-link frames from a node
            kind = rng.choice([rp.FrameType.PRESENT, rp.FrameType.ABSENT, rp.FrameType.FORWARD])
            out.append(rp.encode_frame(kind, rng.randbytes(3 * rng.randrange(1, 300))))
        else:  # PING, PONG of the wrong size, CHALLENGE from a node
            kind = rng.choice([rp.FrameType.PING, rp.FrameType.PONG, rp.FrameType.CHALLENGE])
            out.append(rp.encode_frame(kind, rng.randbytes(rng.choice([0, 7, 9, 65]))))
    return out


async def forger_worker(cfg: dict[str, Any]) -> None:
    """A member on TCP sending forged frames at `rate`, and an oversized one every 2 s."""
    relay = RelayAddress.from_json(cfg["relay"])
    counts: Counter[str] = Counter()
    who = Identity(**cfg["forger"])
    pool = forged_frames(random.Random(7))
    pool += pool  # a batch may wrap around
    batch = 32
    oversized = struct.pack("!BI", rp.FrameType.DATAGRAM, rp.MAX_FRAME_PAYLOAD + 1)
    while True:
        try:
            session = await Session.open(relay, who, cfg["sources"][0])
            break
        except (OSError, ssl.SSLError, EOFError, TimeoutError, rp.RelayProtocolError):
            await asyncio.sleep(0.5)
    current = [session]

    async def read_and_reconnect() -> None:
        while True:
            with contextlib.suppress(OSError, ssl.SSLError, EOFError, rp.RelayProtocolError):
                while True:
                    await current[0].next()
            counts["closed_by_relay"] += 1
            current[0].writer.close()
            while True:
                try:
                    current[0] = await Session.open(relay, who, cfg["sources"][0])
                    break
                except (OSError, ssl.SSLError, EOFError, TimeoutError, rp.RelayProtocolError):
                    await asyncio.sleep(0.2)
            counts["reconnects"] += 1

    last_oversized = [time.monotonic()]
    position = [0]

    def send() -> None:
        writer = current[0].writer
        if writer.is_closing() or writer.transport.get_write_buffer_size() > 1 << 20:
            counts["skipped"] += batch
            return
        start = position[0]
        position[0] = (start + batch) % (len(pool) // 2)
        writer.write(b"".join(pool[start : start + batch]))
        counts["sent"] += batch
        if time.monotonic() - last_oversized[0] > 2.0:
            last_oversized[0] = time.monotonic()
            writer.write(oversized)
            counts["oversized"] += 1

    reading = asyncio.create_task(read_and_reconnect())
    sending = asyncio.create_task(paced(cfg["rate"], batch, send))
    await commands(lambda: dict(counts))
    sending.cancel()
    reading.cancel()


WORKERS = {
    "swarm": swarm_worker,
    "node": node_worker,
    "preauth": preauth_worker,
    "nonreader": nonreader_worker,
    "forger": forger_worker,
}


class Worker:
    """A worker process in a lab host, told "status" and "stop" on its stdin."""

    def __init__(self, host: Host, role: str, cfg: dict[str, Any], workdir: str) -> None:
        path = Path(workdir) / f"{role}-{id(self)}.json"
        path.write_text(json.dumps(cfg))
        self.role = role
        self.proc = host.popen(
            sys.executable, __file__, "--worker", role, str(path),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def line(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        assert self.proc.stdout is not None
        text = read_line(self.proc.stdout, timeout)
        if not text:
            raise LabError(f"the {self.role} worker said nothing (exit {self.proc.poll()})")
        result: dict[str, Any] = json.loads(text)
        return result

    def ask(self, command: str = "status") -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.line()

    def stop(self) -> dict[str, Any]:
        try:
            return self.ask("stop")
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)

    def cpu_seconds(self) -> float:
        with contextlib.suppress(OSError):
            return cpu_seconds(self.proc.pid)
        return 0.0


# -- the lab ----------------------------------------------------------------------------------


@dataclass
class Transfer:
    forward_gbit: float
    reverse_gbit: float
    retransmits: int
    relay_cpu: float  # share of one core over the transfers

    @property
    def total(self) -> float:
        return self.forward_gbit + self.reverse_gbit


class LoadLab:
    """The relay, the talking pair (relayed and direct), the swarm's and flooders' hosts."""

    def __init__(self, lab: Lab, workdir: str, args: argparse.Namespace) -> None:
        self.lab, self.workdir, self.args = lab, workdir, args
        net = Internet(lab, v6=False)
        self.hub = net.public("hub")
        self.sites = {name: net.public(name) for name in PAIR_IDS}
        self.swarm_site, self.flood_site = net.public("swarm"), net.public("flood")
        self.swarm_sources = self._addresses(self.swarm_site, SWARM_ADDRESSES)
        self.flood_sources = self._addresses(self.flood_site, FLOOD_ADDRESSES)
        self.pair = {name: Identity.make(node_id) for name, node_id in PAIR_IDS.items()}
        self.roles = {name: Identity.make(node_id) for name, node_id in ROLES.items()}
        self.swarm = [Identity.make(SWARM_BASE + i) for i in range(1, args.nodes + 1)]
        self.relay_proc, self.relay = self._start_relay()
        self.nodes: list[Worker] = []
        self.swarm_workers: list[Worker] = []
        self.tcp_nodes = 0
        self._start_pair()

    @staticmethod
    def _addresses(site: Any, count: int) -> list[str]:
        prefix = site.addr4.rsplit(".", 1)[0]
        sources = [f"{prefix}.{i}" for i in range(3, 3 + count)]
        for address in sources:
            site.host.addr(site.link.b_if, f"{address}/24")
        return sources

    @property
    def pid(self) -> int:
        return self.relay_proc.pid

    def _start_relay(self) -> tuple[subprocess.Popen[bytes], RelayAddress]:
        everyone = [*self.pair.values(), *self.roles.values(), *self.swarm]
        members = Path(self.workdir) / "members.json"
        members.write_text(json.dumps({"members": [who.member() for who in everyone]}))
        proc = self.hub.host.popen(
            sys.executable, "-m", "pywg", "relay", "serve", "--state",
            str(Path(self.workdir) / "relay"), "--members", str(members),
            "--listen", self.hub.addr4, "--udp-port", str(UDP_PORT),
            "--tcp-port", str(TCP_PORT), stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        words = read_line(proc.stdout, START_TIMEOUT).decode().split()
        if not words or words[0] != "relay":
            raise LabError(f"the relay did not start: {words}")
        return proc, RelayAddress(self.hub.addr4, base64.b64decode(words[1]))

    def _start_pair(self) -> None:
        for relayed in (True, False):
            for name, other in (("a", "b"), ("b", "a")):
                cfg = {
                    "who": asdict(self.pair[name]), "peer": asdict(self.pair[other]),
                    "ifname": self.lab.ifname("r" if relayed else "d"),
                    "port": 51820 if relayed else DIRECT_PORT,
                    "addr": (RELAYED if relayed else DIRECT)[name],
                    "peer_addr": (RELAYED if relayed else DIRECT)[other],
                    "relay": self.relay.to_json() if relayed else None,
                    "peer_host": self.sites[other].addr4,
                }  # fmt: skip
                self.nodes.append(Worker(self.sites[name].host, "node", cfg, self.workdir))
        for node in self.nodes:
            if not node.line().get("up"):
                raise LabError("a tunnel of the pair did not come up")

    def transfer(self, relayed: bool = True) -> Transfer:
        a, b = self.sites["a"].host, self.sites["b"].host
        address = (RELAYED if relayed else DIRECT)["b"]
        cpu, start = cpu_seconds(self.pid), time.monotonic()
        fwd, fwd_retrans = iperf(a, b, address, self.args.seconds, reverse=False)
        rev, rev_retrans = iperf(a, b, address, self.args.seconds, reverse=True)
        share = (cpu_seconds(self.pid) - cpu) / (time.monotonic() - start)
        return Transfer(fwd, rev, fwd_retrans + rev_retrans, share)

    def memory(self) -> dict[str, int]:
        return {
            "rss_kib": status_kib(self.pid, "VmRSS"),
            "hwm_kib": status_kib(self.pid, "VmHWM"),
            "fds": open_fds(self.pid),
        }

    def start_swarm(self) -> dict[str, Any]:
        """The simulated nodes, associated; what they report."""
        if self.swarm_workers:
            return self.swarm_status()
        count, tcp_every = len(self.swarm), self._tcp_every()
        specs = [
            {
                "who": asdict(who),
                "source": self.swarm_sources[i % len(self.swarm_sources)],
                "tcp": tcp_every > 0 and i % tcp_every == 0,
            }
            for i, who in enumerate(self.swarm)
        ]
        workers = max(1, self.args.workers)
        for part in range(workers):
            cfg = {"relay": self.relay.to_json(), "nodes": specs[part::workers]}
            self.swarm_workers.append(Worker(self.swarm_site.host, "swarm", cfg, self.workdir))
        tcp = self.tcp_nodes = sum(spec["tcp"] for spec in specs)
        start = time.monotonic()
        while True:
            status = self.swarm_status()
            done = status["udp_associated"] == count - tcp and status["tcp_up"] == tcp
            if done or time.monotonic() > start + START_TIMEOUT * 2:
                status["seconds_to_associate"] = round(time.monotonic() - start, 1)
                return status
            time.sleep(0.5)

    def _tcp_every(self) -> int:
        share = self.args.tcp_share
        return 0 if share <= 0 else max(1, round(1 / share))

    def swarm_status(self) -> dict[str, Any]:
        total: Counter[str] = Counter()
        for worker in self.swarm_workers:
            total.update(worker.ask())
        return dict(total)

    def pair_status(self) -> list[dict[str, Any]]:
        return [node.ask() for node in self.nodes[:2]]

    def close(self) -> None:
        for worker in [*self.swarm_workers, *self.nodes]:
            with contextlib.suppress(Exception):
                worker.stop()


# -- the scenarios ----------------------------------------------------------------------------


def scale(bench: LoadLab) -> dict[str, Any]:
    direct = bench.transfer(relayed=False)
    alone = bench.transfer()
    before = bench.memory()
    cpu, start = cpu_seconds(bench.pid), time.monotonic()
    swarm = bench.start_swarm()
    associate_cpu = cpu_seconds(bench.pid) - cpu
    time.sleep(1.0)
    after = bench.memory()
    loaded = bench.transfer()
    nodes = len(bench.swarm)
    for worker in bench.swarm_workers:
        worker.ask(f"burst {bench.args.tcp_burst}")
    time.sleep(1.0)
    burst = bench.memory()
    return {
        "nodes": nodes,
        "tcp_nodes": bench.tcp_nodes,
        "swarm": swarm,
        "associate_cpu_s": round(associate_cpu, 2),
        "associate_wall_s": round(time.monotonic() - start, 1),
        "memory_without": before,
        "memory_with": after,
        "rss_per_node_kib": round((after["rss_kib"] - before["rss_kib"]) / nodes, 2),
        "fds_added": after["fds"] - before["fds"],
        "tcp_burst_kib": bench.args.tcp_burst,
        "memory_after_burst": burst,
        "rss_per_tcp_node_after_burst_kib": round(
            (burst["rss_kib"] - after["rss_kib"]) / max(1, bench.tcp_nodes), 1
        ),
        "direct": asdict(direct),
        "relay_alone": asdict(alone),
        "relay_loaded": asdict(loaded),
        "loaded_vs_direct": round(loaded.total / direct.total, 2),
        "loaded_vs_alone": round(loaded.total / alone.total, 2),
        "pair": bench.pair_status(),
    }


def udp_pool(bench: LoadLab, rng: random.Random, count: int = 4096) -> list[bytes]:
    """Association requests forged for members, plain Binding requests, tagged messages
    from nobody, garbage (a quarter each)."""
    soon_ms = int(time.time() * 1000) + 60_000  # newer than any association taken yet
    out = []
    for i in range(count):
        pick = i % 4
        if pick == 0:
            who = rng.choice(bench.swarm)
            request = wire.association_request(
                stun.new_transaction_id(), who.wg_key, SigningKey.generate(), bench.relay.key,
                soon_ms,
            )  # fmt: skip
            out.append(request)
        elif pick == 1:
            out.append(stun.binding_request(stun.new_transaction_id()))
        elif pick == 2:
            to = rng.choice([*PAIR_IDS.values(), rng.randrange(1, 1 << 24)])
            size = rng.choice([148, 92, 64, rng.randrange(32, 1400)])
            kind = {148: 1, 92: 2, 64: 3}.get(size, 4)
            out.append(bytes([kind]) + to.to_bytes(3, "big") + rng.randbytes(size - 4))
        else:
            out.append(rng.randbytes(rng.randrange(1, 1400)))
    return out


def start_flood(bench: LoadLab, kind: str) -> Flooder | Worker:
    rate = bench.args.flood_rate
    relay, sources = bench.relay.to_json(), bench.flood_sources
    host = bench.flood_site.host
    if kind == "udp":
        pool = udp_pool(bench, random.Random(3))
        target = (bench.relay.host, UDP_PORT)
        return Flooder(
            host, pool, target, sources=tuple(sources), rate=rate or None, workdir=bench.workdir
        )
    if kind == "preauth":
        return Worker(host, "preauth", {"relay": relay, "sources": sources}, bench.workdir)
    roles = {name: asdict(who) for name, who in bench.roles.items()}
    cfg = {"relay": relay, "sources": sources, "rate": rate, **roles}
    return Worker(host, "nonreader" if kind == "nonreader" else "forger", cfg, bench.workdir)


def stop_flood(flood: Flooder | Worker) -> tuple[dict[str, Any], float]:
    """What the flooder counted, and its CPU seconds."""
    if isinstance(flood, Flooder):
        result = flood.stop()
        return {"sent": result.sent, "replies": result.replies}, result.cpu_s
    cpu = flood.cpu_seconds()
    return flood.stop(), cpu


def run_flood(bench: LoadLab, kind: str, baseline: Transfer) -> dict[str, Any]:
    before = bench.memory()
    sampler = Sampler(bench.pid)
    start = time.monotonic()
    cpu = cpu_seconds(bench.pid)
    flood = start_flood(bench, kind)
    try:
        time.sleep(1.0)
        during = bench.transfer()
        time.sleep(max(0.0, start + bench.args.flood_seconds - time.monotonic()))
        end_memory = bench.memory()
    finally:
        seen, flood_cpu = stop_flood(flood)
    ended = time.monotonic()
    relay_cpu = (cpu_seconds(bench.pid) - cpu) / (ended - start)
    time.sleep(SETTLE)
    samples = sampler.stop()
    half = start + (ended - start) / 2
    second_half = [rss for t, rss in samples if half <= t <= ended]
    return {
        "memory_before": before,
        "rss_peak_kib": max(rss for _, rss in samples),
        "memory_end": end_memory,
        "memory_after": bench.memory(),
        "rss_growth_second_half_kib": second_half[-1] - second_half[0] if second_half else 0,
        "rss_each_second_kib": [rss for t, rss in samples[:: round(1 / SAMPLE_EVERY)]],
        "relay_cpu": round(relay_cpu, 2),
        "flooder_cpu_s": round(flood_cpu, 1),
        "flood_seconds": round(ended - start, 1),
        "pair": asdict(during),
        "pair_share": round(during.total / baseline.total, 2),
        "flooder": seen,
        "swarm_after": bench.swarm_status(),
        "pair_links": bench.pair_status(),
    }


def floods(bench: LoadLab, kinds: list[str], baseline: Transfer | None) -> dict[str, Any]:
    bench.start_swarm()
    if baseline is None:
        baseline = bench.transfer()
    results: dict[str, Any] = {"baseline": asdict(baseline)}
    for kind in kinds:
        results[kind] = run_flood(bench, kind, baseline)
    return results


# -- output -----------------------------------------------------------------------------------


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def show_transfer(label: str, t: dict[str, Any], against: dict[str, Any] | None) -> str:
    total = t["forward_gbit"] + t["reverse_gbit"]
    ratio = f"{total / (against['forward_gbit'] + against['reverse_gbit']):.2f}x" if against else ""
    return (
        f"  {label:28} {t['forward_gbit']:6.2f} {t['reverse_gbit']:6.2f} Gbit/s "
        f"retrans {t['retransmits']:5d}  relay cpu {t['relay_cpu']:.2f}  {ratio}"
    )


def show_scale(r: dict[str, Any]) -> list[str]:
    w, wo = r["memory_with"], r["memory_without"]
    swarm = r["swarm"]
    return [
        f"scale: {r['nodes']} simulated nodes ({r['tcp_nodes']} over TCP/TLS), associated in "
        f"{swarm['seconds_to_associate']} s (relay CPU {r['associate_cpu_s']} s): "
        f"{swarm['udp_associated']} on UDP, {swarm['tcp_up']} on TCP",
        f"  relay VmRSS {mib(wo['rss_kib'])} without them, {mib(w['rss_kib'])} with them "
        f"({r['rss_per_node_kib']} KiB a node); VmHWM {mib(w['hwm_kib'])}",
        f"  relay fds {wo['fds']} without them, {w['fds']} with them (+{r['fds_added']})",
        f"  after each TCP node sent {r['tcp_burst_kib']} KiB at once: relay VmRSS "
        f"{mib(r['memory_after_burst']['rss_kib'])} "
        f"(+{r['rss_per_tcp_node_after_burst_kib']} KiB a TCP node)",
        "  the pair, iperf3 one stream       A->B   B->A",
        show_transfer("direct", r["direct"], None),
        show_transfer("relay, no other node", r["relay_alone"], r["direct"]),
        show_transfer(f"relay, {r['nodes']} nodes associated", r["relay_loaded"], r["direct"]),
    ]


def show_flood(kind: str, r: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    before, end, after = r["memory_before"], r["memory_end"], r["memory_after"]
    return [
        f"flood {kind} ({r['flood_seconds']} s, flooder CPU {r['flooder_cpu_s']} s): "
        f"relay VmRSS {mib(before['rss_kib'])} before, peak {mib(r['rss_peak_kib'])}, "
        f"{mib(end['rss_kib'])} at the end, {mib(after['rss_kib'])} after; "
        f"+{r['rss_growth_second_half_kib']} KiB over its second half; "
        f"fds {before['fds']}/{end['fds']}/{after['fds']}",
        show_transfer("pair during the flood", r["pair"], baseline),
        f"  flooder: {json.dumps(r['flooder'])}",
        f"  swarm after: {r['swarm_after'].get('udp_associated')} on UDP, "
        f"{r['swarm_after'].get('tcp_up')} on TCP; pair links: "
        f"{[p.get('transport') for p in r['pair_links']]}",
    ]


def report(results: dict[str, Any]) -> str:
    lines = []
    if "scale" in results:
        lines += show_scale(results["scale"])
    if "floods" in results:
        floods_result = results["floods"]
        baseline = floods_result["baseline"]
        for kind in FLOODS:
            if kind in floods_result:
                lines += show_flood(kind, floods_result[kind], baseline)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = [s for s in args.only.split(",") if s]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir, Lab("pwrl") as lab:
        bench = LoadLab(lab, workdir, args)
        try:
            baseline = None
            if "scale" in wanted:
                results["scale"] = scale(bench)
                baseline = Transfer(**results["scale"]["relay_loaded"])
            kinds = [k for k in FLOODS if k in wanted]
            if kinds:
                results["floods"] = floods(bench, kinds, baseline)
        finally:
            bench.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--tcp-share", type=float, default=0.15)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="iperf3, each way")
    parser.add_argument("--flood-rate", type=float, default=20000.0, help="per second; 0: max")
    parser.add_argument("--flood-seconds", type=float, default=0.0, help="a flood's least duration")
    parser.add_argument(
        "--tcp-burst", type=int, default=512, help="KiB each TCP node sends at once (scale)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("ROLE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        role, path = args.worker
        asyncio.run(WORKERS[role](json.loads(Path(path).read_text())))
        return 0
    require_root()
    results = run(args)
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
