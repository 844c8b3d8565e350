"""A node's side of the coordinator API (`pywg.mesh.coordinator`): join, rosters, updates.

Every request is signed with the node's control key (`auth.sign_request`);
every answer, errors included, is checked against the coordinator's key
(`auth.verify_response`) before anything in it is used; the one exception
is a refusal the coordinator gives before it has authenticated a request
(401, 429: it signs nothing for a stranger), taken as a refusal and
nothing more (`UNSIGNED_REFUSALS`). The key comes from
the first answer to `join` and must match the fingerprint in the join
token; after that, pass it to the constructor (``coordinator_key=``).

A mesh may be served by several coordinators on one database
(docs/postgresql.md): the client then takes their URLs, comma-separated,
and sends each request to the one that answered last; when it cannot
connect there (refused, reset, timed out) it goes on to the next at once,
each tried once a request.

Request times are milliseconds since the epoch, strictly increasing per
client: the coordinator refuses a request not newer than the node's last
one, so requests of one node should not overlap except a roster long-poll
with the requests that follow it (a request overtaken by a later-signed one
is refused as reordered).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import aiohttp
from nacl.signing import SigningKey
from yarl import URL

from ..endpoint import Endpoint
from . import auth, expiry, rosterdelta
from .schema import (
    JOIN_PATH,
    MAX_WAIT,
    MEMBERS_PATH,
    ROSTER_PATH,
    ROTATE_PATH,
    UPDATE_PATH,
    ErrorAnswer,
    JoinAnswer,
    JoinRequest,
    MembersList,
    Message,
    PathState,
    Roster,
    RotateAnswer,
    RotateRequest,
    SchemaError,
    UpdateAnswer,
    UpdateRequest,
    decode,
    encode,
    roster_answer,
)

MAX_ANSWER: Final = 16 << 20
CONNECT_TIMEOUT: Final = 10.0
REQUEST_TIMEOUT: Final = 30.0
LONG_POLL_SLACK: Final = 20.0  # beyond the coordinator's wait
UNSIGNED_REFUSALS: Final = (401, 429)  # before authentication: not signed

A = TypeVar("A")


class CoordinatorError(Exception):
    """The coordinator refused (`status` is the HTTP status), or no trustworthy answer came
    (`status` is None: unreachable, timed out, not signed by the coordinator)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})" if status is not None else message)
        self.status = status
        self.message = message


class _Broken(Exception):
    """The connection broke before an answer came (reset, closed): worth one more try."""


@dataclass(frozen=True, slots=True)
class _Request:
    """One API request: `path_qs` below the base URL, `message` its body (None: none).

    `expect_fingerprint` (join): the coordinator key is not known yet; take it
    from the answer if its fingerprint is this one.
    """

    method: str
    path_qs: str
    message: Message | None = None
    timeout: float = REQUEST_TIMEOUT
    expect_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    coordinator_key: str | None  # the header naming it
    signature: str | None  # the header signing the body


def split_urls(text: str) -> list[str]:
    """The coordinator URLs in `text`: one, or several separated by commas."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _base_url(url: str) -> URL:
    """A coordinator's base URL; ValueError if it is not an http(s) URL with a host."""
    base = URL(url)
    if base.scheme not in ("http", "https") or not base.host:
        raise ValueError(f"the coordinator URL must be http:// or https://, not {url!r}")
    return base.with_query(None).with_fragment(None)


