"""The members as the coordinator has them: a membership that follows GET /v1/members.

The relay asks with requests signed by its relay key, which the coordinator
must have been given (`pywg coordinator serve --relay-key`), and takes only
answers signed by the coordinator's key (`pywg coordinator key`), as a node
does (`pywg.mesh.client`). From a coordinator serving HTTPS with a
certificate of its own making, it takes exactly the certificate it was given
the pin of (`tls_pin`: its SHA-256, `pywg.mesh.tls`), as a node does with
the pin of its join token. `follow` long-polls: a change of the roster
(a node joins, is removed, gets new keys) reaches the relay within a second
or so, and the relay's sweep evicts a node that left.
"""

from __future__ import annotations

import asyncio
import logging

from nacl.signing import SigningKey

from .. import auth
from ..client import CoordinatorClient, CoordinatorError
from ..schema import MAX_WAIT
from .membership import StaticMembership

log = logging.getLogger(__name__)

RETRY_MIN = 1.0
RETRY_MAX = 30.0


class CoordinatorMembership(StaticMembership):
    """Members from the coordinator at `url` (empty until the first answer)."""

    def __init__(
        self,
        url: str,
        relay_key: SigningKey,
        coordinator_key: bytes,
        *,
        tls_pin: bytes | None = None,
    ) -> None:
        super().__init__()
        public = auth.b64(bytes(relay_key.verify_key))
        self._client = CoordinatorClient(
            url, public, relay_key, coordinator_key=coordinator_key, tls_pin=tls_pin
        )
        self.version = -1

    async def refresh(self, wait: float = 0.0) -> None:
        """Take the members once the roster is newer than the last taken (or after `wait` s);
        CoordinatorError if the coordinator refuses or cannot be reached."""
        answer = await self._client.members(self.version, wait)
        if answer.version != self.version:
            self.replace(answer.members)
            self.version = answer.version
            log.info("relay: %d members from the coordinator (version %d)", len(self), self.version)

    async def follow(self, wait: float = MAX_WAIT) -> None:
        """Refresh with long polls until cancelled; wait and retry after a failure."""
        delay = RETRY_MIN
        while True:
            try:
                await self.refresh(wait)
                delay = RETRY_MIN
            except CoordinatorError as exc:
                log.warning("relay: members not refreshed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, RETRY_MAX)

    async def close(self) -> None:
        await self._client.close()
