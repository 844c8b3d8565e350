"""pywg.mesh.home: which home relay a node picks, when it leaves it, where it goes.

The ranking and the failure rule are sans-IO (virtual time). `HomeRelays`
runs on an event loop with stand-ins for the RelayLink (a transport the
test sets) and the tunnel's STUN (answered unless the relay is "dead"), and
with the failure bounds shortened, so moves take a fraction of a second.
The agent with real relays is in test_mesh_home_relay.py (namespace lab).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from pywg import stun
from pywg.mesh import home, wire
from pywg.mesh.home import HomeRelays, Measure, Watch, rank
from pywg.mesh.relayclient import NodeIdentity
from pywg.mesh.schema import HomeRelay

pytestmark = pytest.mark.time_limit(20)

R1 = HomeRelay(1, "fra", bytes([1]) * 32, "198.18.9.1")
R2 = HomeRelay(2, "nyc", bytes([2]) * 32, "198.18.9.2")
R3 = HomeRelay(3, "syd", bytes([3]) * 32, "198.18.9.3")


def test_rank_prefers_udp_then_tcp_then_the_map_order() -> None:
    measures = {
        1: Measure(udp=None, tcp=0.002),
        2: Measure(udp=0.030, tcp=0.001),
        3: Measure(udp=0.010),
    }
    assert rank([R1, R2, R3], measures) == [R3, R2, R1]
    assert rank([R1, R2, R3], {}) == [R1, R2, R3]  # nothing answered: as configured
    assert rank([R1, R2, R3], {3: Measure(tcp=0.5)}) == [R3, R1, R2]
    assert rank([R1, R2], {1: Measure(udp=0.01), 2: Measure(udp=0.01)}) == [R1, R2]


def test_watch_fails_a_home_without_transport_or_udp_answers() -> None:
    watch = Watch(100.0)
    watch.saw(None, 100.0)
    assert watch.failure(100.0 + home.NO_TRANSPORT - 0.1) is None  # UDP timeout, TCP set-up
    assert watch.failure(100.0 + home.NO_TRANSPORT) == "no transport for 10 s"
    watch = Watch(100.0)
    watch.saw("udp", 101.0)  # up: the association answered
    assert watch.failure(101.0 + home.UDP_SILENCE - 0.1) is None
    watch.answered(104.0)
    assert watch.failure(104.0 + home.UDP_SILENCE - 0.1) is None
    assert watch.failure(104.0 + home.UDP_SILENCE) == "no answer over UDP for 5 s"
    watch = Watch(100.0)
    watch.saw("tcp", 101.0)  # TCP says itself when it breaks: no STUN checks
    watch.saw("tcp", 130.0)
    assert watch.failure(130.0) is None
    watch.saw(None, 131.0)
    assert watch.failure(130.0 + home.NO_TRANSPORT - 0.1) is None
    assert watch.failure(130.0 + home.NO_TRANSPORT) is not None


class FakeLink:
    def __init__(self, relay: HomeRelay, transport: str | None) -> None:
        self.relay = relay
        self.transport: str | None = None
        self.comes_up = transport
        self.closed = False
        self.refreshes = 0

    async def start(self) -> None:
        self.transport = self.comes_up

    def refresh(self) -> None:
        self.refreshes += 1

    def close(self) -> None:
        self.closed = True
        self.transport = None


class FakeTunnel:
    """STUN answered by every relay host but those in `dead`; naming the node (it is
    associated) but by those in `forgot`."""

    def __init__(self) -> None:
        self.dead: set[str] = set()
        self.forgot: set[str] = set()
        self.checks = 0

    async def stun_request(self, target: tuple[str, int], **_: Any) -> stun.BindingResponse:
        self.checks += 1
        if target[0] in self.dead:
            await asyncio.sleep(0.05)
            raise TimeoutError
        tid, mapped = stun.new_transaction_id(), ("198.18.0.9", 51820)
        if target[0] in self.forgot:
            return stun.parse_binding_response(stun.binding_success(tid, mapped))
        return stun.parse_binding_response(wire.association_answer(tid, mapped, 7))


class Scene:
    def __init__(self, measures: dict[int, Measure], transports: dict[int, str | None]) -> None:
        self.tunnel = FakeTunnel()
        self.links: list[FakeLink] = []
        self.measured = 0
        self.transports = transports

        def link(relay: HomeRelay) -> FakeLink:
            made = FakeLink(relay, self.transports.get(relay.number, "udp"))
            self.links.append(made)
            return made

        async def measurer(relay: HomeRelay) -> Measure:
            self.measured += 1
            return measures.get(relay.number, Measure())

        identity = NodeIdentity(bytes(32), cast(Any, None))
        self.home = HomeRelays(cast(Any, self.tunnel), identity, link=link, measurer=measurer)

    async def until(self, check: Callable[[], bool], seconds: float = 3.0) -> None:
        async with asyncio.timeout(seconds):
            while not check():
                await asyncio.sleep(0.02)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(home, "NO_TRANSPORT", 0.4)
    monkeypatch.setattr(home, "UDP_SILENCE", 0.3)
    monkeypatch.setattr(home, "CHECK_INTERVAL", 0.1)
    monkeypatch.setattr(home, "TICK", 0.02)


def test_the_best_home_is_kept_then_the_next_best_taken(fast: None) -> None:
    async def scenario() -> None:
        measures = {1: Measure(udp=0.02), 2: Measure(udp=0.01), 3: Measure(tcp=0.001)}
        scene = Scene(measures, {3: "tcp"})
        keeper = scene.home
        assert keeper.number is None and not keeper.up
        keeper.set_map([R1, R2, R3])
        task = asyncio.create_task(keeper.run())
        try:
            await scene.until(lambda: keeper.up)
            assert keeper.number == 2 and scene.measured == 3
            await asyncio.sleep(0.5)  # it works: kept, and checked over UDP
            assert keeper.number == 2 and keeper.moves == 0 and scene.tunnel.checks >= 3
            # nyc stops answering over UDP (the process died): fra, next in the ranking
            scene.tunnel.dead.add(R2.host)
            await scene.until(lambda: keeper.number == 1 and keeper.up)
            assert scene.links[0].closed and keeper.moves == 1
            assert scene.measured == 3  # moved without measuring again
            # fra's link loses its transport for good: syd, which took only TCP
            scene.transports[1] = None
            scene.links[-1].transport = None
            await scene.until(lambda: keeper.number == 3 and keeper.up)
            assert keeper.link is not None and keeper.link.transport == "tcp"
            assert keeper.moves == 2
            # nyc is back; syd fails too: the ranking is used up, so all are measured again
            scene.tunnel.dead.clear()
            scene.transports[3] = None
            scene.links[-1].transport = None
            await scene.until(lambda: scene.measured == 6)
            await scene.until(lambda: keeper.number == 2 and keeper.up)
            await asyncio.sleep(0.5)
            assert keeper.number == 2 and keeper.moves == 3
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert all(link.closed for link in scene.links)

    asyncio.run(scenario())


def test_a_home_that_leaves_the_map_is_left(fast: None) -> None:
    async def scenario() -> None:
        scene = Scene({1: Measure(udp=0.01), 2: Measure(udp=0.02)}, {})
        keeper = scene.home
        keeper.set_map([R1, R2])
        task = asyncio.create_task(keeper.run())
        try:
            await scene.until(lambda: keeper.number == 1 and keeper.up)
            keeper.set_map([R1, R2])  # the same map: nothing happens
            keeper.set_map([R2, R3])
            await scene.until(lambda: keeper.number == 2 and keeper.up)
            assert scene.links[0].closed and keeper.moves == 0
            keeper.set_map([])
            await scene.until(lambda: keeper.number is None and not keeper.up)
            assert all(link.closed for link in scene.links)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_a_home_that_forgot_the_node_is_associated_with_again(fast: None) -> None:
    """A relay whose STUN answer does not name the node (its process restarted, and lost
    its associations) gets a new association at once, not at the next refresh."""

    async def scenario() -> None:
        scene = Scene({1: Measure(udp=0.01)}, {})
        keeper = scene.home
        keeper.set_map([R1])
        task = asyncio.create_task(keeper.run())
        try:
            await scene.until(lambda: keeper.up)
            (link,) = scene.links
            await asyncio.sleep(0.3)  # checks answered with the node's id: nothing to do
            assert link.refreshes == 0 and scene.tunnel.checks >= 2
            scene.tunnel.forgot.add(R1.host)
            await scene.until(lambda: link.refreshes >= 1)
            scene.tunnel.forgot.clear()  # associated again
            refreshes = link.refreshes
            await asyncio.sleep(0.3)
            assert link.refreshes == refreshes and keeper.moves == 0 and scene.links == [link]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
