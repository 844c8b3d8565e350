"""A node's side of the coordinator API (`pywg.mesh.coordinator`): join, rosters, updates.

Every request is signed with the node's control key (`auth.sign_request`);
every answer, errors included, is checked against the coordinator's key
(`auth.verify_response`) before anything in it is used. The key comes from
the first answer to `join` and must match the fingerprint in the join
token; after that, pass it to the constructor (``coordinator_key=``).

Request times are milliseconds since the epoch, strictly increasing per
client: the coordinator refuses a request not newer than the node's last
one, so requests of one node should not overlap except a roster long-poll
with the requests that follow it (a request overtaken by a later-signed one
is refused as reordered).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Final

import aiohttp
from nacl.signing import SigningKey
from yarl import URL

from . import auth

COORDINATOR_KEY_HEADER: Final = "X-Pywg-Coordinator-Key"
MAX_ANSWER: Final = 16 << 20
CONNECT_TIMEOUT: Final = 10.0
REQUEST_TIMEOUT: Final = 30.0
LONG_POLL_SLACK: Final = 20.0  # beyond the coordinator's wait
MAX_WAIT: Final = 60.0


class CoordinatorError(Exception):
    """The coordinator refused (`status` is the HTTP status), or no trustworthy answer came
    (`status` is None: unreachable, timed out, not signed by the coordinator)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})" if status is not None else message)
        self.status = status
        self.message = message


class _Broken(Exception):
    """The connection broke before an answer came (reset, closed): worth one more try."""


