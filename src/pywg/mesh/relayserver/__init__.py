"""The home relay (`pywg relay serve`): one UDP and one TCP port, datagrams addressed by node.

docs/relay.md specifies the protocol; `pywg.mesh.relayproto` is its bytes.
Modules, one concern each:

- `membership`: who may use the relay (the `Membership` source it asks; in
  memory, or a file followed); `coordinated`: the members as the coordinator
  has them (GET /v1/members, long-polled);
- `routing`: who is homed where and the forwarding step (`Router`);
- `udp`: the UDP port (STUN, signed associations, datagrams);
- `tcp`: the TCP port (limits before TLS, the upgrade, the hellos);
- `connection`: one framed TCP connection with its bounded queue;
- `outqueue`: that queue; `sources`: per-source keys and pre-auth counts;
- `peers`: links to the other relays; `tls`: certificates and contexts;
- `limits`: every bound, in one value; `server`: `Relay`, all of them
  together.
"""

from __future__ import annotations

from ..schema import Member
from .coordinated import CoordinatorMembership
from .limits import Limits, QueueLimits
from .membership import FileMembership, Membership, StaticMembership
from .peers import PeerSpec
from .server import Relay, RelayConfig
from .tls import ServerTls, server_tls

__all__ = [
    "CoordinatorMembership",
    "FileMembership",
    "Limits",
    "Member",
    "Membership",
    "PeerSpec",
    "QueueLimits",
    "Relay",
    "RelayConfig",
    "ServerTls",
    "StaticMembership",
    "server_tls",
]
