"""The mesh: a coordinator, a relay and the node agent behind `pywg join` (issue 7).

- `wire`: what travels on the WireGuard port besides WireGuard: relay binds
  and direct-path probes, both STUN Binding transactions (RFC 8489) with
  pywg's attributes.
- `auth`: signed HTTP requests and responses between nodes and the
  coordinator, and join tokens.
- `store`, `coordinator`, `coordinator_cli`: the coordinator's SQLite state,
  its HTTP API (aiohttp) and `pywg coordinator`.
- `relay`: forwards sealed WireGuard datagrams between pair ports.
- `client`: the node's side of the API.
- `paths`: which way to send to a peer (direct or relay), sans-IO.
- `state`, `agent`, `join_cli`: a node's keys on disk, the agent that keeps an
  interface in line with the roster, and `pywg join`.
"""
