"""The coordinator over HTTPS: a certificate it makes itself, pinned by the join token.

`pywg.mesh.tls` makes the certificate once (kept with the state, key 0600);
tokens of such a coordinator carry its pin (SHA-256 of the DER certificate),
and a node accepts exactly that certificate: a server presenting any other
(someone in between, another coordinator) is refused before a byte of the
request is sent, and so is a client that would check it against the
system's CAs instead. Servers and clients run in a lab host's namespace.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from helpers.mesh_harness import Coordinators, Member
from pywg.lab import Host
from pywg.lab.mesh import MeshLab
from pywg.mesh import auth, tls
from pywg.mesh.client import CoordinatorError
from pywg.mesh.coordinator import new_token
from pywg.mesh.store import Store

DEADLINE = 30.0


def run_in(host: Host, scenario: object) -> None:
    host.ip("link", "set", "lo", "up")

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), DEADLINE)  # type: ignore[operator]

    host.call(lambda: asyncio.run(bounded()))


def test_certificate_made_once_private_and_pinned(tmp_path: Path) -> None:
    cert = tls.load_or_make(str(tmp_path), ["198.18.0.1", "coordinator.example"])
    assert stat.S_IMODE(os.stat(cert.key_path).st_mode) == 0o600
    pem = Path(cert.cert_path).read_bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert cert.pin == hashlib.sha256(der).digest()
    names = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(n.value) for n in names.value] == ["198.18.0.1", "coordinator.example"]
    assert tls.load_or_make(str(tmp_path)).pin == cert.pin  # made once, kept
    assert tls.parse_pin(tls.format_pin(cert.pin)) == cert.pin
    for bad in ("", "x" * 42, "x" * 44, "!" * 43):
        with pytest.raises(tls.TlsError):
            tls.parse_pin(bad)


def test_tokens_pin_the_self_made_certificate_only(tmp_path: Path) -> None:
    from nacl.signing import SigningKey

    key = SigningKey.generate()
    store = Store(str(tmp_path))
    try:
        plain = auth.parse_token(new_token(store, key, 600))
        assert plain.tls_pin is None  # plain HTTP (or a CA's certificate): nothing to pin
        cert = tls.load_or_make(str(tmp_path))
        pinned = auth.parse_token(new_token(store, key, 600))
        assert pinned.tls_pin == cert.pin
        assert pinned.fingerprint == auth.fingerprint(bytes(key.verify_key))
    finally:
        store.close()


@pytest.mark.needs_lab
def test_join_over_https_only_with_the_pinned_certificate(
    host: Host, tmp_path: Path, coordinator: Coordinators
) -> None:
    state = tmp_path / "coordinator"
    state.mkdir(mode=0o700)
    cert = tls.load_or_make(str(state), ["127.0.0.1"])
    other = tls.load_or_make(str(tmp_path))  # another certificate: someone in between

    async def scenario() -> None:
        async with coordinator(("n",), state=state, certificate=cert) as running:
            assert running.url.startswith("https://")
            token = running.coordinator.new_token(600, reusable=True)
            secret_and_key, _, pin_text = token.rpartition(".")
            assert tls.parse_pin(pin_text) == cert.pin
            await refused(Member("w", running.url), f"{secret_and_key}.{tls.format_pin(other.pin)}")
            await refused(Member("p", running.url), secret_and_key, "certificate verify failed")
            await refused(Member("h", running.url.replace("https", "http")), token, "https://")
            (member,) = running.members
            await member.join(token)
            assert member.client.tls_pin == cert.pin
            roster = await member.roster(0, 0)
            assert roster["self"]["name"] == "n"

    async def refused(member: Member, token: str, why: str = "pinned one") -> None:
        try:
            with pytest.raises(CoordinatorError, match=why):
                await member.join(token)
            assert member.client.coordinator_key is None
        finally:
            await member.client.close()

    run_in(host, scenario)


@pytest.mark.needs_lab("nft")
@pytest.mark.time_limit(120)
def test_nodes_join_a_coordinator_serving_https(mesh_lab: Callable[..., MeshLab]) -> None:
    """`pywg coordinator serve` (HTTPS by default) and `pywg join https://…` as processes: two nodes
    behind symmetric NATs join with the pinning token and reach each other through the
    coordinator's own relay, which reads the members over HTTPS pinning the certificate
    (`--coordinator-pin`); a node whose token pins another certificate is refused and
    never joins."""
    mesh = mesh_lab(tls=True)
    token = mesh.token("--reusable")
    assert token.count(".") == 2 and mesh.url.startswith("https://")
    a = mesh.node("a", mesh.net.behind_nat("a", "symmetric"), token=token)
    b = mesh.node("b", mesh.net.behind_nat("b", "symmetric"), token=token)
    mesh.wait_up(a, 1)
    mesh.wait_up(b, 1)
    mesh.wait_relayed(a, b, number=1)
    mesh.wait_relayed(b, a, number=1)
    assert a.host.wait_ping(b.addr4(), deadline=30), mesh.coordinator_log()
    assert "2 members from the coordinator" in mesh.coordinator_log()
    # the start-up line names the certificate the token pins, in hex (for --coordinator-pin)
    pinned = tls.parse_pin(token.rpartition(".")[2])
    assert f"(HTTPS, certificate-sha256 {pinned.hex()})" in mesh.coordinator_log()
    other = tls.load_or_make(str(mesh.tmp))  # not the coordinator's
    wrong = token.rpartition(".")[0] + "." + tls.format_pin(other.pin)
    done = mesh.join_from_hub(wrong)
    assert done.returncode == 1, done.stderr
    assert "certificate is not the pinned one" in done.stderr, done.stderr
    assert "intruder" not in mesh.admin("nodes")
