"""`--metrics-listen HOST:PORT`: the option every long-running command shares.

The commands say what they run (`tunnel_metrics`, `mesh_metrics`,
`relay_metrics`, `coordinator_metrics`); this module parses the address and
serves the collectors (pywg.metrics) on the command's event loop. aiohttp
and prometheus_client are imported only when metrics are asked for. pywgd,
whose command line is wireguard-go's, also reads the address from the
environment (PYWG_METRICS_LISTEN), the only way through wg-quick.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from pywg.cmd.address import UsageError, parse_hostport

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from pywg.asyncio import Tunnel
    from pywg.mesh.agent import MeshNode
    from pywg.mesh.coordinator import Coordinator
    from pywg.mesh.relayserver import Relay
    from pywg.metrics import MetricsServer

OPTION: Final = "--metrics-listen"
ENV: Final = "PYWG_METRICS_LISTEN"
HELP: Final = "serve Prometheus metrics at http://HOST:PORT/metrics (docs/metrics.md)"

Address = tuple[str | None, int]
Collectors = Callable[[], "Collector"]  # made only when metrics are served
log = logging.getLogger("pywg.metrics")


def parse_listen(text: str) -> Address:
    """HOST:PORT, [IPv6]:PORT or :PORT (every address); UsageError otherwise."""
    return parse_hostport(text, OPTION)


def _argument(text: str) -> Address:
    try:
        return parse_listen(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_option(parser: Any) -> None:
    """Add --metrics-listen to an argparse parser (its value: an Address or None)."""
    parser.add_argument(OPTION, metavar="HOST:PORT", type=_argument, help=HELP)


def tunnel_metrics(
    tunnel: Callable[[], Tunnel | None], paths: Callable[[], Mapping[str, str]] | None = None
) -> Collectors:
    """The metrics of the tunnel `tunnel()` gives (and of its peers' `paths`)."""

    def make() -> Collector:
        from pywg.metrics import TunnelCollector

        return TunnelCollector(tunnel, paths)

    return make


def mesh_metrics(node: MeshNode) -> Collectors:
    """The metrics of a mesh node's tunnel and of its peers' paths."""

    def paths() -> Mapping[str, str]:
        from pywg.metrics import mesh_paths

        return mesh_paths(node)

    return tunnel_metrics(lambda: node.tunnel, paths)


def relay_metrics(relay: Relay) -> Collectors:
    def make() -> Collector:
        from pywg.metrics import RelayCollector

        return RelayCollector(relay)

    return make


def coordinator_metrics(coordinator: Callable[[], Coordinator | None]) -> Collectors:
    """The metrics of the coordinator `coordinator()` gives once it runs."""

    def make() -> Collector:
        from pywg.metrics import CoordinatorCollector

        return CoordinatorCollector(coordinator)

    return make


async def serve_metrics(address: Address | None, collectors: Collectors) -> MetricsServer | None:
    """Serve the metrics at `address` on this event loop (None: no metrics); OSError if the
    address cannot be bound. Close the server it returns when the command stops."""
    if address is None:
        return None
    from pywg.metrics import MetricsServer, new_registry

    server = MetricsServer(new_registry([collectors()]))
    port = await server.start(*address)
    log.info("metrics at http://%s:%d/metrics", _shown(address[0]), port)
    return server


@contextlib.asynccontextmanager
async def served(address: Address | None, collectors: Collectors) -> AsyncIterator[None]:
    """`serve_metrics` for the time of an `async with` block."""
    server = await serve_metrics(address, collectors)
    try:
        yield
    finally:
        if server is not None:
            await server.close()


def _shown(host: str | None) -> str:
    if host is None:
        return "*"
    return f"[{host}]" if ":" in host else host
