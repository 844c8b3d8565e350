"""A relay's metrics: its clients by transport, what it forwarded, what it dropped and why.

`RelayCollector` reads `Relay.stats()` at each scrape: the relay's own
counters with the native forwarding loop's added in, and the sizes of its
tables (docs/relay.md). Every counter named `drop_REASON` there is
`pywg_relay_drops_total{reason="REASON"}` here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from pywg.mesh.relayserver import Relay

DROP_PREFIX: Final = "drop_"


class RelayCollector:
    """The metrics of `relay` (running on the event loop that serves the scrapes)."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def collect(self) -> Iterator[Metric]:
        stats = self._relay.stats()
        clients = GaugeMetricFamily(
            "pywg_relay_clients",
            "Nodes connected: UDP associations, TCP/TLS connections from nodes",
            labels=["transport"],
        )
        clients.add_metric(["udp"], stats["udp_associations"])
        clients.add_metric(["tcp"], max(0, stats["connections"] - stats["links"]))
        yield clients
        yield GaugeMetricFamily(
            "pywg_relay_homed_nodes", "Nodes homed on this relay", value=stats["homed"]
        )
        yield GaugeMetricFamily(
            "pywg_relay_links", "Links to the other home relays", value=stats["links"]
        )
        yield CounterMetricFamily(
            "pywg_relay_forwarded_packets",
            "WireGuard messages delivered to a node",
            value=stats.get("delivered", 0),
        )
        yield CounterMetricFamily(
            "pywg_relay_forwarded_bytes",
            "Bytes of the WireGuard messages delivered to a node",
            value=stats.get("delivered_bytes", 0),
        )
        drops = CounterMetricFamily(
            "pywg_relay_drops", "Messages the relay dropped, by reason", labels=["reason"]
        )
        for name, value in sorted(stats.items()):
            if name.startswith(DROP_PREFIX):
                drops.add_metric([name.removeprefix(DROP_PREFIX)], value)
        yield drops
