"""The mesh: a coordinator, a relay and the node agent (`pywg coordinator`, `pywg join`).

- `schema`: the coordinator API's messages (roster, join, update), typed,
  shared by the coordinator and the nodes.
- `auth`: signed HTTP requests and answers between nodes and the
  coordinator, and join tokens.
- `store`, `coordinator`: the coordinator's SQLite state and its HTTP API
  (aiohttp); `relaychild`: the coordinator's own home relay, a supervised
  child process.
- `wire`: what travels on the WireGuard port besides WireGuard: home relay
  associations and direct-path probes, all STUN Binding transactions
  (RFC 8489) with pywg's attributes.
- `relayproto`, `relayserver`: the home relay (`pywg relay serve`,
  docs/relay.md): datagrams addressed by node id, one UDP port and one
  TCP/TLS port, relays forwarding to each other.
- `home`: which relay of the map is a node's home.
- `client`: the node's side of the API.
- `paths`: which way to send to a peer (direct or relay), sans-IO.
- `state`, `agent`: a node's keys and records on disk, and the agent that
  keeps an interface in line with the roster.
- `devices`, `gateway`, `qr`: plain WireGuard devices (any WireGuard app):
  their configs, the gateway node that holds them as peers, the config as a
  QR code.

The commands are `pywg.cmd.coordinator`, `pywg.cmd.join` and
`pywg.cmd.relay`; the namespace lab for the mesh is `pywg.lab.mesh`.
"""
