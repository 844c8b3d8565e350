"""`pywgd`: a userspace WireGuard daemon with wireguard-go's command line.

    pywgd [-f|--foreground] INTERFACE
    pywgd --version

and, beyond wireguard-go's, `--metrics-listen HOST:PORT` (or the environment's
PYWG_METRICS_LISTEN) for Prometheus metrics (docs/metrics.md).

Like wireguard-go (the contract wg-quick(8) relies on): without -f (and
without WG_PROCESS_FOREGROUND=1) it daemonizes, and the parent exits only once
the UAPI socket /var/run/wireguard/INTERFACE.sock is listening, so that
`wg-quick` can run `wg setconf` right after. The daemon creates the TUN
interface (MTU 1420, left down: wg-quick or the user brings it up), starts
with no private key, and exits, removing interface and socket, on SIGINT,
SIGTERM or SIGHUP, when the interface is deleted, or when the socket file is
removed. SIGUSR2, SIGALRM and the like are ignored, as wireguard-go ignores them.

A supervisor that opens the TUN and the UAPI socket itself (before dropping
privileges) hands them over as wireguard-go's main.go takes them: WG_TUN_FD,
the decimal number of an open TUN fd (its interface's own name then replaces
INTERFACE), and WG_UAPI_FD, that of an AF_UNIX stream socket already bound and
listening (normally at the path above). See docs/daemon.md.

LOG_LEVEL is verbose|debug (everything), error (the default) or silent.
PYWG_INBOUND_RULES names a file of access-policy rules for this node in their
compact JSON form (`pywg.policy.encode`, docs/policy.md): what it does not
allow is dropped on arrival, replies to this node's own flows excepted.
SIGUSR1 writes a line of health counters (drops by reason, table sizes, the
native plane's counters; never a key) to the log (LOG_LEVEL verbose/debug). A
background daemon keeps stdout/stderr only when LOG_LEVEL asks for output,
as wireguard-go does; otherwise they go to /dev/null, so callers that capture
the parent's output do not hang on the daemon.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final

from pywg import __version__
from pywg.asyncio import TunError, Tunnel, UapiServer, run
from pywg.asyncio.tun import check_ifname, fd_interface
from pywg.cmd.address import UsageError
from pywg.cmd.metrics import ENV as ENV_METRICS
from pywg.cmd.metrics import OPTION as METRICS_OPTION
from pywg.cmd.metrics import Address, parse_listen, serve_metrics, tunnel_metrics
from pywg.policy.rules import decode
from pywg.system import journal, sdnotify

PROG = "pywgd"
ENV_TUN_FD = "WG_TUN_FD"
ENV_INBOUND_RULES = "PYWG_INBOUND_RULES"
ENV_UAPI_FD = "WG_UAPI_FD"
USAGE = f"Usage: {PROG} [-f/--foreground] INTERFACE-NAME"
# A clean shutdown (interface and socket removed). wireguard-go stops cleanly on
# INT and TERM and dies on HUP, leaving its socket file behind.
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Signals whose default action would kill the daemon but which wireguard-go's Go
# runtime catches and ignores (os/signal: "other signals ... no action is taken").
IGNORED_SIGNALS: Final = (
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
)

_LEVELS = {
    "verbose": logging.DEBUG,
    "debug": logging.DEBUG,
    "error": logging.ERROR,
    "silent": logging.CRITICAL + 10,
}
_LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "DEBUG", logging.WARNING: "INFO"}


class _Formatter(logging.Formatter):
    """wireguard-go's style: `DEBUG: (wg0) 2026/01/02 15:04:05 message`.

    `name` may be a callable: the tunnel's name, which becomes the kernel's
    once the TUN is open (a template such as "wg%d", or a handed-over TUN).
    """

    def __init__(self, name: str | Callable[[], str], stamp: bool = True) -> None:
        super().__init__()
        self._name = name
        self._stamp = stamp  # the journal stamps lines itself

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVEL_NAMES.get(record.levelno, "ERROR")
        name = self._name() if callable(self._name) else self._name
        if not self._stamp:
            return f"{level}: ({name}) {record.getMessage()}"
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        return f"{level}: ({name}) {stamp} {record.getMessage()}"


def log_level() -> int:
    return _LEVELS.get(os.environ.get("LOG_LEVEL", "error").strip().lower(), logging.ERROR)


def setup_logging(name: str | Callable[[], str]) -> None:
    journal.setup(sys.stdout, log_level(), _Formatter(name), _Formatter(name, stamp=False))


def handed_fd(variable: str) -> int | None:
    """The fd number in environment `variable` (decimal, as wireguard-go parses it), or None."""
    text = os.environ.get(variable, "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**32:
        raise ValueError(f"{variable}={text!r} is not a file descriptor number")
    return int(text)


async def _start_tunnel(name: str) -> Tunnel:
    """The tunnel on a new TUN `name`, or on the one WG_TUN_FD hands over."""
    tun_fd = handed_fd(ENV_TUN_FD)
    if tun_fd is not None:
        name, _ = fd_interface(tun_fd)  # the TUN's own name replaces the argument
    tunnel = Tunnel(name, tun_fd=tun_fd)
    if os.environ.get(ENV_INBOUND_RULES):  # docs/policy.md
        with open(os.environ[ENV_INBOUND_RULES], encoding="utf-8") as rules:
            tunnel.set_inbound_rules(decode(rules.read()))
    setup_logging(lambda: tunnel.name)  # the kernel's name from the moment the TUN is open
    await tunnel.start()
    return tunnel


async def _start_uapi(tunnel: Tunnel) -> UapiServer:
    """The UAPI server on /var/run/wireguard/NAME.sock, or on the socket WG_UAPI_FD hands over."""
    fd = handed_fd(ENV_UAPI_FD)
    server = UapiServer(tunnel, sock=None if fd is None else socket.socket(fileno=fd))
    await server.start()
    return server


async def serve(name: str, ready: int | None = None, metrics: Address | None = None) -> int:
    """Run the daemon for interface `name`; write to fd `ready` once listening; metrics
    at the address `metrics` if given."""
    log = logging.getLogger("pywg.daemon")
    for signum in IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    try:
        tunnel = await _start_tunnel(name)
    except (TunError, OSError, ValueError) as exc:
        return _fail(ready, f"Failed to create TUN device: {_reason(exc)}")
    try:
        server = await _start_uapi(tunnel)
    except (OSError, ValueError) as exc:
        tunnel.close()
        return _fail(ready, f"Failed to listen on uapi socket: {_reason(exc)}")
    try:
        exporter = await serve_metrics(metrics, tunnel_metrics(lambda: tunnel))
    except OSError as exc:
        server.close()
        tunnel.close()
        return _fail(ready, f"Failed to listen for metrics: {_reason(exc)}")
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, tunnel.close, f"received {signal.Signals(signum).name}")

    def socket_watch() -> None:
        if server.gone():
            tunnel.close(f"UAPI socket {server.path} was removed")

    tunnel.tick_hooks.append(socket_watch)

    def dump_counters() -> None:  # SIGUSR1, as many daemons do: counters into the log
        log.warning("counters %s", json.dumps(tunnel.counters(), sort_keys=True))

    loop.add_signal_handler(signal.SIGUSR1, dump_counters)
    log.info("UAPI listener started on %s", server.path)
    if ready is not None:
        os.write(ready, b"ok\n")
        os.close(ready)
    sdnotify.ready(f"UAPI listening on {server.path}")
    try:
        await tunnel.wait_closed()
        sdnotify.stopping(tunnel.close_reason)
    finally:
        server.close()
        tunnel.close()
        if exporter is not None:
            await exporter.close()
    log.info("shut down: %s", tunnel.close_reason)
    return 0


def _reason(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _fail(ready: int | None, message: str) -> int:
    """Report a start-up failure once, on stderr (through the parent when daemonized)."""
    if ready is not None:
        os.write(ready, message.encode() + b"\n")
        os.close(ready)
    else:
        print(f"{PROG}: {message}", file=sys.stderr)
    return 1


def _daemonize(name: str, metrics: Address | None) -> int:
    """Fork; the parent waits for the child to be listening (or to fail) and exits."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        chunks = []
        while chunk := os.read(r, 4096):
            chunks.append(chunk)
        os.close(r)
        message = b"".join(chunks).decode(errors="replace").strip()
        if message == "ok":
            return 0
        print(f"{PROG}: {message or 'the daemon exited before it was ready'}", file=sys.stderr)
        return 1
    # the child
    os.close(r)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if log_level() > logging.ERROR or "LOG_LEVEL" not in os.environ:
        os.dup2(null, 1)
        os.dup2(null, 2)
    os.close(null)
    os.environ["WG_PROCESS_FOREGROUND"] = "1"
    try:
        code = run(serve(name, ready=w, metrics=metrics))
    except BaseException:
        code = 1
    os._exit(code)


