"""RelayLink (pywg.mesh.relayclient) between real Tunnels and a real home relay (namespace lab).

`pywg relay serve` runs on a public host with a members file naming two
nodes; each node, behind a symmetric NAT (so no direct path exists), runs a
Tunnel with a RelayLink to it as a process, and holds the other at its
relayed endpoint ``[100::ID]:1``. Every line a node prints is a JSON event:
its link's transport when it changes, and the handshake.

- Both nodes associate over UDP from their WireGuard sockets; handshake and
  pings pass both ways.
- One node's NAT router drops all UDP: that node gives up UDP after its
  timeout, connects over TCP/TLS and pings pass both ways through the
  bridge; once the drop rule is gone it moves back to UDP within its retry
  interval, and pings still pass.
- The same node reaches the relay's TCP port only through an HTTP CONNECT
  proxy on another public host (helpers.connect_proxy).
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from pywg.keys import PrivateKey
from pywg.lab import Internet, Lab
from pywg.lab.hosts import Host
from pywg.lab.nat import Site

pytestmark = [pytest.mark.needs_lab("nft"), pytest.mark.time_limit(90)]
IDS = {"a": 0x0A0001, "b": 0x0B0002}
TUNNEL = {"a": "198.19.8.1", "b": "198.19.8.2"}
UDP_PORT, TCP_PORT, PROXY_PORT = 3478, 8443, 3128
TESTS = Path(__file__).resolve().parents[1]
DROP_RELAY_TCP = """
table inet pywg_test_droptcp {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip daddr {hub} tcp dport {port} drop
    }}
}}
"""

_NODE = r"""
import asyncio, base64, json, subprocess, sys
from nacl.signing import SigningKey
from pywg import relayed
from pywg.asyncio.tunnel import Tunnel
from pywg.events import HandshakeCompleted
from pywg.keys import PrivateKey
from pywg.mesh.relayclient import NodeIdentity, RelayLink, Timing
from pywg.mesh.schema import HomeRelay

c = json.loads(sys.argv[1])

def say(**event):
    print(json.dumps(event), flush=True)

async def watch(link):
    seen = "start"
    while True:
        if link.transport != seen:
            seen = link.transport
            say(transport=seen, node_id=link.node_id, error=link.last_error)
        await asyncio.sleep(0.05)

async def main():
    key = PrivateKey.from_base64(c["key"])
    async with Tunnel(c["ifname"], private_key=key, listen_port=51820) as t:
        subprocess.run(["ip", "addr", "add", c["addr"] + "/24", "dev", c["ifname"]], check=True)
        subprocess.run(["ip", "link", "set", c["ifname"], "up"], check=True)
        node = NodeIdentity(bytes(key.public_key), SigningKey(bytes.fromhex(c["control"])))
        relay = HomeRelay(1, "r", base64.b64decode(c["relay_key"]), c["relay_host"],
                          c["udp_port"], c["tcp_port"])
        timing = Timing(udp_timeout=1.5, udp_retry=3.0, refresh=4.0, backoff_min=0.5)
        link = RelayLink(t, node, relay, timing=timing, proxy=c["proxy"])
        t.add_peer(c["peer_key"], [c["peer_addr"] + "/32"],
                   relayed.endpoint(1, c["peer_id"]), persistent_keepalive=1)
        await link.start()
        watcher = asyncio.create_task(watch(link))
        while True:
            event = await t.next_event()
            if isinstance(event, HandshakeCompleted):
                say(handshake=True, counters=link.counters())

