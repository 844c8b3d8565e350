"""The coordinator's own home relay: `pywg relay serve` as a supervised child process.

`pywg coordinator serve` runs a home relay (docs/relay.md) beside itself
unless told not to, so one command on a server gives a mesh its coordinator
and its relay. The relay runs in a process of its own: relayed traffic
never competes with the coordinator's API for a CPU or an event loop.

- Its state is ``STATE/relay`` (`relayserver.state`: the relay key; the
  self-signed certificate of `pywg.mesh.tls`), made at the first start, so
  its key and its pin stay the same across restarts. `map_entry` gives
  relay number 1 of the relay map from them (`OwnRelay` says how nodes
  reach it).
- It reads the members from the coordinator over loopback, with the signed
  long poll GET /v1/members that separately run relays use: its key is in
  the map, so the coordinator admits it. When the coordinator serves HTTPS,
  the relay pins the coordinator's certificate (``--coordinator-pin``).
  It dials the map's other relays (``--peer``), so nodes homed on either
  reach each other.
- `RelaySupervisor` starts it again whenever it exits (after RESTART_MIN
  seconds, doubling up to RESTART_MAX while it keeps exiting within STABLE
  seconds of its start), and ends it with SIGTERM when the coordinator
  closes. Should the coordinator die without closing, the kernel sends the
  relay SIGTERM (PR_SET_PDEATHSIG, prctl(2)).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ..system import sdnotify
from . import auth, tls
from .relayserver.state import load_or_create_key
from .schema import HomeRelay

log = logging.getLogger("pywg.mesh.coordinator")

RELAY_DIR: Final = "relay"  # under the coordinator's state directory
NUMBER: Final = 1  # the own relay's number in the relay map
RESTART_MIN: Final = 1.0  # seconds before starting an exited relay again
RESTART_MAX: Final = 30.0
STABLE: Final = 30.0  # seconds a relay must run for the next restart to wait RESTART_MIN
STOP_GRACE: Final = 5.0  # seconds the relay has to exit after SIGTERM
PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>


@dataclass(frozen=True, slots=True)
class OwnRelay:
    """The coordinator's relay as configured: `host` is where nodes reach it (a host name or
    address), `listen` the address it binds (``::``: every address, IPv6 and IPv4)."""

    host: str
    name: str = "relay"
    listen: str = "::"
    udp_port: int = 3478  # and its STUN server
    tcp_port: int = 443
    metrics_listen: str | None = None  # HOST:PORT of its Prometheus metrics (docs/metrics.md)


def relay_dir(state_dir: str) -> str:
    """The own relay's state directory inside the coordinator's."""
    return os.path.join(state_dir, RELAY_DIR)


def map_entry(state_dir: str, relay: OwnRelay) -> HomeRelay:
    """Relay number 1 of the relay map: its key and certificate pin from its state directory
    (both made there at the first start)."""
    directory = relay_dir(state_dir)
    key = load_or_create_key(directory)
    certificate = tls.load_or_make(directory, [relay.host])
    return HomeRelay(
        NUMBER,
        relay.name,
        bytes(key.verify_key),
        relay.host,
        relay.udp_port,
        relay.tcp_port,
        pin=certificate.pin,
    )


@dataclass(frozen=True, slots=True)
class Coordinates:
    """Where the relay finds the coordinator: its loopback URL, its key, its pin (HTTPS)."""

    url: str
    key: bytes
    pin: bytes | None = None


def loopback_url(address: tuple[object, ...], https: bool) -> str:
    """The URL of a coordinator listening at `address` (a socket address) from its own
    host: an unspecified address is reached at the loopback address of its family."""
    ip = ipaddress.ip_address(str(address[0]).partition("%")[0])
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{'https' if https else 'http'}://{host}:{address[1]}"


def command(
    state_dir: str,
    relay: OwnRelay,
    coordinator: Coordinates,
    peers: Sequence[HomeRelay] = (),
    *,
    verbose: bool = False,
) -> list[str]:
    """The `pywg relay serve` command line of the own relay."""
    argv = [
        *(sys.executable, "-m", "pywg", "relay", "serve", "--state", relay_dir(state_dir)),
        *("--coordinator", coordinator.url, "--coordinator-key", auth.b64(coordinator.key)),
        *("--listen", relay.listen, "--udp-port", str(relay.udp_port)),
        *("--tcp-port", str(relay.tcp_port), "--hostname", relay.host),
    ]
    if coordinator.pin is not None:
        argv += ["--coordinator-pin", coordinator.pin.hex()]
    if relay.metrics_listen is not None:
        argv += ["--metrics-listen", relay.metrics_listen]
    for other in peers:
        host = f"[{other.host}]" if ":" in other.host else other.host
        argv += ["--peer", f"{auth.b64(other.key)}@{host}:{other.tcp_port}"]
    if verbose:
        argv.append("-v")
    return argv


def _exit_with(parent: int) -> Callable[[], None]:
    """What the child runs before exec: SIGTERM when `parent` dies (PR_SET_PDEATHSIG; it
    survives exec), and exit at once if `parent` died already (then no signal comes)."""
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)

    def prepare() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return prepare


class RelaySupervisor:
    """Runs `argv` as a child process from `start` until `close`, again whenever it exits
    (see the module docstring). `starts` counts its starts; `process` is the current one."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start supervising on the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_MIN
        while True:
            started = loop.time()
            try:
                status: int | str = await self._run_once()
            except OSError as exc:
                status = str(exc)
            ran = loop.time() - started
            if ran >= STABLE:
                delay = RESTART_MIN
            log.warning(
                "the relay exited (%s) after %.1f s; starting it again in %.0f s",
                status,
                ran,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(2 * delay, RESTART_MAX)

    async def _run_once(self) -> int:
        """Start the relay, log what it says on stdout (its start-up line), wait for its end."""
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # stderr: the coordinator's, so one log has both
            env=sdnotify.child_environment(),  # the coordinator alone speaks for its unit
            preexec_fn=_exit_with(os.getpid()),
        )
        self.process = process
        self.starts += 1
        log.info("relay started (pid %d)", process.pid)
        assert process.stdout is not None
        async for line in process.stdout:
            log.info("relay: %s", line.decode("utf-8", "replace").strip())
        return await process.wait()

    async def close(self) -> None:
        """Stop supervising and end the relay: SIGTERM, SIGKILL after STOP_GRACE seconds."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