def metrics_address(args: list[str]) -> Address | None:
    """Take `--metrics-listen HOST:PORT` (or `--metrics-listen=HOST:PORT`) out of `args`,
    else read PYWG_METRICS_LISTEN; None for neither. UsageError for a bad address."""
    text = os.environ.get(ENV_METRICS) or None
    for i, arg in enumerate(args):
        if arg == METRICS_OPTION and i + 1 < len(args):
            text = args[i + 1]
            del args[i : i + 2]
            break
        if arg.startswith(METRICS_OPTION + "="):
            text = arg.partition("=")[2]
            del args[i]
            break
    return None if text is None else parse_listen(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        metrics = metrics_address(args)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args in (["--version"], ["-v"]):
        print(f"{PROG} v{__version__}\n\nUserspace WireGuard daemon (pywg) for Linux.")
        return 0
    foreground = os.environ.get("WG_PROCESS_FOREGROUND") == "1"
    if len(args) == 2 and args[0] in ("-f", "--foreground"):
        foreground, args = True, args[1:]
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    name = args[0]
    try:
        check_ifname(name)
    except TunError as exc:
        print(f"{PROG}: {exc.strerror}", file=sys.stderr)
        return 1
    if os.geteuid() != 0 and ENV_TUN_FD not in os.environ:
        print(f"{PROG}: must run as root (it creates a TUN interface)", file=sys.stderr)
        return 1
    setup_logging(name)
    if not foreground:
        return _daemonize(name, metrics)
    try:
        return run(serve(name, metrics=metrics))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
