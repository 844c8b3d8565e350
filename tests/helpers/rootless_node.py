"""An unprivileged WireGuard node with no TUN, for the rootless tests.

Run as root, it drops to UID (no groups, no capabilities), shows that a TUN
cannot be made, then runs a `UserspaceTunnel` to one peer and answers ICMP
echo requests to ADDRESS on its `PacketLink` in Python. Before serving it
pings PEER_ADDRESS itself (the handshake starts from this side)::

    python -m helpers.rootless_node UID PEER_KEY ENDPOINT ADDRESS PEER_ADDRESS < private-key

The interpreter may live where the user cannot read (a pyenv under /root),
and pywg, asyncio and cryptography import modules lazily on first use: so
before the privileges go, a throw-away pair of user-space tunnels on this
namespace's loopback exchanges one echo, which imports all of it. The tunnel
to the peer is made only after the drop.

It prints one line per step ("caps 0", "tun refused: ...", "outbound ok", "ready")
and serves until its stdin closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401  (run_in_executor's pool, imported lazily)
import os
import sys
from collections.abc import Sequence

from helpers.icmp import ECHO_REPLY, echo_reply_to, echo_request, parse_echo
from pywg.asyncio.tun import Tun, TunError
from pywg.asyncio.userspace import UserspaceTunnel
from pywg.keys import PrivateKey


async def warm_up() -> None:
    """One echo between two user-space tunnels on loopback (imports what they use)."""
    keys = PrivateKey.generate(), PrivateKey.generate()
    a, b = UserspaceTunnel(private_key=keys[0]), UserspaceTunnel(private_key=keys[1])
    async with a, b:
        a.add_peer(keys[1].public_key, ["10.9.0.2/32"], ("127.0.0.1", b.listen_port))
        b.add_peer(keys[0].public_key, ["10.9.0.1/32"], ("127.0.0.1", a.listen_port))
        got: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def answer(packets: Sequence[bytes]) -> None:
            b.link.send([r for p in packets if (r := echo_reply_to(p, "10.9.0.2")) is not None])

        def arrived(packets: Sequence[bytes]) -> None:
            if not got.done():
                got.set_result(None)

        b.link.set_receiver(answer)
        a.link.set_receiver(arrived)
        a.link.send([echo_request("10.9.0.1", "10.9.0.2", 1, 1)])
        await asyncio.wait_for(got, 5)


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def effective_capabilities() -> int:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    raise RuntimeError("no CapEff in /proc/self/status")


def say(line: str) -> None:
    print(line, flush=True)


async def serve(peer_key: str, endpoint: str, address: str, peer_address: str) -> None:
    private_key = sys.stdin.readline().strip()
    tunnel = UserspaceTunnel("rootless", private_key=private_key)
    await tunnel.start()
    say(f"plane {'native' if tunnel.native else 'pure'}")
    loop = asyncio.get_running_loop()
    replied: asyncio.Future[None] = loop.create_future()

    def receive(packets: Sequence[bytes]) -> None:
        answers = []
        for packet in packets:
            reply = echo_reply_to(packet, address)
            if reply is not None:
                answers.append(reply)
            echo = parse_echo(packet)
            if echo is not None and echo[0] == ECHO_REPLY and not replied.done():
                replied.set_result(None)
        if answers:
            tunnel.link.send(answers)

    tunnel.link.set_receiver(receive)
    host, _, port = endpoint.rpartition(":")
    tunnel.add_peer(peer_key, [f"{peer_address}/32"], (host, int(port)))
    for seq in range(20):
        tunnel.link.send([echo_request(address, peer_address, 0x7777, seq)])
        done, _ = await asyncio.wait([replied], timeout=0.5)
        if done:
            break
    say("outbound ok" if replied.done() else "outbound failed")
    say("ready")
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    tunnel.close()


def main() -> None:
    uid, peer_key, endpoint, address, peer_address = sys.argv[1:6]
    asyncio.run(warm_up())
    drop_privileges(int(uid))
    say(f"uid {os.getuid()} caps {effective_capabilities():x}")
    try:
        Tun("pwrootless0").close()
        say("tun made")
    except TunError as exc:
        say(f"tun refused: {exc.strerror}")
    asyncio.run(serve(peer_key, endpoint, address, peer_address))


if __name__ == "__main__":
    main()
