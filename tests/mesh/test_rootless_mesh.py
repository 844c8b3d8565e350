"""`pywg join --userspace` in a real mesh, as an unprivileged user.

The coordinator (`pywg coordinator serve`) and two nodes run as processes
on lab hosts (`pywg.lab.mesh.MeshLab`): "srv", a normal `pywg join` on its
TUN, serving a file over HTTP at its mesh address; and "rl", `pywg join
--userspace` started as root only to import itself, then run as nobody (no
capabilities, no TUN it may create). With one mesh for all three checks:

- curl `--socks5-hostname` through rl's SOCKS5 proxy fetches srv's file by
  its mesh name (srv.mesh.internal, answered from rl's roster), hashes equal;
- the same through rl's HTTP proxy (CONNECT, `-p -x`);
- a service on rl's machine (127.0.0.1 there), exposed with `--forward`, is
  fetched from srv at rl's mesh address.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywg.lab import Lab
from pywg.lab.hosts import Host
from pywg.lab.mesh import MeshLab, Node, dump

pytestmark = pytest.mark.needs_lab("nft", "curl")

PREFIX = "pwrlm"
NOBODY = 65534
ROOT = Path(__file__).resolve().parents[2]
SOCKS = "127.0.0.1:1080"
HTTP_PROXY = "127.0.0.1:3128"
FORWARD_PORT = 8080  # rl's mesh port, forwarded to its own 127.0.0.1:LOCAL_PORT
LOCAL_PORT = 8081
SRV_PORT = 8000


def serve_files(host: Host, address: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    server = ("-m", "http.server", "-b", address, str(port), "-d", str(directory))
    return host.popen(sys.executable, *server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rootless_address(mesh: MeshLab, node: Node, seconds: float = 30) -> str:
    """rl's IPv4 mesh address, from its log line "NAME (user space): ADDR/LEN, ..."."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if node.proc is not None and node.proc.poll() is not None:
            raise AssertionError(f"rl exited:\n{dump(mesh)}")
        found = re.search(r"\(user space\): ([0-9.]+)/\d+", node.log_text())
        if found and "forward: tunnel port" in node.log_text():
            return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"rl did not come up:\n{dump(mesh)}")


def curl(host: Host, out: Path, url: str, *options: str) -> None:
    done = host.run(
        "curl", "-sS", "--retry", "5", "--retry-all-errors", "--retry-delay", "1",
        "--max-time", "10", *options, "-o", str(out), url, check=False, timeout=40,
    )  # fmt: skip
    assert done.returncode == 0, f"curl {' '.join(options)} {url}: {done.stderr}"


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        path = Path(name)
        path.chmod(0o755)  # the unprivileged node reads and writes its state here
        yield path


@pytest.mark.time_limit(60)
def test_join_userspace_as_nobody_in_a_mesh(scratch: Path) -> None:
    files = scratch / "files"
    files.mkdir()
    body = os.urandom(1 << 20)
    (files / "file").write_bytes(body)
    local = os.urandom(256 << 10)
    (files / "local").write_bytes(local)
    with Lab(PREFIX) as lab:
        env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}"}
        mesh = MeshLab(lab, scratch, own_relay=False, tls=False, node_env=env)
        try:
            srv = mesh.node("srv", mesh.net.public("srv"))
            state = scratch / "node-rl"
            state.mkdir(mode=0o700)
            os.chown(state, NOBODY, NOBODY)
            rl = mesh.node(
                "rl", mesh.net.public("rl"),
                command=(sys.executable, "-m", "helpers.unprivileged_pywg", str(NOBODY)),
                extra=("--userspace", "--socks5", SOCKS, "--http-proxy", HTTP_PROXY,
                       "--forward", f"{FORWARD_PORT}=127.0.0.1:{LOCAL_PORT}"),
            )  # fmt: skip
            assert rl.proc is not None
            mesh.wait_up(srv, peers=1)
            rl_addr = rootless_address(mesh, rl)
            assert f"uid {NOBODY} caps 0" in rl.log_text()
            assert not rl.host.run("ip", "-o", "link", "show", rl.ifname, check=False).stdout
            serve_files(srv.host, srv.addr4(), SRV_PORT, files)
            serve_files(rl.host, "127.0.0.1", LOCAL_PORT, files)
            url = f"http://srv.mesh.internal:{SRV_PORT}/file"
            got = scratch / "got"
            curl(rl.host, got, url, "--socks5-hostname", SOCKS)
            assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(body).digest()
            got.unlink()
            curl(rl.host, got, url, "-p", "-x", f"http://{HTTP_PROXY}")
            assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(body).digest()
            got.unlink()
            curl(srv.host, got, f"http://{rl_addr}:{FORWARD_PORT}/local")
            assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(local).digest()
        except BaseException:
            print(dump(mesh))
            raise
        finally:
            mesh.close()
