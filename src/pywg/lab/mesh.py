"""A mesh in the lab: `pywg coordinator` on a public host, `pywg join` nodes behind NATs.

Used by the mesh tests (tests/mesh/test_mesh_nat.py) and benches/mesh.py::

    with Lab("pwmesh") as lab:
        mesh = MeshLab(lab, Path(tmpdir))             # coordinator + its relay on "hub"
        a = mesh.node("a", mesh.net.behind_nat("a", "endpoint-independent"))
        b = mesh.node("b", mesh.net.behind_nat("b", "symmetric"))
        mesh.wait_up(a, peers=1)
        a.host.wait_ping(b.addr4())

By default the coordinator runs its own relay (a child process, relay 1 of
the map, named ``hub``, on the hub's UDP 3478 and TCP 443). With
``home_relays=N`` the mesh has N home relays (`pywg relay serve`, each on a
public host of its own, ``relay1`` ...; docs/relay.md) in the coordinator's
relay map (``--home-relay``), reading the members from the coordinator, and,
with ``peered``, dialing each other; they come instead of the own relay
(numbered 1..N) unless ``own_relay`` asks for both (then they are 2..N+1,
and the own relay dials them). `relays` holds them all, by number::

    mesh = MeshLab(lab, Path(tmpdir), home_relays=2)
    mesh.kill_relay(1)                              # SIGKILL: the relay dies
    mesh.wait_relayed(a, b, number=2)               # a holds b behind relay 2

Killing the own relay (``kill_relay(1)`` of a default mesh) kills the
coordinator's child; the coordinator starts it again.

Everything runs as the real commands would on real machines: each process
in its own lab namespace, the coordinator and the nodes talking over the
lab's internet through nftables NATs (`pywg.lab.nat`). What the tests
check they read from the outside: `wg show` in a node's namespace, the
node's interface addresses, pings, and datagrams captured at the relay.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .. import relayed
from ..endpoint import parse_endpoint
from ..mesh import tls
from .hosts import Host, Lab
from .nat import Internet, Site

NET4 = "198.19.77.0/24"
NET6 = "fd19:77::/64"
API_PORT = 8580
OWN_RELAY = "hub"  # the own relay's name in the map (--relay-name)
HOME_UDP_PORT = 3478  # a home relay's ports (`pywg relay serve`'s defaults)
HOME_TCP_PORT = 443
PYWG = [sys.executable, "-m", "pywg"]


@dataclass
class Node:
    name: str
    site: Site
    ifname: str
    state: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)

    @property
    def host(self) -> Host:
        return self.site.host

    def addresses(self) -> list[str]:
        """The tunnel addresses the coordinator gave (as on the interface)."""
        out = self.host.ip("-j", "address", "show", "dev", self.ifname)
        found = []
        for link in json.loads(out):
            for info in link.get("addr_info", []):
                if info.get("scope") == "global":
                    found.append(str(info["local"]))
        return found

    def addr4(self) -> str:
        return next(a for a in self.addresses() if ipaddress.ip_address(a).version == 4)

    def addr6(self) -> str:
        return next(a for a in self.addresses() if ipaddress.ip_address(a).version == 6)

    def wg(self, *args: str) -> str:
        return self.host.run("wg", "show", self.ifname, *args, timeout=15).stdout

    def public_key(self) -> str:
        return self.wg("public-key").strip()

    def endpoints(self) -> dict[str, str]:
        """peer public key -> endpoint, as `wg show IFACE endpoints` says."""
        pairs = (line.split("\t") for line in self.wg("endpoints").splitlines() if line)
        return {key: endpoint for key, endpoint in pairs}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class HomeRelayProcess:
    """A `pywg relay serve` of the mesh: relay `number` of the map, on its public host
    (`own`: the coordinator's relay, its child process, on the hub; logging to its log)."""

    number: int
    name: str
    site: Site
    state: Path
    log: Path
    key: str = ""  # the relay key, base64
    proc: subprocess.Popen[bytes] | None = None
    own: bool = False

    @property
    def addr4(self) -> str:
        return self.site.addr4

    def map_entry(self) -> str:
        """Its --home-relay argument for the coordinator."""
        return f"{self.name}={self.key}@{self.addr4}:{HOME_UDP_PORT}:{HOME_TCP_PORT}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class MeshLab:
    """A coordinator (with its relay) on public host `hub` of an `Internet`, and nodes."""

    def __init__(
        self,
        lab: Lab,
        tmp: Path,
        *,
        auto_approve: bool = False,
        relay6: bool = False,
        tls: bool = True,
        home_relays: int = 0,
        peered: bool = True,
        own_relay: bool | None = None,
        node_env: dict[str, str] | None = None,
    ) -> None:
        """`relay6`: the own relay (and STUN) is announced at the hub's IPv6 address, so
        nodes reach it, and each other's mappings, over IPv6.
        `tls`: the coordinator serves HTTPS with a certificate it makes (`serve`'s
        default); False: plain HTTP (`serve --plain-http`).
        `home_relays`: that many home relays in the relay map, dialing each other if
        `peered`; `own_relay`: whether the coordinator runs its own relay too (default:
        only without home relays). `node_env`: added to every node's environment
        (``{"PYWG_BACKEND": "pure"}``: the pure data plane)."""
        self.node_env = node_env
        self.relay6 = relay6
        self.own_relay = not home_relays if own_relay is None else own_relay
        self.tls = tls
        self.lab = lab
        self.tmp = tmp
        self.net = Internet(lab)
        self.hub = self.net.public("hub")
        self.state = tmp / "coordinator"
        self.auto_approve = auto_approve
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, Node] = {}
        self._logs: list[IO[bytes]] = []
        first = 1 + self.own_relay
        self.relays = [self._relay_host(n) for n in range(first, first + home_relays)]
        if self.own_relay:
            own = HomeRelayProcess(
                1, OWN_RELAY, self.hub, self.state / "relay", self.tmp / "coordinator.log", own=True
            )
            self.relays.insert(0, own)
        self.start_coordinator()
        self.coordinator_key = self.admin("key").strip()
        for relay in self.relays:
            if not relay.own:
                self.start_relay(relay, peered=peered)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.hub.addr4}:{API_PORT}"

    def admin(self, *args: str) -> str:
        """A `pywg coordinator` admin command on the state directory (no network)."""
        done = subprocess.run(
            [*PYWG, "coordinator", *args, "--state", str(self.state)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"pywg coordinator {' '.join(args)}: {done.stderr}")
        return done.stdout

    def token(self, *extra: str) -> str:
        out = self.admin("token", *extra)
        words = [w for line in out.splitlines() for w in line.split()]
        return next(w for w in words if w.count(".") in (1, 2) and len(w) > 40 and "/" not in w)

    def start_coordinator(self) -> None:
        """`pywg coordinator serve` on the hub; returns once it answers and its own relay
        (if it runs one) listens."""
        log = open(self.tmp / "coordinator.log", "ab")  # noqa: SIM115 (closed in close())
        self._logs.append(log)
        argv = [
            *PYWG, "coordinator", "serve", "--state", str(self.state),
            "--listen", f"{self.hub.addr4}:{API_PORT}",
            "--ipv4", NET4, "--ipv6", NET6,
        ]  # fmt: skip
        if self.own_relay:
            host = self.hub.addr6 if self.relay6 else self.hub.addr4
            argv += ["--relay-host", host, "--relay-name", OWN_RELAY]
            argv += ["--relay-port", str(HOME_UDP_PORT), "--relay-tcp-port", str(HOME_TCP_PORT)]
        else:
            argv.append("--no-relay")
        for relay in self.relays:  # the map's relays may read the members: no --relay-key
            if not relay.own:
                argv += ["--home-relay", relay.map_entry()]
        if self.auto_approve:
            argv.append("--auto-approve-routes")
        if not self.tls:
            argv.append("--plain-http")
        started = self.own_relay_starts()
        self.coordinator = self.hub.host.popen(*argv, stdout=log, stderr=log)
        if not self.wait_health(20):
            raise AssertionError("the coordinator did not come up:\n" + self.coordinator_log())
        if self.own_relay:
            self.wait_own_relay(started)

    def own_relay_starts(self) -> int:
        """How many times the own relay has said it listens (its start-up line, logged by
        the coordinator), over every run of the coordinator."""
        return self.coordinator_log().count("relay: relay ")

    def wait_own_relay(self, starts: int, seconds: float = 20) -> None:
        """Until the own relay has said it listens more than `starts` times; learns its key."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            text = self.coordinator_log()
            if text.count("relay: relay ") > starts:
                self.relays[0].key = text.rpartition("relay: relay ")[2].split()[0]
                return
            time.sleep(0.2)
        raise AssertionError("the own relay did not come up:\n" + self.coordinator_log())

    def own_relay_pid(self) -> int | None:
        """The pid of the coordinator's relay (its child `pywg relay serve`), None if none."""
        if self.coordinator is None:
            return None
        pid = self.coordinator.pid
        children: list[str] = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                    children += handle.read().split()
        for child in children:
            with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as handle:
                if b"\0relay\0serve\0" in handle.read():
                    return int(child)
        return None

    def _relay_host(self, number: int) -> HomeRelayProcess:
        """The public host of home relay `number`, and its relay key (made in its state)."""
        name = f"relay{number}"
        relay = HomeRelayProcess(
            number, name, self.net.public(name), self.tmp / name, self.tmp / f"{name}.log"
        )
        made = relay.site.host.run(*PYWG, "relay", "key", "--state", str(relay.state))
        relay.key = made.stdout.strip()
        return relay

    def start_relay(self, relay: HomeRelayProcess, *, peered: bool = True) -> None:
        """`pywg relay serve` for `relay`, following the coordinator's members; with
        `peered`, dialing every other relay of the map. Returns once it listens."""
        log = open(relay.log, "ab")  # noqa: SIM115 (closed in close())
        self._logs.append(log)
        argv = [
            *PYWG, "relay", "serve", "--state", str(relay.state),
            "--coordinator", self.url, "--coordinator-key", self.coordinator_key,
            "--listen", relay.addr4, "--udp-port", str(HOME_UDP_PORT),
            "--tcp-port", str(HOME_TCP_PORT),
        ]  # fmt: skip
        if self.tls:  # the coordinator's self-made certificate, as its start-up line gives it
            own = tls.self_made(str(self.state))
            assert own is not None, "the coordinator made no certificate"
            argv += ["--coordinator-pin", own.pin.hex()]
        if peered:
            for other in self.relays:
                if other is not relay:
                    argv += ["--peer", f"{other.key}@{other.addr4}:{HOME_TCP_PORT}"]
        relay.proc = relay.site.host.popen(*argv, stdout=subprocess.PIPE, stderr=log)
        assert relay.proc.stdout is not None
        ready, _, _ = select.select([relay.proc.stdout], [], [], 20)
        line = relay.proc.stdout.readline().decode() if ready else ""
        if not line.startswith(f"relay {relay.key} "):
            raise AssertionError(f"{relay.name} did not come up ({line!r}):\n{relay.log_text()}")

    def kill_relay(self, number: int) -> None:
        """Home relay `number` dies (SIGKILL: nothing said to anyone). The own relay is
        started again by the coordinator."""
        relay = self.relays[number - 1]
        if relay.own:
            pid = self.own_relay_pid()
            assert pid is not None, "the coordinator runs no relay"
            os.kill(pid, signal.SIGKILL)
        elif relay.proc is not None:
            relay.proc.kill()
            relay.proc.wait(15)
            relay.proc = None

    def wait_relayed(self, node: Node, peer: Node, number: int, seconds: float = 40) -> str:
        """Until `node` holds `peer` at a relayed endpoint behind relay `number`
        (``[100::ID]:number``, `pywg.relayed`); that endpoint."""
        key = peer.public_key()
        end = time.monotonic() + seconds
        last = ""
        while time.monotonic() < end:
            last = node.endpoints().get(key, "")
            with contextlib.suppress(ValueError):
                found = relayed.parse(parse_endpoint(last))
                if found is not None and found[0] == number:
                    return last
            time.sleep(0.3)
        raise AssertionError(
            f"{node.name} -> {peer.name}: endpoint {last!r}, not behind relay {number}\n"
            f"{node.log_text()}"
        )

    def stop_coordinator(self) -> None:
        if self.coordinator is not None:
            self.coordinator.terminate()
            self.coordinator.wait(15)
            self.coordinator = None

    def coordinator_log(self) -> str:
        return (self.tmp / "coordinator.log").read_text(errors="replace")

    def wait_health(self, seconds: float) -> bool:
        code = (  # the health check only: any certificate (the nodes pin it)
            "import ssl, sys, urllib.request\n"
            "try:\n"
            f"    urllib.request.urlopen('{self.url}/v1/health', timeout=1,\n"
            "        context=ssl._create_unverified_context()).read()\n"
            "except Exception:\n"
            "    sys.exit(1)\n"
        )
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            done = self.hub.host.run(sys.executable, "-c", code, check=False, timeout=10)
            if done.returncode == 0:
                return True
            time.sleep(0.3)
        return False

    def node(
        self,
        name: str,
        site: Site,
        *,
        routes: str = "",
        token: str | None = None,
        extra: tuple[str, ...] = (),
        command: tuple[str, ...] = (),
    ) -> Node:
        """Start `pywg join` on `site` as node `name`. It tells no resolver about the
        mesh's names (``--resolver none``: a lab host shares the machine's /etc/hosts);
        `extra` may say otherwise (tests/mesh/test_mesh_names.py gives each its own).
        `command` runs instead of ``python -m pywg`` (a modified agent: the tests of
        what a tampering node can do, tests/mesh/test_mesh_policy.py)."""
        ifname = self.lab.ifname("m")
        node = Node(name, site, ifname, self.tmp / f"node-{name}", self.tmp / f"{name}.log")
        node.args = [
            *(command or PYWG), "join", self.url, "--name", name, "--interface", ifname,
            "--state", str(node.state), "-v", "--resolver", "none",
        ]  # fmt: skip
        if routes:
            node.args += ["--advertise-routes", routes]
        node.args += extra
        self.nodes[name] = node
        self.start(node, token if token is not None else self.token())
        return node

    def join_from_hub(
        self, token: str, state: str = "intruder"
    ) -> subprocess.CompletedProcess[str]:
        """`pywg join` once, in the foreground, from the hub with `token` (a node that is
        expected to be refused): its exit status and output."""
        return subprocess.run(
            self.hub.host.exec_argv(
                *PYWG, "join", self.url, f"--token={token}",
                "--interface", self.lab.ifname("x"), "--state", str(self.tmp / state),
            ),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def pair(
        self, a_site: Site, b_site: Site, *, extra_a: tuple[str, ...] = ()
    ) -> tuple[Node, Node]:
        """Nodes "a" and "b" on the two sites, each up with the other as its peer."""
        a = self.node("a", a_site, extra=extra_a)
        b = self.node("b", b_site)
        self.wait_up(a, 1)
        self.wait_up(b, 1)
        return a, b

    def start(self, node: Node, token: str | None = None) -> None:
        log = open(node.log, "ab")  # noqa: SIM115 (closed in close())
        self._logs.append(log)
        argv = list(node.args) + ([f"--token={token}"] if token else [])
        node.proc = node.host.popen(*argv, stdout=log, stderr=log, env=self.node_env)

    def stop(self, node: Node) -> None:
        if node.proc is not None:
            node.proc.terminate()
            node.proc.wait(15)
            node.proc = None

    def wait_up(self, node: Node, peers: int, seconds: float = 30) -> None:
        """Until the node's interface has its addresses and `peers` peers."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if node.proc is not None and node.proc.poll() is not None:
                raise AssertionError(f"{node.name} exited:\n{node.log_text()}")
            try:
                if len(node.addresses()) >= 2 and len(node.endpoints()) >= peers:
                    return
            except Exception:  # not up yet
                pass
            time.sleep(0.3)
        raise AssertionError(f"{node.name} not up with {peers} peers:\n{node.log_text()}")

    def wait_endpoint(self, node: Node, peer: Node, host: str, seconds: float = 40) -> str:
        """Until `node` sends to `peer` at an endpoint on `host`; that endpoint."""
        key = peer.public_key()
        end = time.monotonic() + seconds
        last = ""
        while time.monotonic() < end:
            last = node.endpoints().get(key, "")
            if last.rpartition(":")[0].strip("[]") == host:
                return last
            time.sleep(0.5)
        raise AssertionError(
            f"{node.name} -> {peer.name}: endpoint {last!r}, not on {host}\n{node.log_text()}"
        )

    def close(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
        for relay in self.relays:
            if relay.proc is not None and relay.proc.poll() is None:
                relay.proc.terminate()
                try:
                    relay.proc.wait(10)
                except subprocess.TimeoutExpired:
                    relay.proc.kill()
        self.stop_coordinator()
        for log in self._logs:
            log.close()


def dump(mesh: MeshLab) -> str:
    """Every log, for a failing assertion."""
    parts = [f"--- coordinator\n{mesh.coordinator_log()[-4000:]}"]
    parts += [f"--- {n.name}\n{n.log_text()[-4000:]}" for n in mesh.nodes.values()]
    parts += [f"--- {r.name}\n{r.log_text()[-3000:]}" for r in mesh.relays if not r.own]
    return "\n".join(parts)


__all__ = ["OWN_RELAY", "HomeRelayProcess", "MeshLab", "Node", "dump"]