class CoordinatorClient:
    def __init__(
        self,
        url: str,
        public_key: str,
        control: SigningKey,
        *,
        coordinator_key: bytes | None = None,
        fingerprint: str | None = None,
        tls_pin: bytes | None = None,
    ) -> None:
        """`url`: the coordinator's, or those of the coordinators serving the mesh,
        comma-separated. `tls_pin`: over HTTPS accept exactly the certificate with this
        pin (`pywg.mesh.tls`); None: a certificate the system's CAs vouch for."""
        self.bases = [_base_url(part) for part in split_urls(url)]
        if not self.bases:
            raise ValueError("no coordinator URL given")
        if len({base.scheme for base in self.bases}) > 1:
            raise ValueError("the coordinator URLs are all http:// or all https://")
        auth.unb64(public_key, 32)  # AuthError (a ValueError) if it is not a key
        if coordinator_key is not None and len(coordinator_key) != 32:
            raise ValueError("the coordinator key is 32 bytes")
        self._current = 0  # the index in `bases` of the one requests go to
        self.public_key = public_key
        self.control = control
        self.coordinator_key = coordinator_key
        self.fingerprint = fingerprint
        self.tls_pin = tls_pin
        self._last_ms = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def base(self) -> URL:
        """The URL requests go to now."""
        return self.bases[self._current]

    def _next_coordinator(self) -> None:
        """Requests go to the next coordinator from now on (with one: the same)."""
        self._current = (self._current + 1) % len(self.bases)

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

    async def _call(self, request: _Request, parse: Callable[[object], A]) -> A:
        """The verified answer to `request`, parsed. Sent again at once (signed anew) if the
        connection broke under it or could not be made: to the same coordinator once (a
        kept-alive connection dies with the NAT mapping it used, a router that rebooted),
        or to each of the others once. Every request here may be repeated (a join with
        its token included)."""
        tries = max(2, len(self.bases))
        for attempt in range(1, tries + 1):
            try:
                data = await self._call_once(request)
            except _Broken as exc:
                self._next_coordinator()
                if attempt == tries:
                    raise CoordinatorError(None, f"cannot reach the coordinator: {exc}") from None
                continue
            try:
                return parse(data)
            except SchemaError as exc:
                raise CoordinatorError(
                    None, f"the coordinator's answer is malformed: {exc}"
                ) from None
        raise AssertionError("unreachable")

    async def _call_once(self, request: _Request) -> object:
        """Send a signed request; the JSON value of its verified answer."""
        body = b"" if request.message is None else encode(request.message)
        path = self.base.raw_path.rstrip("/") + request.path_qs
        header, signature = auth.sign_request(
            self.control, self.public_key, request.method, path, body, self._time_ms()
        )
        headers = {"Authorization": header}
        if request.message is not None:
            headers["Content-Type"] = "application/json"
        answer = await self._send(request, path, body, headers)
        key = self._answer_key(answer.coordinator_key, request.expect_fingerprint)
        try:
            auth.verify_response(key, signature, answer.body, answer.signature)
        except auth.AuthError as exc:
            if answer.signature is None and answer.status in UNSIGNED_REFUSALS:
                raise CoordinatorError(answer.status, _refusal(answer.body)) from None
            raise CoordinatorError(None, f"{exc} (HTTP {answer.status})") from None
        if answer.status != 200:
            raise CoordinatorError(answer.status, _refusal(answer.body))
        try:
            return decode(answer.body)
        except SchemaError:
            return None

    async def _send(
        self, request: _Request, path: str, body: bytes, headers: dict[str, str]
    ) -> _Answer:
        """The HTTP exchange: the answer as it came, not checked yet."""
        url = URL(str(self.base.origin()) + path, encoded=True)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        limits = aiohttp.ClientTimeout(total=request.timeout, connect=CONNECT_TIMEOUT)
        check: aiohttp.Fingerprint | bool = True  # https: the system's CAs
        if self.tls_pin is not None:
            check = aiohttp.Fingerprint(self.tls_pin)
        try:
            async with self._session.request(
                request.method,
                url,
                data=body,
                headers=headers,
                timeout=limits,
                allow_redirects=False,
                ssl=check,
            ) as response:
                return _Answer(
                    response.status,
                    await _read_limited(response.content, MAX_ANSWER),
                    response.headers.get(auth.COORDINATOR_KEY_HEADER),
                    response.headers.get(auth.SIGNATURE_HEADER),
                )
        except TimeoutError:
            self._next_coordinator()  # the next request goes to another one, if any
            raise CoordinatorError(None, "the coordinator did not answer in time") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise _Broken(str(exc) or type(exc).__name__) from None
        except aiohttp.ServerFingerprintMismatch:
            raise CoordinatorError(
                None,
                "the coordinator's TLS certificate is not the pinned one (the join token's, "
                "or a relay's --coordinator-pin): wrong coordinator, or someone in between",
            ) from None
        except aiohttp.ClientError as exc:
            self._next_coordinator()
            raise CoordinatorError(None, f"cannot reach the coordinator: {exc}") from None

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

    async def join(self, token: str, name: str, routes: Sequence[str]) -> JoinAnswer:
        """Join the mesh; sets `coordinator_key` from the answer, checked against the
        token's fingerprint."""
        try:
            parsed = auth.parse_token(token)
        except auth.AuthError as exc:
            raise CoordinatorError(None, str(exc)) from None
        token_fp = parsed.fingerprint
        if parsed.tls_pin is not None:
            if self.base.scheme != "https":
                raise CoordinatorError(
                    None, "the join token is for a coordinator that serves HTTPS: use https://"
                )
            self.tls_pin = parsed.tls_pin
        known = [self.fingerprint] if self.fingerprint is not None else []
        if self.coordinator_key is not None:
            known.append(auth.fingerprint(self.coordinator_key))
        if not all(auth.same_hash(fp, token_fp) for fp in known):
            raise CoordinatorError(None, "the join token is for another coordinator")
        message = JoinRequest(
            token=token,
            name=name,
            public_key=auth.unb64(self.public_key, 32),
            control_key=bytes(self.control.verify_key.encode()),
            routes=tuple(routes),
        )
        request = _Request("POST", JOIN_PATH, message, expect_fingerprint=token_fp)
        answer = await self._call(request, JoinAnswer.from_json)
        key = answer.coordinator_key
        if auth.fingerprint(key) != token_fp or self.coordinator_key not in (None, key):
            raise CoordinatorError(None, "the coordinator's join answer names another key")
        self.coordinator_key = key
        self.fingerprint = token_fp
        return answer

    async def roster(self, since: int, wait: float) -> Roster:
        """The roster, once its version is above `since` or after `wait` (at most 60) s."""
        return await self._call(_long_poll(ROSTER_PATH, since, wait), Roster.from_json)

    async def next_roster(self, current: Roster | None, wait: float) -> Roster:
        """The roster after `current` (None: the whole roster at once): what changed since
        its version, applied to it (`rosterdelta`), once there is a change or after `wait`
        (at most 60) s; the whole roster when a delta does not apply to it."""
        if current is None:
            return await self.roster(-1, 0)
        request = _long_poll(ROSTER_PATH, current.version, wait, delta=True)
        answer = await self._call(request, roster_answer)
        if isinstance(answer, Roster):
            return answer
        try:
            return rosterdelta.apply(current, answer)
        except rosterdelta.DeltaMismatch:
            return await self.roster(-1, 0)

    async def members(self, since: int, wait: float) -> MembersList:
        """Every member (a home relay's request: `public_key` and `control` are its relay
        key), once the roster's version is above `since` or after `wait` (at most 60) s."""
        return await self._call(_long_poll(MEMBERS_PATH, since, wait), MembersList.from_json)

    async def update(
        self, endpoints: Sequence[Endpoint], routes: Sequence[str], home_relay: int | None = None
    ) -> int:
        """Report this node's endpoints, routes and home relay (a number of the relay map, 0
        for none; None: not reported); the roster version after."""
        message = UpdateRequest(tuple(endpoints), tuple(routes), home_relay)
        answer = await self._call(_Request("POST", UPDATE_PATH, message), UpdateAnswer.from_json)
        return answer.version

    async def report_paths(self, paths: Sequence[PathState]) -> int:
        """Report how this node reaches its peers now (`pywg.mesh.pathstate`); the roster
        version after (unchanged: paths are no part of a roster)."""
        message = UpdateRequest(None, None, None, tuple(paths))
        answer = await self._call(_Request("POST", UPDATE_PATH, message), UpdateAnswer.from_json)
        return answer.version

    async def rotate(self, public_key: bytes, control: SigningKey) -> RotateAnswer:
        """Hand the coordinator this node's new keys (WireGuard public, control), signed
        with the current control key and proven by the new one (`expiry.sign_proof`);
        once it took them, this client signs with the new ones."""
        old = auth.unb64(self.public_key, 32)
        when = self._time_ms()
        message = RotateRequest(
            public_key=public_key,
            control_key=bytes(control.verify_key),
            time_ms=when,
            proof=expiry.sign_proof(control, old, public_key, when),
        )
        answer = await self._call(_Request("POST", ROTATE_PATH, message), RotateAnswer.from_json)
        if answer.node.public_key != public_key:
            raise CoordinatorError(None, "the coordinator's rotate answer names another key")
        self.public_key = auth.b64(public_key)
        self.control = control
        return answer


def _long_poll(path: str, since: int, wait: float, *, delta: bool = False) -> _Request:
    wait = min(max(wait, 0.0), MAX_WAIT) if math.isfinite(wait) else 0.0
    wait_text = f"{wait:.3f}".rstrip("0").rstrip(".")
    path_qs = f"{path}?since={max(int(since), -1)}&wait={wait_text}"
    if delta:
        path_qs += "&delta=1"
    return _Request("GET", path_qs, timeout=wait + LONG_POLL_SLACK)


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


def _refusal(body: bytes) -> str:
    """The reason an error answer gives, shortened."""
    try:
        message = ErrorAnswer.from_json(decode(body)).error or "no reason given"
    except SchemaError:
        message = "no reason given"
    return message[:300]
