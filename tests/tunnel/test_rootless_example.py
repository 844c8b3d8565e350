"""The docs' ten lines (docs/rootless.md, "a page over WireGuard without root") run as written.

The Python block is taken from the document as it stands and run as
`nobody` (no capabilities, no TUN it may create) in a lab namespace, in a
directory holding the `wg0.conf` it reads; the peer is wireguard-go in
another namespace at the address the example names, serving a page over
HTTP on port 80. The page's random token must come back on stdout.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pywg.keys import PrivateKey
from pywg.lab import Lab
from pywg.lab.wireguard import WIREGUARD_GO, endpoint, start_node

PREFIX = "pwex"
NOBODY = 65534
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "rootless.md"


def example() -> str:
    """The one Python block of the document's "Ten lines" section."""
    text = DOC.read_text()
    section = text[text.index("## Ten lines") :]
    section = section[: section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def test_example_is_about_ten_lines() -> None:
    code = example()
    body = [
        line
        for line in code.splitlines()
        if line.strip() and not line.startswith(("import", "from"))
    ]
    assert len(body) <= 12, body
    assert "load_config(" in code and "Stack(" in code and "UserspaceTunnel(" in code


@pytest.mark.needs_lab("wireguard-go")
@pytest.mark.time_limit(30)
def test_docs_example_fetches_a_page_as_nobody() -> None:
    code = example()
    (target,) = re.findall(r'open_connection\("([0-9.]+)", 80\)', code)
    with Lab(PREFIX) as lab, tempfile.TemporaryDirectory() as scratch:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        peer = start_node(lab, b, WIREGUARD_GO, net=1, index=2)
        assert peer.addr4 == target  # the address the example names
        key = PrivateKey.generate()
        work = Path(scratch)
        work.chmod(0o755)
        conf = work / "wg0.conf"
        conf.write_text(
            f"[Interface]\nPrivateKey = {key}\nAddress = 198.19.1.1/24\n\n"
            f"[Peer]\nPublicKey = {peer.public_key}\nAllowedIPs = 198.19.1.0/24\n"
            f"Endpoint = {endpoint(link.b_addr4, peer.port)}\n"
        )
        os.chown(conf, NOBODY, NOBODY)
        conf.chmod(0o600)
        (work / "example.py").write_text(code)
        site = work / "site"
        site.mkdir()
        token = secrets.token_hex(16)
        (site / "index.html").write_text(f"<p>{token}</p>\n")
        peer.set(f"public_key={key.public_key.to_hex()}\nallowed_ip=198.19.1.1/32\n")
        server = ("-m", "http.server", "-b", target, "80", "-d", str(site))
        b.popen(sys.executable, *server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}"}
        done = subprocess.run(
            a.exec_argv(sys.executable, "-m", "helpers.unprivileged_python", str(NOBODY),
                        "example.py"),
            env={**os.environ, **env}, cwd=work, capture_output=True, text=True, timeout=25,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"uid {NOBODY} caps 0\n"), done.stdout
        assert "HTTP/1.0 200" in done.stdout and token in done.stdout, done.stdout
