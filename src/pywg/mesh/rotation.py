"""A node's side of key rotation (`pywg.mesh.expiry`): when, how, and recovery.

`KeyRotator.run` waits until the node's keys are due for rotation (less than
`expiry.ROTATE_FRACTION` of their lifetime left, as the roster's ``self``
says) or until asked (`request`: `pywg set --rotate-keys` through the control
socket), then:

1. makes a new WireGuard key and a new control key and keeps them beside the
   current ones (`NodeState.stage_keys`), so that a node dying in the middle
   still has the keys the coordinator may have taken;
2. asks the coordinator to take them (`CoordinatorClient.rotate`);
3. once it did: makes them the node's keys on disk (`commit_keys`) and hands
   them to the node (`switch`), which gives the tunnel its new identity with
   every session kept (`Tunnel.rotate_private_key`: the old identity is still
   answered for GRACE seconds, while the peers learn the new key from their
   rosters and change it in place, `Tunnel.change_peer_key`).

An answer that did not come (or a refusal that may be the repeat of a request
that went through) leaves it open whether the coordinator took the keys;
`recover` asks the coordinator with the staged keys: if it knows them, they
are committed, else dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from nacl.signing import SigningKey

from ..keys import PrivateKey
from . import auth, expiry
from .client import CoordinatorClient, CoordinatorError
from .schema import NodeInfo
from .state import NodeState, StateError

GRACE: Final = 120.0  # seconds the old WireGuard identity is still answered after a rotation
RETRY: Final = 60.0  # seconds between attempts at a rotation that is due

log = logging.getLogger("pywg.mesh")

Switch = Callable[[PrivateKey, SigningKey], None]


class RotationError(RuntimeError):
    """A rotation asked for did not happen; str() says why."""


def _clock_ms() -> int:
    return int(time.time() * 1000)


class KeyRotator:
    """Rotates one node's keys; see the module docstring."""

    def __init__(
        self,
        state: NodeState,
        client: CoordinatorClient,
        switch: Switch,
        *,
        clock_ms: Callable[[], int] = _clock_ms,
    ) -> None:
        self.state = state
        self.client = client
        self._switch = switch
        self._clock_ms = clock_ms
        self.keys_ms: int | None = None
        self.expires_ms: int | None = None
        self._wake = asyncio.Event()
        self._waiting: list[asyncio.Future[str]] = []

    def follow(self, me: NodeInfo) -> None:
        """The node's keys as the coordinator describes them (a roster's ``self``)."""
        if (me.keys_ms, me.expires_ms) != (self.keys_ms, self.expires_ms):
            self.keys_ms, self.expires_ms = me.keys_ms, me.expires_ms
            self._wake.set()

    async def request(self) -> str:
        """Rotate now (the control socket's request); what happened, in one line.
        RotationError if the coordinator did not take the new keys."""
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append(done)
        self._wake.set()
        return await done

    def _seconds_left(self) -> float | None:
        """Seconds until a rotation is due (0: now); None: never."""
        due = expiry.rotation_due(self.keys_ms, self.expires_ms)
        return None if due is None else max(0.0, (due - self._clock_ms()) / 1000)

    async def run(self) -> None:
        """Rotate whenever due or asked, until cancelled."""
        while True:
            left = self._seconds_left()
            if not self._waiting and left != 0.0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
                continue
            waiting, self._waiting = self._waiting, []
            try:
                message = await self.rotate()
            except RotationError as exc:
                log.warning("key rotation: %s", exc)
                for done in waiting:
                    if not done.done():
                        done.set_exception(exc)
                if not waiting:
                    await asyncio.sleep(RETRY)
                continue
            for done in waiting:
                if not done.done():
                    done.set_result(message)

    async def rotate(self) -> str:
        """One rotation (see the module docstring); what happened."""
        wireguard, control = PrivateKey.generate(), SigningKey.generate()
        try:
            self.state.stage_keys(wireguard, control)
        except OSError as exc:
            raise RotationError(f"cannot keep the new keys: {exc}") from None
        try:
            answer = await self.client.rotate(bytes(wireguard.public_key), control)
        except CoordinatorError as exc:
            if await self.recover():
                return "keys rotated (the coordinator had taken them)"
            raise RotationError(f"the coordinator did not take the new keys: {exc}") from None
        self._commit(wireguard, control)
        self.follow(answer.node)
        return f"keys rotated: {wireguard.public_key.to_base64()}"

    async def recover(self) -> bool:
        """Whether the coordinator knows the staged keys (then they are the node's now);
        staged keys it does not know are dropped."""
        staged = self.state.staged_keys()
        if staged is None:
            return False
        wireguard, control = staged
        probe = CoordinatorClient(
            str(self.client.base),
            wireguard.public_key.to_base64(),
            control,
            coordinator_key=self.client.coordinator_key,
            tls_pin=self.client.tls_pin,
        )
        try:
            roster = await probe.roster(-1, 0)
        except CoordinatorError as exc:
            if exc.status is None:
                return False  # unknown yet: kept for the next try
            self.state.drop_staged_keys()
            return False
        finally:
            await probe.close()
        self.client.public_key = auth.b64(bytes(wireguard.public_key))
        self.client.control = control
        self._commit(wireguard, control)
        self.follow(roster.me)
        return True

    def _commit(self, wireguard: PrivateKey, control: SigningKey) -> None:
        try:
            self.state.commit_keys()
        except (OSError, StateError) as exc:  # the coordinator has them: go on in memory
            log.error("cannot store the rotated keys in %s: %s", self.state.directory, exc)
            self.state.wireguard, self.state.control = wireguard, control
        log.info("keys rotated: now %s", wireguard.public_key.to_base64())
        self._switch(wireguard, control)
