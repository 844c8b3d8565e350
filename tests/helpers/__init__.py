"""Test helpers shared by every layer of tests/ (`helpers.*`; conftest puts tests/ on the path).

- `known_answers`: the known-answer files in the repository's vectors/;
- `ip_packets`: tiny IPv4/IPv6 packet builders;
- `virtual_network`, `device_pair`: sans-IO Devices on an in-memory network on virtual time;
- `time_bounds`: a time limit for tests that drive real networks;
- `udp_apps`: UDP receivers and senders for the namespace fault tests;
- `wg_nodes`: pywgd / wireguard-go nodes in lab namespaces, configured with `wg`;
- `mesh_harness`: the mesh tests' coordinator and node pieces (tests/mesh/conftest.py).
"""
