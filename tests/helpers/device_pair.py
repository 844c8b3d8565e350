"""Two (or n) Devices wired on a virtual-time Network, with the lab's addresses."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from helpers.virtual_network import Host, Network
from pywg import Device, PresharedKey, PrivateKey
from pywg.keys import PublicKey


def zero_jitter_rng(n: int) -> bytes:
    """os.urandom, except the 2-byte draws for timer jitter are zero: exact deadlines."""
    return bytes(2) if n == 2 else os.urandom(n)


def make_pair(
    net: Network,
    *,
    psk: bool = False,
    rng: Callable[[int], bytes] = os.urandom,
    keepalive_a: int | None = None,
    keepalive_b: int | None = None,
    rng_b: Callable[[int], bytes] | None = None,
    **device_kw: object,
) -> tuple[Host, Host]:
    """Devices a and b, peers of each other; `rng` for both, or `rng_b` for b."""
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    shared = PresharedKey.generate() if psk else None
    a = Device(ka, 51820, rng=rng, wall_clock=net.wall_clock(), **device_kw)  # type: ignore[arg-type]
    b = Device(kb, 51820, rng=rng_b or rng, wall_clock=net.wall_clock(), **device_kw)  # type: ignore[arg-type]
    host_a = net.attach(a, ("198.18.0.1", 51820))
    host_b = net.attach(b, ("198.18.0.2", 51820))
    a.add_peer(
        kb.public_key,
        ["198.19.0.2/32", "fd19::2/128"],
        endpoint=host_b.addr,
        preshared_key=shared,
        persistent_keepalive=keepalive_a,
    )
    b.add_peer(
        ka.public_key,
        ["198.19.0.1/32", "fd19::1/128"],
        endpoint=host_a.addr,
        preshared_key=shared,
        persistent_keepalive=keepalive_b,
    )
    return host_a, host_b


def session_snapshot(dev: Device, peer_key: PublicKey) -> dict[str, Any]:
    """The session state of one peer that invalid input must never touch.

    Shared by tests/core/test_fuzz_device.py and fuzz/fuzz_device.py.
    """
    p = dev.peer(peer_key)
    return {
        "endpoint": p.endpoint,
        "sessions": [
            (
                k.local_index,
                k.remote_index,
                k.send_key,
                k.receive_key,
                k.send_counter,
                k.replay.greatest,
            )
            for k in (p.previous, p.current, p.next)
            if k is not None
        ],
        "slots": (id(p.previous), id(p.current), id(p.next)),
        "handshake": p.handshake.local_index if p.handshake else None,
        "timestamp": p.latest_timestamp,
        "last_initiation": p.last_initiation_consumption,
        "timers": dict(p.timers.deadlines),
        "rx": p.rx_bytes,
        "tx": p.tx_bytes,
        "indices": dev.index_table_size,
        "staged": list(p.staged),
    }
