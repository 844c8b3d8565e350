"""Prometheus metrics of a running tunnel, mesh node, relay and coordinator.

Each collector (`prometheus_client`'s custom-collector protocol) reads the
live state of the object it watches when Prometheus scrapes: the counters
the core and the native plane already keep (the ones `wg show` and the
UAPI `get=1` answer report), never a count of its own per packet.
`MetricsServer` serves a registry of them over HTTP (aiohttp, on the
caller's event loop, so every read happens on the thread that owns the
state). Names, labels and meanings: docs/metrics.md.
"""

from __future__ import annotations

from .coordinator import CoordinatorCollector
from .exposition import MetricsServer, new_registry
from .relay import RelayCollector
from .tunnel import TunnelCollector, mesh_paths

__all__ = [
    "CoordinatorCollector",
    "MetricsServer",
    "RelayCollector",
    "TunnelCollector",
    "mesh_paths",
    "new_registry",
]