asyncio.run(main())
"""


class Lines:
    """A process's stdout, one JSON event at a time, with deadlines."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc, self.out = proc, proc.stdout
        self.seen: list[dict[str, Any]] = []

    def wait(self, deadline: float, **want: Any) -> dict[str, Any]:
        """The next event that has every item of `want`; AssertionError after `deadline` s."""
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            ready, _, _ = select.select([self.out], [], [], max(0.0, left))
            assert ready, f"no {want} within {deadline} s; saw {self.seen}"
            line = self.out.readline()
            assert line, f"the node ended; saw {self.seen}"
            event: dict[str, Any] = json.loads(line)
            self.seen.append(event)
            if all(event.get(k) == v for k, v in want.items()):
                return event

    def transports(self) -> list[str | None]:
        """Every transport the node reported so far (the events printed are read first)."""
        while select.select([self.out], [], [], 0.2)[0]:
            line = self.out.readline()
            if not line:
                break
            self.seen.append(json.loads(line))
        return [e["transport"] for e in self.seen if "transport" in e]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def start_relay(hub: Host, address: str, tmp_path: Path, members: list[dict[str, Any]]) -> str:
    """`pywg relay serve` on `hub`; its relay key (base64)."""
    listed = tmp_path / "members.json"
    listed.write_text(json.dumps({"members": members}))
    proc = hub.popen(
        sys.executable, "-m", "pywg", "relay", "serve", "--state", str(tmp_path / "relay"),
        "--members", str(listed), "--listen", address, "--udp-port", str(UDP_PORT),
        "--tcp-port", str(TCP_PORT), stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    assert ready, "the relay printed no ready line"
    words = proc.stdout.readline().decode().split()
    assert words[0] == "relay", words
    return words[1]


def run_mesh(
    lab: Lab,
    tmp_path: Path,
    *,
    drop_udp: bool = False,
    proxy: bool = False,
    backend: str = "native",
) -> tuple[dict[str, Site], dict[str, Lines]]:
    """The internet, the relay and the two nodes running; (the sites, their event lines).
    `drop_udp`: a's NAT router drops all UDP; `proxy`: a reaches the relay's TCP port
    through a CONNECT proxy on a public host of its own."""
    net = Internet(lab, v6=False)
    hub = net.public("hub")
    sites = {name: net.behind_nat(name, "symmetric") for name in IDS}
    if drop_udp:
        assert sites["a"].nat is not None
        sites["a"].nat.block_udp()
    if proxy:  # and no TCP to the relay but through the proxy
        assert sites["a"].nat is not None
        sites["a"].nat.router.nft(DROP_RELAY_TCP.format(hub=hub.addr4, port=TCP_PORT))
    keys = {name: PrivateKey.generate() for name in IDS}
    controls = {name: SigningKey.generate() for name in IDS}
    members = [
        {"public_key": b64(bytes(keys[n].public_key)),
         "control_key": b64(bytes(controls[n].verify_key)), "node_id": IDS[n]}
        for n in IDS
    ]  # fmt: skip
    relay_key = start_relay(hub.host, hub.addr4, tmp_path, members)
    proxies = {"a": start_proxy(net.public("proxy"))} if proxy else {}
    lines = {}
    for name, other in (("a", "b"), ("b", "a")):
        config = {
            "ifname": lab.ifname("r"), "key": str(keys[name]), "addr": TUNNEL[name],
            "control": bytes(controls[name]).hex(), "relay_key": relay_key,
            "relay_host": hub.addr4, "udp_port": UDP_PORT, "tcp_port": TCP_PORT,
            "peer_key": str(keys[other].public_key), "peer_id": IDS[other],
            "peer_addr": TUNNEL[other], "proxy": proxies.get(name, ""),
        }  # fmt: skip
        proc = sites[name].host.popen(
            sys.executable,
            "-c",
            _NODE,
            json.dumps(config),
            stdout=subprocess.PIPE,
            env={"PYWG_BACKEND": backend},
        )
        lines[name] = Lines(proc)
    return sites, lines


def start_proxy(site: Site) -> str:
    """helpers.connect_proxy on `site`; its URL."""
    env = {"PYTHONPATH": f"{os.environ.get('PYTHONPATH', '')}:{TESTS}"}
    proc = site.host.popen(
        sys.executable, "-m", "helpers.connect_proxy", site.addr4, str(PROXY_PORT), "200",
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"ready")
    return f"http://{site.addr4}:{PROXY_PORT}"


def pings_both_ways(sites: Any) -> None:
    a, b = sites["a"].host, sites["b"].host
    assert a.wait_ping(TUNNEL["b"], deadline=15)
    assert a.ping(TUNNEL["b"], count=3, timeout=5)
    assert b.ping(TUNNEL["a"], count=3, timeout=5)


@pytest.mark.parametrize("backend", ["native", "pure"])
def test_two_nodes_behind_symmetric_nats_meet_through_the_relay_over_udp(
    lab: Lab, tmp_path: Path, backend: str
) -> None:
    sites, lines = run_mesh(lab, tmp_path, backend=backend)
    for name in IDS:
        event = lines[name].wait(10, transport="udp")
        assert event["node_id"] == IDS[name], event
    for name in IDS:
        lines[name].wait(15, handshake=True)
    pings_both_ways(sites)


def on_tcp_and_udp(sites: dict[str, Site], lines: dict[str, Lines]) -> None:
    """a (its UDP dropped) ends on TCP, b on UDP; they handshake and pings pass both ways."""
    event = lines["a"].wait(15, transport="tcp")
    assert event["node_id"] == IDS["a"] and "no answer" in (event["error"] or ""), event
    lines["b"].wait(10, transport="udp")
    counters = lines["a"].wait(15, handshake=True)["counters"]
    assert counters["tcp_sent"] >= 1 and counters["bridge_from_relay"] >= 1, counters
    lines["b"].wait(15, handshake=True)
    pings_both_ways(sites)
    # the TCP session stayed up while UDP was tried again (every 3 s) in vain
    assert lines["a"].transports() == [None, "tcp"], lines["a"].seen


@pytest.mark.parametrize("backend", ["native", "pure"])
def test_a_node_without_udp_uses_tcp_and_moves_back_to_udp(
    lab: Lab, tmp_path: Path, backend: str
) -> None:
    sites, lines = run_mesh(lab, tmp_path, drop_udp=True, backend=backend)
    on_tcp_and_udp(sites, lines)
    assert sites["a"].nat is not None
    sites["a"].nat.unblock_udp()
    # back on UDP within the retry interval (3 s) and an association's timeout (1.5 s)
    event = lines["a"].wait(6, transport="udp")
    assert event["node_id"] == IDS["a"], event
    pings_both_ways(sites)


def test_tcp_through_an_http_connect_proxy(lab: Lab, tmp_path: Path) -> None:
    sites, lines = run_mesh(lab, tmp_path, drop_udp=True, proxy=True)
    on_tcp_and_udp(sites, lines)  # a's router lets TCP reach the relay only via the proxy
