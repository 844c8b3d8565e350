"""The relay's and the coordinator's Prometheus metrics (pywg.metrics), scraped over HTTP.

Each runs in process on an event loop inside a lab host's namespace (its own
loopback), with its metrics served on the same loop as `--metrics-listen`
does, scraped with urllib and parsed by prometheus_client's parser. The
relay's values are compared with its own counters (`Relay.stats()`), the
coordinator's with what the test made it do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from nacl.signing import SigningKey

from helpers.mesh_harness import Coordinators
from helpers.metrics import by_label, scrape, value
from helpers.relay_clients import Node, RelayThread, UdpNode, wg
from pywg import _fast
from pywg.lab import Host
from pywg.mesh.relayserver import RelayConfig, StaticMembership, server_tls
from pywg.mesh.schema import JOIN_PATH, ROSTER_PATH
from pywg.mesh.tls import load_or_make
from pywg.metrics import CoordinatorCollector, MetricsServer, RelayCollector, new_registry

PREFIX = "pwmm"
DEADLINE = 20.0

pytestmark = [pytest.mark.needs_lab, pytest.mark.time_limit(30)]


@contextlib.contextmanager
def relay_with_metrics(state: str) -> Iterator[tuple[RelayThread, str]]:
    """A relay of nodes 1, 2 on 127.0.0.1 (a thread of its own) and the URL of its metrics."""
    config = RelayConfig(
        signing_key=SigningKey.generate(),
        membership=StaticMembership(NODES[i].member for i in (0, 1)),
        tls=server_tls(load_or_make(state, ["relay.test"])),
        host="127.0.0.1",
        udp_port=0,
        tcp_port=0,
        native=_fast.AVAILABLE,
    )
    relay = RelayThread(config)
    server = MetricsServer(new_registry([RelayCollector(relay.relay)]))
    try:
        start = server.start("127.0.0.1", 0)
        port = asyncio.run_coroutine_threadsafe(start, relay.loop).result(DEADLINE)
        yield relay, f"http://127.0.0.1:{port}/metrics"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), relay.loop).result(DEADLINE)
        relay.close()


NODES = [Node.make(i) for i in (1, 2, 3)]


def test_relay_metrics_match_its_counters(host: Host, tmp_path: Any) -> None:
    host.ip("link", "set", "lo", "up")

    def scenario() -> None:
        with relay_with_metrics(str(tmp_path)) as (relay, url), contextlib.ExitStack() as stack:
            one, two, stranger = (stack.enter_context(_closing(UdpNode(n, relay))) for n in NODES)
            assert one.associate() == 1 and two.associate() == 2
            messages = [wg(4, 32 + i) for i in range(10)]
            for message in messages:
                one.send(2, message)
            assert [len(two.recv()) for _ in messages] == [len(m) for m in messages]
            stranger.send(1, wg(4, 32))  # no association: dropped
            relay.wait_stat("drop_unassociated", 1)

            before = relay.stats()
            samples = scrape(url)
            assert relay.stats() == before  # nothing moved meanwhile
        assert before["delivered"] == len(messages)
        assert value(samples, "pywg_relay_forwarded_packets_total") == before["delivered"]
        assert value(samples, "pywg_relay_forwarded_bytes_total") == before["delivered_bytes"]
        assert before["delivered_bytes"] == sum(len(m) for m in messages)
        assert by_label(samples, "pywg_relay_clients", "transport") == {"udp": 2, "tcp": 0}
        assert value(samples, "pywg_relay_homed_nodes") == before["homed"] == 2
        drops = by_label(samples, "pywg_relay_drops_total", "reason")
        assert drops == {k.removeprefix("drop_"): v for k, v in before.items() if "drop_" in k}
        assert drops["unassociated"] == 1

    host.call(scenario)


def test_coordinator_metrics(host: Host, coordinator: Coordinators) -> None:
    host.ip("link", "set", "lo", "up")

    async def scenario() -> None:
        async with coordinator(("a", "b", "c")) as running:
            coord = running.coordinator
            server = MetricsServer(new_registry([CoordinatorCollector(lambda: coord)]))
            url = f"http://127.0.0.1:{await server.start('127.0.0.1', 0)}/metrics"
            try:
                a, b, c = running.members
                await running.join(a, b)
                version = (await a.roster(0, 0))["version"]
                poll = asyncio.ensure_future(b.roster(version, 30))  # waits: nothing changes
                while coord.long_polls < 1:
                    await asyncio.sleep(0.01)
                samples = await asyncio.to_thread(scrape, url)
                await running.join(c)  # the long-poll answers
                await asyncio.wait_for(poll, DEADLINE)
            finally:
                await server.close()
        assert value(samples, "pywg_coordinator_nodes") == 2
        assert value(samples, "pywg_coordinator_nodes_online") == 2
        assert value(samples, "pywg_coordinator_long_polls") == 1
        requests = {
            (dict(labels)["method"], dict(labels)["path"], dict(labels)["code"]): v
            for (name, labels), v in samples.items()
            if name == "pywg_coordinator_requests_total"
        }
        assert requests == {("POST", JOIN_PATH, "200"): 2, ("GET", ROSTER_PATH, "200"): 1}

    host.call(lambda: asyncio.run(asyncio.wait_for(scenario(), DEADLINE)))


@contextlib.contextmanager
def _closing(node: UdpNode) -> Iterator[UdpNode]:
    try:
        yield node
    finally:
        node.close()
