"""The control socket of a running `pywg join`: run-time settings from `pywg set`.

The socket is ``STATE/control.sock`` in the node's state directory (0700),
made with umask 077 and mode 0600, so only root talks to it (as the UAPI
socket, `pywg.asyncio.uapi_server`). One request per connection, each way a
JSON object on one line (at most MAX_REQUEST bytes):

    -> {"exit_node": "NAME"}          this node's exit node, or null for none
    -> {"rotate_keys": true}          rotate this node's keys now (pywg.mesh.rotation)
    <- {"ok": true, "message": "..."} or {"ok": false, "error": "..."}

A socket file nobody answers on (a node that was killed) is replaced when
the next node starts; one that answers means another node runs on this
state directory, and the new one refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Final

CONTROL_SOCKET: Final = "control.sock"
MAX_REQUEST: Final = 4096
TIMEOUT: Final = 10.0

log = logging.getLogger("pywg.mesh")

ExitSetter = Callable[[str | None], Awaitable[str]]
Rotator = Callable[[], Awaitable[str]]


class ControlError(RuntimeError):
    """A request that is refused or cannot be made; str() says why, in one line."""


def socket_path(state_dir: str) -> str:
    return os.path.join(state_dir, CONTROL_SOCKET)


def parse_request(line: bytes) -> str | None:
    """The exit node a request names (None: none); ControlError if it is not a request."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError("the request is not JSON") from None
    if not isinstance(data, dict) or "exit_node" not in data:
        raise ControlError('the request names no "exit_node"')
    name = data["exit_node"]
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 63):
        raise ControlError('"exit_node" must be a node name or null')
    return name


class ControlServer:
    """Serves the control socket of one node; `await start()`, then `close()`."""

    def __init__(self, path: str, set_exit: ExitSetter, *, rotate: Rotator | None = None) -> None:
        self.path = path
        self._set_exit = set_exit
        self._rotate = rotate
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if _answers(self.path):
            raise ControlError(f"{self.path}: another pywg join runs on this state directory")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
            try:
                if len(line) > MAX_REQUEST or not line.endswith(b"\n"):
                    raise ControlError("the request is not one line")
                answer: dict[str, object] = {"ok": True, "message": await self._answer(line)}
            except ControlError as exc:
                answer = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, ValueError) as exc:
            log.info("control socket: %s", exc)
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> str:
        """The message of the answer to a request line; ControlError if refused."""
        if _asks_rotation(line):
            if self._rotate is None:
                raise ControlError("this node cannot rotate its keys")
            return await self._rotate()
        return await self._set_exit(parse_request(line))


def _asks_rotation(line: bytes) -> bool:
    """Whether a request line is {"rotate_keys": true}."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("rotate_keys") is True


def _answers(path: str) -> bool:
    """Whether something listens on the socket file `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def set_exit_node(state_dir: str, name: str | None) -> str:
    """Ask the node running on `state_dir` to use exit node `name` (None: none); its
    answer. ControlError if it refuses or does not run."""
    return _ask(state_dir, {"exit_node": name})


def rotate_keys(state_dir: str, timeout: float = 40.0) -> str:
    """Ask the node running on `state_dir` to rotate its keys now; its answer. ControlError
    if it refuses (the coordinator did not take the keys) or does not run."""
    return _ask(state_dir, {"rotate_keys": True}, timeout)


def _ask(state_dir: str, request: dict[str, object], timeout: float = TIMEOUT) -> str:
    """Send one request to the node running on `state_dir`; its answer's message."""
    path = socket_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = sock.makefile("rb").readline(MAX_REQUEST)
        except FileNotFoundError:
            raise ControlError(
                f"no pywg join runs with state {state_dir} ({path} is missing)"
            ) from None
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(reply.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError(f"{path}: no answer") from None
    if not isinstance(answer, dict):
        raise ControlError(f"{path}: an answer that is not an object")
    if answer.get("ok") is not True:
        raise ControlError(str(answer.get("error", "refused")))
    return str(answer.get("message", ""))
