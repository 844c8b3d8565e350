"""`--metrics-listen HOST:PORT`: the option every long-running command shares.

The commands give it the collectors of what they run; this module parses
the address and serves them (pywg.metrics) on the command's event loop.
pywgd, whose command line is wireguard-go's, also reads it from the
environment (PYWG_METRICS_LISTEN), the only way through wg-quick.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any, Final

from pywg.cmd.address import UsageError, parse_hostport

if TYPE_CHECKING:  # aiohttp and prometheus_client are imported only when metrics are asked for
    from collections.abc import Callable, Mapping

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


async def serve_metrics(address: Address | None, *collectors: Collector) -> MetricsServer | None:
    """Serve `collectors` at `address` on this event loop (None: no metrics); OSError if
    the address cannot be bound. Close the server it returns when the command stops."""
    if address is None:
        return None
    from pywg.metrics import MetricsServer, new_registry

    server = MetricsServer(new_registry(collectors))
    port = await server.start(*address)
    log.info("metrics at http://%s:%d/metrics", _shown(address[0]), port)
    return server


async def serve_tunnel_metrics(
    address: Address | None,
    tunnel: Callable[[], Tunnel | None],
    paths: Callable[[], Mapping[str, str]] | None = None,
) -> MetricsServer | None:
    """Serve the metrics of the tunnel `tunnel()` gives (and its peers' `paths`) at
    `address` (None: no metrics); OSError if the address cannot be bound."""
    if address is None:
        return None
    from pywg.metrics import TunnelCollector

    return await serve_metrics(address, TunnelCollector(tunnel, paths))


async def serve_mesh_metrics(address: Address | None, node: MeshNode) -> MetricsServer | None:
    """Serve the metrics of a mesh node's tunnel and its peers' paths (`serve_metrics`)."""
    if address is None:
        return None
    from pywg.metrics import mesh_paths

    return await serve_tunnel_metrics(address, lambda: node.tunnel, lambda: mesh_paths(node))


async def serve_relay_metrics(address: Address | None, relay: Relay) -> MetricsServer | None:
    """Serve the metrics of `relay` (`serve_metrics`)."""
    if address is None:
        return None
    from pywg.metrics import RelayCollector

    return await serve_metrics(address, RelayCollector(relay))


async def serve_coordinator_metrics(
    address: Address | None, coordinator: Callable[[], Coordinator | None]
) -> MetricsServer | None:
    """Serve the metrics of the coordinator `coordinator()` gives once it runs."""
    if address is None:
        return None
    from pywg.metrics import CoordinatorCollector

    return await serve_metrics(address, CoordinatorCollector(coordinator))


def _shown(host: str | None) -> str:
    if host is None:
        return "*"
    return f"[{host}]" if ":" in host else host
