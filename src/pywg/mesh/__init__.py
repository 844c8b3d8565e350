"""The mesh: a coordinator, a relay and the node agent behind `pywg join` (issue 7).

- `wire`: what travels on the WireGuard port besides WireGuard: relay binds
  and direct-path probes, both STUN Binding transactions (RFC 8489) with
  pywg's attributes.
- `auth`: signed HTTP requests and responses between nodes and the coordinator,
  and join tokens.
"""