class CoordinatorClient:
    def __init__(
        self,
        url: str,
        public_key: str,
        control: SigningKey,
        *,
        coordinator_key: bytes | None = None,
        fingerprint: str | None = None,
    ) -> None:
        base = URL(url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"the coordinator URL must be http:// or https://, not {url!r}")
        auth.unb64(public_key, 32)  # AuthError (a ValueError) if it is not a key
        if coordinator_key is not None and len(coordinator_key) != 32:
            raise ValueError("the coordinator key is 32 bytes")
        self.base = base.with_query(None).with_fragment(None)
        self.public_key = public_key
        self.control = control
        self.coordinator_key = coordinator_key
        self.fingerprint = fingerprint
        self._last_ms = 0
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> CoordinatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _time_ms(self) -> int:
        self._last_ms = max(self._last_ms + 1, int(time.time() * 1000))
        return self._last_ms

    async def _call(
        self,
        method: str,
        path_qs: str,
        payload: dict[str, Any] | None,
        *,
        timeout: float = REQUEST_TIMEOUT,
        expect_fingerprint: str | None = None,
    ) -> dict[str, Any]:
        """`_call_once`, again at once (signed anew) if the connection broke under it: a
        kept-alive connection dies with the NAT mapping it used (a router that rebooted),
        and every request here may be repeated (a join with its token included)."""
        for attempt in (1, 2):
            try:
                return await self._call_once(
                    method, path_qs, payload, timeout=timeout, expect_fingerprint=expect_fingerprint
                )
            except _Broken as exc:
                if attempt == 2:
                    raise CoordinatorError(None, f"cannot reach the coordinator: {exc}") from None
        raise AssertionError("unreachable")

    async def _call_once(
        self,
        method: str,
        path_qs: str,
        payload: dict[str, Any] | None,
        *,
        timeout: float = REQUEST_TIMEOUT,
        expect_fingerprint: str | None = None,
    ) -> dict[str, Any]:
        """Send a signed request; the verified answer's JSON object.

        `expect_fingerprint` (join): the coordinator key is not known yet; take it from
        the answer if its fingerprint is this one.
        """
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        path = self.base.raw_path.rstrip("/") + path_qs
        header, signature = auth.sign_request(
            self.control, self.public_key, method, path, body, self._time_ms()
        )
        headers = {"Authorization": header}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        url = URL(str(self.base.origin()) + path, encoded=True)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        limits = aiohttp.ClientTimeout(total=timeout, connect=CONNECT_TIMEOUT)
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=limits, allow_redirects=False
            ) as response:
                status = response.status
                answer = await _read_limited(response.content, MAX_ANSWER)
                answer_headers = response.headers
        except TimeoutError:
            raise CoordinatorError(None, "the coordinator did not answer in time") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise _Broken(str(exc) or type(exc).__name__) from None
        except aiohttp.ClientError as exc:
            raise CoordinatorError(None, f"cannot reach the coordinator: {exc}") from None
        key = self._answer_key(answer_headers.get(COORDINATOR_KEY_HEADER), expect_fingerprint)
        try:
            auth.verify_response(key, signature, answer, answer_headers.get(auth.SIGNATURE_HEADER))
        except auth.AuthError as exc:
            raise CoordinatorError(None, f"{exc} (HTTP {status})") from None
        try:
            data = json.loads(answer)
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if status != 200:
            message = data.get("error") if isinstance(data, dict) else None
            raise CoordinatorError(status, str(message or "no reason given")[:300])
        if not isinstance(data, dict):
            raise CoordinatorError(None, "the coordinator's answer is not a JSON object")
        return data

    def _answer_key(self, header: str | None, expect_fingerprint: str | None) -> bytes:
        """The key the answer must be signed with."""
        if self.coordinator_key is not None:
            return self.coordinator_key
        if expect_fingerprint is None:
            raise CoordinatorError(None, "the coordinator's key is not known (join first)")
        try:
            key = auth.unb64((header or "").strip(), 32)
        except auth.AuthError:
            raise CoordinatorError(None, "the answer does not name the coordinator's key") from None
        if not auth.same_hash(auth.fingerprint(key), expect_fingerprint):
            raise CoordinatorError(
                None,
                "the coordinator's key does not match the join token's fingerprint "
                "(wrong coordinator, or someone in between)",
            )
        return key

    async def join(self, token: str, name: str, routes: list[str]) -> dict[str, Any]:
        """Join the mesh; the answer ``{"self": SelfInfo, "coordinator_key": b64}`` (SelfInfo:
        the roster's "self" object with "network" and "relay"). Sets `coordinator_key` from
        the answer, checked against the token's fingerprint."""
        try:
            _, token_fp = auth.parse_token(token)
        except auth.AuthError as exc:
            raise CoordinatorError(None, str(exc)) from None
        if self.fingerprint is not None and not auth.same_hash(self.fingerprint, token_fp):
            raise CoordinatorError(None, "the join token is for another coordinator")
        if self.coordinator_key is not None and not auth.same_hash(
            auth.fingerprint(self.coordinator_key), token_fp
        ):
            raise CoordinatorError(None, "the join token is for another coordinator")
        payload = {
            "token": token,
            "name": name,
            "public_key": self.public_key,
            "control_key": auth.b64(bytes(self.control.verify_key.encode())),
            "routes": list(routes),
        }
        data = await self._call("POST", "/v1/join", payload, expect_fingerprint=token_fp)
        info = data.get("self")
        try:
            key = auth.unb64(str(data.get("coordinator_key")), 32)
        except auth.AuthError:
            key = b""
        if (
            not isinstance(info, dict)
            or auth.fingerprint(key) != token_fp
            or (self.coordinator_key is not None and key != self.coordinator_key)
        ):
            raise CoordinatorError(None, "the coordinator's join answer is malformed")
        self.coordinator_key = key
        self.fingerprint = token_fp
        return data

    async def roster(self, since: int, wait: float) -> dict[str, Any]:
        """The roster, once its version is above `since` or after `wait` (at most 60) s."""
        wait = min(max(wait, 0.0), MAX_WAIT) if math.isfinite(wait) else 0.0
        wait_text = f"{wait:.3f}".rstrip("0").rstrip(".")
        path = f"/v1/roster?since={max(int(since), -1)}&wait={wait_text}"
        data = await self._call("GET", path, None, timeout=wait + LONG_POLL_SLACK)
        if not isinstance(data.get("version"), int) or not isinstance(data.get("peers"), list):
            raise CoordinatorError(None, "the coordinator's roster is malformed")
        return data

    async def update(self, endpoints: list[str], routes: list[str]) -> int:
        """Report this node's endpoints and routes; the roster version after."""
        data = await self._call(
            "POST", "/v1/update", {"endpoints": list(endpoints), "routes": list(routes)}
        )
        version = data.get("version")
        if not isinstance(version, int):
            raise CoordinatorError(None, "the coordinator's answer has no version")
        return version


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise CoordinatorError(None, f"the coordinator's answer is larger than {limit} bytes")
        chunks.append(chunk)
