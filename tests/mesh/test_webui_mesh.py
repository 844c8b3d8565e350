"""The admin web UI of a real `pywg coordinator serve`, showing what real nodes report.

Two `pywg join` processes behind symmetric NATs (no direct path: each holds
the other through the coordinator's own relay) report their paths in their
signed updates; the coordinator process keeps them and its admin UI (mounted
by `serve`, HTTPS) shows each node's peer as relayed. The admin logs in
with a token made by `pywg coordinator admin token`, from the hub's
namespace (a client with a cookie jar, like a browser).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest

from pywg.lab.mesh import MeshLab, dump

pytestmark = [pytest.mark.needs_lab("nft")]

PREFIX = "pwuimesh"

# inside the hub's namespace: log in, read /admin/nodes, print each path row as JSON
_READ_PATHS = r"""
import http.cookiejar, json, re, ssl, sys, time, urllib.parse, urllib.request
url, token, want, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # the coordinator's self-made certificate
opener = urllib.request.build_opener(
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    urllib.request.HTTPSHandler(context=context),
)
body = urllib.parse.urlencode({"secret": token}).encode()
page = opener.open(url + "/admin/login", body, timeout=10)
assert page.geturl().endswith("/admin/nodes"), page.geturl()
deadline = time.monotonic() + 20
while True:
    html = opener.open(url + "/admin/nodes", timeout=10).read().decode()
    rows = []
    cards = re.findall(r'<section class="card node" id="node-([^"]+)">(.*?)</section>', html, re.S)
    for node, card in cards:
        for peer, path in re.findall(r'class="path" data-peer="([^"]+)" data-path="([^"]+)"', card):
            rows.append([node, peer, path])
    # a node reports within a second of a change: wait for the reports that follow it
    settled = len(rows) >= want and all(row[2] == path for row in rows)
    if settled or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps(rows))
"""


@pytest.mark.time_limit(90)
def test_the_ui_shows_the_paths_real_nodes_report(mesh_lab: Callable[..., MeshLab]) -> None:
    mesh = mesh_lab()
    a_site = mesh.net.behind_nat("a", "symmetric")
    b_site = mesh.net.behind_nat("b", "symmetric")
    a, b = mesh.pair(a_site, b_site)
    mesh.wait_relayed(a, b, number=1)
    mesh.wait_relayed(b, a, number=1)
    token = mesh.admin("admin", "token").strip()
    done = mesh.hub.host.run(
        sys.executable, "-c", _READ_PATHS, mesh.url, token, "2", "relay", timeout=40
    )
    rows = sorted(json.loads(done.stdout))
    assert rows == [["a", "b", "relay"], ["b", "a", "relay"]], dump(mesh)
