"""IPv6 first: two nodes whose underlay has IPv4 and IPv6 go direct over IPv6.

Both nodes are public hosts of the lab's internet (`pywg.lab.nat.Internet`:
every link has an IPv4 and an IPv6 address), so each reports an IPv4 and an
IPv6 candidate and both answer probes; the path selector (`pywg.mesh.paths`)
takes the IPv6 one (lowest round trip alone would take either). What is
checked is what WireGuard uses: `wg show` on each node.
"""

from __future__ import annotations

import pytest

from pywg.lab.mesh import MeshLab, dump

pytestmark = pytest.mark.needs_lab("nft")

PREFIX = "pwsix"


@pytest.mark.time_limit(60)
def test_two_nodes_with_ipv6_underlays_go_direct_over_ipv6(mesh: MeshLab) -> None:
    a_site = mesh.net.public("a")
    b_site = mesh.net.public("b")
    a, b = mesh.pair(a_site, b_site)
    assert f"endpoints reported: {a_site.addr4}:" in a.log_text()  # IPv4 is a candidate too
    mesh.wait_endpoint(a, b, b_site.addr6, seconds=20)
    mesh.wait_endpoint(b, a, a_site.addr6, seconds=20)
    assert a.host.wait_ping(b.addr4(), deadline=10), dump(mesh)
    assert b.host.ping(a.addr6(), count=5, timeout=10), dump(mesh)
    # and it stays there: probes every 2.5 s keep both paths measured
    for node, peer, address in ((a, b, b_site.addr6), (b, a, a_site.addr6)):
        endpoint = node.endpoints()[peer.public_key()]
        assert endpoint.startswith(f"[{address}]:"), (endpoint, dump(mesh))
