"""A coordinator's metrics: its nodes (and how many are online), its requests, its long-polls.

`CoordinatorCollector` reads the store and the coordinator's own tallies
(`Coordinator.requests`, `Coordinator.long_polls`, `Coordinator.guard`) at each scrape. A node
is online when it signed a request within ONLINE_WINDOW: a running agent
keeps a roster long-poll open (at most MAX_WAIT seconds each) and renews it
at once, so a node silent for two of those is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from pywg.mesh.coordinator import Coordinator
from pywg.mesh.schema import MAX_WAIT

ONLINE_WINDOW: Final = 2 * MAX_WAIT  # seconds since a node's last signed request


class CoordinatorCollector:
    """The metrics of the coordinator `source()` gives (None: not running yet, no metrics),
    running on the event loop that serves the scrapes."""

    def __init__(self, source: Callable[[], Coordinator | None]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        coordinator = self._source()
        if coordinator is None:
            return
        nodes = coordinator.store.nodes()
        since = coordinator.clock_ms() - int(ONLINE_WINDOW * 1000)
        online = sum(1 for n in nodes if n.last_ms is not None and n.last_ms >= since)
        yield GaugeMetricFamily("pywg_coordinator_nodes", "Nodes in the mesh", value=len(nodes))
        yield GaugeMetricFamily(
            "pywg_coordinator_nodes_online",
            f"Nodes that signed a request in the last {ONLINE_WINDOW:g} s",
            value=online,
        )
        yield GaugeMetricFamily(
            "pywg_coordinator_long_polls",
            "Roster and member long-polls waiting now",
            value=coordinator.long_polls,
        )
        requests = CounterMetricFamily(
            "pywg_coordinator_requests",
            "HTTP requests answered, by method, route and status code",
            labels=["method", "path", "code"],
        )
        for (method, path, code), count in sorted(coordinator.requests.items()):
            requests.add_metric([method, path, str(code)], count)
        yield requests
        yield CounterMetricFamily(
            "pywg_coordinator_connections_reset",
            "Connections reset as they were accepted: their source had its most open",
            value=coordinator.guard.reset_connections,
        )
