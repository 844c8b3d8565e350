"""The HTTP endpoint Prometheus scrapes: `GET /metrics` on an address of the caller's choice.

It runs on the caller's event loop (aiohttp, as the coordinator does), so
the collectors read the tunnel's, relay's or coordinator's state on the
thread that changes it, between two of its callbacks: a consistent snapshot
with no lock. The exposition format is prometheus_client's own
(`make_aiohttp_handler`: text 0.0.4, or OpenMetrics when asked for).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

METRICS_PATH = "/metrics"  # where Prometheus looks by default (its scrape_config metrics_path)


def new_registry(collectors: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry of `collectors` and the process's own metrics (CPU, memory, open fds)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


class MetricsServer:
    """`GET /metrics` of `registry` over plain HTTP; `start` and `close` on one event loop."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        app = web.Application()
        app.router.add_get(METRICS_PATH, make_aiohttp_handler(registry))
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self, host: str | None, port: int) -> int:
        """Listen on `host` (None: every address) and `port` (0: one the kernel picks);
        the port it listens on. OSError if the address cannot be bound."""
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        address: Any = self._runner.addresses[0]
        return int(address[1])

    async def close(self) -> None:
        await self._runner.cleanup()
