"""A `pywg join` node's Prometheus metrics (`--metrics-listen`), end to end in the lab.

Two real `pywg join` processes behind symmetric NATs (no direct path: each
holds the other through the home relay); node a serves its metrics on its
host's loopback. The scrape (prometheus_client's parser, run inside a's
namespace) must name b's path as the relay's, and count b's traffic as
`wg show` does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest

from pywg.lab.mesh import MeshLab, dump

pytestmark = [pytest.mark.needs_lab("nft")]

PREFIX = "pwnodem"
METRICS = "127.0.0.1:9586"

# inside a's namespace: scrape, parse, print the samples this test reads as JSON
_SCRAPE = r"""
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
out = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        if s.name in ("pywg_peer_path", "pywg_peer_receive_bytes_total"):
            out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"""


@pytest.mark.time_limit(90)
def test_a_node_reports_its_peers_path_and_traffic(mesh_lab: Callable[..., MeshLab]) -> None:
    mesh = mesh_lab()
    a_site = mesh.net.behind_nat("a", "symmetric")
    b_site = mesh.net.behind_nat("b", "symmetric")
    a, b = mesh.pair(a_site, b_site, extra_a=("--metrics-listen", METRICS))
    mesh.wait_relayed(a, b, number=1)
    assert a.host.wait_ping(b.addr4(), deadline=30), dump(mesh)
    done = a.host.run(sys.executable, "-c", _SCRAPE, f"http://{METRICS}/metrics", timeout=30)
    samples = json.loads(done.stdout)
    key = b.public_key()
    paths = {
        labels["path"]: value
        for name, labels, value in samples
        if name == "pywg_peer_path" and labels["public_key"] == key
    }
    assert paths == {"direct": 0.0, "relay": 1.0}, samples
    received = [
        value
        for name, labels, value in samples
        if name == "pywg_peer_receive_bytes_total" and labels["public_key"] == key
    ]
    assert received and received[0] > 0, samples
