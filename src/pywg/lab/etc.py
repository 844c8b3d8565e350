"""A lab host's own /etc files (hosts, resolv.conf), and a stand-in upstream DNS server.

`ip netns exec NS` bind-mounts every file of /etc/netns/NS/ over the file of
the same name in /etc for the command it runs (ip-netns(8)), and every
process of a lab host runs that way (`Host.exec_argv`). `private_etc` makes
such files for one host, so what a test's process reads or writes as
/etc/hosts or /etc/resolv.conf is the host's own file, never the machine's;
leaving the block removes them.

`upstream_dns` runs a DNS server (UDP and TCP) on a lab host that answers A for the names
it is given and REFUSED for the rest (`pywg.mesh.dns` builds the answers):
the "usual resolver" a mesh node passes other names on to.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from .hosts import Host

NETNS_ETC = Path("/etc/netns")

_UPSTREAM = r"""
import socket, sys, threading
import dns.message, dns.rcode
from pywg.mesh.dns import Forward, Zone, answer
domain, address = sys.argv[1], sys.argv[2]
entries = [(pair.split("=")[0], [pair.split("=")[1]]) for pair in sys.argv[3:]]
zone = Zone(domain, entries)

def reply(data, tcp):
    got = answer(zone, data, tcp=tcp)
    if isinstance(got, Forward):
        refused = dns.message.make_response(got.query)
        refused.set_rcode(dns.rcode.REFUSED)
        got = refused.to_wire()
    return got

def serve_tcp(listener):
    while True:
        conn, _ = listener.accept()
        with conn:
            size = int.from_bytes(conn.recv(2, socket.MSG_WAITALL), "big")
            got = reply(conn.recv(size, socket.MSG_WAITALL), True)
            if got is not None:
                conn.sendall(len(got).to_bytes(2, "big") + got)

listener = socket.create_server((address, 53))
threading.Thread(target=serve_tcp, args=(listener,), daemon=True).start()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((address, 53))
print("ready", flush=True)
while True:
    data, source = sock.recvfrom(4096)
    got = reply(data, False)
    if got is not None:
        sock.sendto(got, source)
"""


@contextlib.contextmanager
def private_etc(host: Host, files: Mapping[str, str]) -> Iterator[Path]:
    """/etc/netns/NS/NAME holding each text of `files` (NAME -> text) for `host`; the
    directory, which is yielded, is removed on leaving."""
    directory = NETNS_ETC / host.netns
    directory.mkdir(parents=True, exist_ok=False)
    try:
        for name, text in files.items():
            (directory / name).write_text(text)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            NETNS_ETC.rmdir()  # only if no other namespace has files there


def upstream_dns(host: Host, address: str, domain: str, names: Mapping[str, str]) -> None:
    """A DNS server on UDP `address`:53 of `host` answering NAME.`domain` A with the
    address `names` gives; returns once it listens (the lab stops it)."""
    argv = [sys.executable, "-c", _UPSTREAM, domain, address]
    argv += [f"{name}={ip}" for name, ip in names.items()]
    proc = host.popen(*argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        raise AssertionError(f"the upstream DNS server did not start: {line!r}")


__all__ = ["private_etc", "upstream_dns"]
