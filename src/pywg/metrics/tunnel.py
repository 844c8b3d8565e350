"""A tunnel's metrics: per peer bytes, last handshake and path; drops by reason.

`TunnelCollector` reads, at each scrape, what `wg show` reports (the
tunnel's `stats()`: the native plane's per-peer counters brought into the
core first) and the drop counters the core (`Device.dropped`), the native
plane (`Tunnel.plane_stats`) and the I/O shell keep. The plane's names for
the fates the core also counts are mapped onto the core's (`PLANE_DROPS`),
so a reason means the same whichever path dropped the packet.

On a mesh node `mesh_paths` says which way each peer's traffic goes now:
through the home relay (the peer's endpoint is its relayed one) or direct.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from pywg.asyncio import Tunnel
from pywg.mesh.schema import PATH_KINDS

if TYPE_CHECKING:
    from pywg.mesh.agent import MeshNode

# The native plane's drop counters (plane.h, struct pywg_plane_stats) as the core's reasons.
PLANE_DROPS: Final = {
    "rx_rejected": "transport_rejected",  # bad tag, replayed or expired
    "rx_bad_source": "inner_source_not_allowed",
    "tx_no_route": "tun_no_route",
    "tx_malformed": "tun_malformed",
    "rx_junk": "malformed_datagram",
    "rx_bad_mac1": "bad_mac1",
    "rx_unknown_index": "unknown_index",
    "rx_cookie_replies": "cookie_reply_sent",  # dropped under load, a cookie sent instead
    "rx_cookie_limited": "rate_limited",
    "queue_drops": "handoff_queue_full",
    "tx_no_relay": "no_relay",
}
PATHS: Final = PATH_KINDS

PathsOf = Callable[[], Mapping[str, str]]  # public key (base64) -> one of PATHS


class TunnelCollector:
    """The metrics of the tunnel `source()` gives (None: not running yet, no metrics)."""

    def __init__(self, source: Callable[[], Tunnel | None], paths: PathsOf | None = None) -> None:
        self._source = source
        self._paths = paths

    def collect(self) -> Iterator[Metric]:
        tunnel = self._source()
        if tunnel is None or tunnel.closed:
            return
        yield from self._peers(tunnel)
        yield _drops(tunnel)
        if self._paths is not None:
            yield _paths(tunnel.name, self._paths())

    def _peers(self, tunnel: Tunnel) -> Iterator[Metric]:
        labels = ["interface", "public_key"]
        rx = CounterMetricFamily(
            "pywg_peer_receive_bytes",
            "Bytes received from the peer (wg show transfer)",
            labels=labels,
        )
        tx = CounterMetricFamily(
            "pywg_peer_transmit_bytes", "Bytes sent to the peer (wg show transfer)", labels=labels
        )
        handshake = GaugeMetricFamily(
            "pywg_peer_last_handshake_seconds",
            "Unix time of the last completed handshake with the peer, 0 if none",
            labels=labels,
        )
        stats = tunnel.stats()
        for peer in stats:
            key = [tunnel.name, str(peer.public_key)]
            rx.add_metric(key, peer.rx_bytes)
            tx.add_metric(key, peer.tx_bytes)
            handshake.add_metric(key, peer.last_handshake_time or 0.0)
        count = GaugeMetricFamily("pywg_peers", "Peers configured", labels=["interface"])
        count.add_metric([tunnel.name], len(stats))
        yield from (rx, tx, handshake, count)


def _drops(tunnel: Tunnel) -> Metric:
    reasons = dict(tunnel.device.dropped)
    for name, value in tunnel.plane_stats.items():
        if name in PLANE_DROPS and value:
            reason = PLANE_DROPS[name]
            reasons[reason] = reasons.get(reason, 0) + value
    reasons.update(tunnel.filter_drops())  # the access policy (docs/policy.md)
    reasons["tun_write_failed"] = tunnel.tun_write_drops
    reasons["udp_send_failed"] = tunnel.udp_send_drops
    drops = CounterMetricFamily(
        "pywg_drops", "Packets and datagrams dropped, by reason", labels=["interface", "reason"]
    )
    for reason, value in sorted(reasons.items()):
        drops.add_metric([tunnel.name, reason], value)
    return drops


def _paths(interface: str, paths: Mapping[str, str]) -> Metric:
    family = GaugeMetricFamily(
        "pywg_peer_path",
        "1 for the path the peer's traffic takes now (direct or through the relay)",
        labels=["interface", "public_key", "path"],
    )
    for key, now in sorted(paths.items()):
        for path in PATHS:
            family.add_metric([interface, key, path], 1.0 if path == now else 0.0)
    return family


def mesh_paths(node: MeshNode) -> dict[str, str]:
    """Each mesh peer's path now, by its public key in base64 (`pathstate.peer_paths`)."""
    from pywg.mesh.auth import b64
    from pywg.mesh.pathstate import peer_paths

    return {b64(state.peer): state.path for state in peer_paths(node)}
