"""The mesh coordinator: nodes join with a token, report endpoints and routes, get rosters.

Theory of operation. A `Coordinator` owns the state (`store.Store`, one
SQLite file in its state directory), its Ed25519 key (``coordinator.key``,
made at first start) and, optionally, its own home relay: `pywg relay
serve` in a child process it supervises (`pywg.mesh.relaychild`), relay
number 1 of the relay map. It never sees a private key: a node sends its
WireGuard public key and the public half of its control key.

HTTP API (JSON, the messages of `pywg.mesh.schema`; errors are `ErrorAnswer`;
`auth` explains the signing):

- ``POST /v1/join``: a `JoinRequest`, signed with the new control key.
  Answer a `JoinAnswer`.
- ``GET /v1/roster?since=V&wait=S``: a member's `Roster`; a long-poll that
  answers once the roster version is above V, or after min(S, 60) s. With
  ``delta=1``, a `RosterDelta` from V when the coordinator's view of the mesh in
  memory (`meshview`) still knows V, else the whole roster. It
  names the plain WireGuard devices, each among its gateway's routes
  (`pywg.mesh.devices`).
- ``POST /v1/update``: an `UpdateRequest` (endpoints, routes, home relay: any
  may be left out; each replaces the stored one; a home relay is a number of
  the relay map, or 0 for none; its paths to its peers are kept in memory for
  the admin, `pathstate`). Answer an `UpdateAnswer`.
- ``POST /v1/rotate``: a `RotateRequest`, the member's new keys (`expiry`).
  Answer a `RotateAnswer`.
- ``GET /v1/health``: `Health` (``{"ok": true}``, nothing more), unauthenticated.
- ``/admin/...``: the admin web UI (`pywg.mesh.webui`), when `serve`'s `setup`
  mounts it (docs/webui.md).

Nodes whose keys expired or were revoked (`expiry`) are in no roster and
no members list, and their requests are refused (401).

With an access policy (`access`, docs/policy.md), a roster carries the
compiled rules for traffic to its member, and leaves out the peers and
devices the member may not exchange packets with.

Every answer to an authenticated request, errors included, carries
``X-Pywg-Signature`` (`auth.sign_response`) and every answer
``X-Pywg-Coordinator-Key``. A member request is taken only with a valid
signature by the node's control key over the method, the raw path with its
query as sent, the time and the body, fresh and never seen before
(`auth.ReplayGuard`); anything else is 401 and changes nothing. Nothing is
told before authentication: a join's token is checked before anything else
in it, an unknown key and a bad signature get the same answer, and a
refusal is not signed (no signature made for a stranger).

It faces the internet (`limits`, `faultlog`): connections and refused
requests are limited per source address, idle and slow connections are
closed, and what clients do wrong is logged briefly at a bounded rate.

The relay map (the home relays, docs/relay.md) is configuration: every roster
carries it, the own relay first, then the others numbered in the order given,
and its relays may read the members (``GET /v1/members``) as those given by
`relay_keys` may.

The roster version (`store`) moves on every change to any roster, also by
`pywg coordinator approve/remove` in another process: a watcher reads it
about once a second and wakes the long-polls. On PostgreSQL (``database=``,
docs/postgresql.md) any number of coordinators serve one mesh from one
database: each hears the versions the others commit at once (NOTIFY,
`Store.listen`), and all must sign with the same key and serve the same
self-made certificate (`Store.check_identity`: the state directory is
copied to each).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Final, TypeVar

from aiohttp import hdrs, http_exceptions, web
from nacl.signing import SigningKey

from ..endpoint import format_endpoint
from ..system.secretfile import read_or_create_secret
from . import access, auth, expiry, relaychild, tls
from .database import Listening, errors
from .faultlog import FaultLog, ServerLog
from .guardedsite import GuardedSite
from .limits import Limits, SourceGuard, source_key
from .meshview import Frame, MeshView, peer_entry
from .pathstate import PathBook
from .schema import (
    HEALTH_PATH,
    JOIN_PATH,
    MAX_WAIT,
    MEMBERS_PATH,
    ROSTER_PATH,
    ROTATE_PATH,
    UPDATE_PATH,
    ErrorAnswer,
    Health,
    HomeRelay,
    JoinAnswer,
    JoinRequest,
    Member,
    MembersList,
    Message,
    NodeInfo,
    PeerEntry,
    Roster,
    RosterDelta,
    RotateAnswer,
    RotateRequest,
    SchemaError,
    UpdateAnswer,
    UpdateRequest,
    decode,
    encode,
)
from .store import (
    Conflict,
    KeyRefused,
    Node,
    NotFound,
    Store,
    StoreError,
    TokenRefused,
    now_ms,
)

log = logging.getLogger("pywg.mesh.coordinator")

KEY_FILE: Final = "coordinator.key"
MAX_BODY: Final = 64 * 1024
POLL_INTERVAL: Final = 1.0
# Whole rosters being written at once: each is ~560 bytes a node, held by the transport
# until the node reads it; many nodes asking at once (a restart, a mass join) would
# otherwise hold one per node (docs/scale.md).
WHOLE_ROSTERS_AT_ONCE: Final = 32
SHUTDOWN_TIMEOUT: Final = 2.0
# one answer to an unknown key and to a bad signature: neither tells member keys apart
NOT_AUTHENTICATED: Final = "not a member of this mesh, or not signed by its key"
LIMITED: Final = "too many refused requests from this address: try again later"
# a key no request is signed with: an unknown key costs the same check as a known one
_DECOY_KEY: Final = bytes(SigningKey(bytes(32)).verify_key.encode())
# the signature of the request being answered, once it is authenticated (else None): the
# middleware signs the answer for it (each request runs in a task, a context, of its own)
_SIGNED_FOR: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("signed_for")
# a client that went away or sent a body that is not one: its fault, told in a line
_CLIENT_FAULTS: Final = (ConnectionError, http_exceptions.HttpProcessingError, EOFError)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def load_or_create_key(state_dir: str) -> SigningKey:
    """The coordinator's Ed25519 key from ``state_dir/coordinator.key`` (base64 of the 32-byte
    seed), made there (mode 0600) if there is none. Two processes starting at once agree."""
    path = os.path.join(state_dir, KEY_FILE)
    try:
        return SigningKey(read_or_create_secret(path))
    except ValueError:
        raise StoreError(f"{path} is not a coordinator key (base64 of 32 bytes)") from None


def new_token(
    store: Store, key: SigningKey, ttl: float, *, reusable: bool = False, now: int | None = None
) -> str:
    """A join token valid for `ttl` seconds; only its hash is stored."""
    if not math.isfinite(ttl) or ttl <= 0 or ttl > 10 * 365 * 86400:
        raise StoreError("a token's lifetime is a positive number of seconds, up to ten years")
    created = now_ms() if now is None else now
    own = tls.self_made(store.state_dir)  # served over HTTPS with it: tokens pin it
    token, token_hash = auth.new_token(bytes(key.verify_key.encode()), own.pin if own else None)
    store.add_token(token_hash, created + int(ttl * 1000), reusable=reusable, now=created)
    return token


M = TypeVar("M")


def _request_body(body: bytes, parse: Callable[[object], M]) -> M:
    """The request message in `body`; ApiError 400 if it is not one."""
    try:
        return parse(decode(body))
    except SchemaError as exc:
        raise ApiError(400, str(exc)) from None


class Coordinator:
    """The coordinator of one mesh: state in `state_dir`, an aiohttp app, maybe a relay.

    `ipv4`/`ipv6` are fixed at first start (defaults: `store.DEFAULT_IPV4` and
    a new ULA /64); StoreError/Conflict if they differ later.
    """

    def __init__(
        self,
        state_dir: str,
        *,
        ipv4: str | None = None,
        ipv6: str | None = None,
        relay: relaychild.OwnRelay | None = None,
        auto_approve_routes: bool = False,
        relay_keys: Collection[bytes] = (),
        home_relays: Sequence[HomeRelay] = (),
        clock_ms: Callable[[], int] = now_ms,
        poll_interval: float = POLL_INTERVAL,
        certificate: tls.Certificate | None = None,
        domain: str | None = None,
        key_expiry_days: float | None = None,
        limits: Limits | None = None,
        database: str | None = None,
    ) -> None:
        self.certificate = certificate  # serve HTTPS with it; None: plain HTTP
        self.limits = limits or Limits()
        self.guard = SourceGuard(self.limits, time.monotonic)
        self.faults = FaultLog(log)
        self.store = Store(state_dir, database=database)
        try:
            self.networks = self.store.init_networks(ipv4, ipv6)
            self.domain = self.store.init_domain(domain)
            self.store.init_key_expiry(key_expiry_days, now=clock_ms())
            self.key = _mesh_key(self.store, state_dir, shared=database is not None)
            own = [relaychild.map_entry(state_dir, relay)] if relay is not None else []
            self.home_relays = _relay_map([*own, *home_relays])
        except BaseException:
            self.store.close()
            raise
        self.public_key = bytes(self.key.verify_key.encode())
        self.own_relay = relay
        self.relay: relaychild.RelaySupervisor | None = None  # the own relay, once started
        self.auto_approve_routes = auto_approve_routes
        # home relays that may read the members: those given and those of the map
        self.relay_keys = frozenset(relay_keys) | {relay.key for relay in self.home_relays}
        self.clock_ms = clock_ms
        self.poll_interval = poll_interval
        self._replay = auth.ReplayGuard()
        self.paths = PathBook()  # how each node reaches its peers, as it reported
        self.access = access.AccessCache()  # the access policy as the rosters give it
        self._policy_seen = -1  # the last version served under a policy: no delta from before
        frame = Frame(self.networks, self.home_relays, self.domain)
        self.view = MeshView(self.store, frame, self._node_info, clock_ms)
        self.app = self._make_app()
        self._whole_rosters = asyncio.Semaphore(WHOLE_ROSTERS_AT_ONCE)
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._listening: Listening | None = None
        self._changed: asyncio.Event | None = None
        self._notified = self.store.version()
        self._expiries_seen = self.clock_ms()  # expiries up to here woke the long polls
        self._closing = False
        # what it served, for its metrics: (method, route, status) -> answers; long-polls open
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.long_polls = 0

    def _make_app(self) -> web.Application:
        """The aiohttp app with the API's routes (the admin UI adds its own: `serve`)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY)
        app.router.add_post(JOIN_PATH, self._join)
        app.router.add_get(ROSTER_PATH, self._roster)
        app.router.add_post(UPDATE_PATH, self._update)
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get(MEMBERS_PATH, self._members)
        app.router.add_post(ROTATE_PATH, self._rotate)
        return app

    # -- life cycle ------------------------------------------------------------------------

    async def start(
        self, host: str | None = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
    ) -> int:
        """Start the HTTP server and then the own relay (if configured); the port it listens on.

        `host=None` listens on every address (IPv4 and IPv6); `sock` (bound)
        replaces host and port. A coordinator starts once; a failed start closes it.
        """
        if self._changed is not None or self._closing:
            raise RuntimeError("a Coordinator starts once")
        self._changed = asyncio.Event()
        try:
            self._runner = web.AppRunner(
                self.app,
                access_log=None,
                shutdown_timeout=SHUTDOWN_TIMEOUT,
                logger=ServerLog(self.faults),  # aiohttp's own: no tracebacks of client faults
                **self.limits.runner_options(),
            )
            await self._runner.setup()
            context = self.certificate.server_context() if self.certificate else None
            site = GuardedSite(self._runner, self.guard, host, port, sock=sock, ssl_context=context)
            await site.start()
        except BaseException:
            await self.close()
            raise
        self._watcher = asyncio.create_task(self._watch())
        self._listen()
        self._start_relay()
        return self.port

    def _start_relay(self) -> None:
        """Start supervising the own relay, reading the members from this coordinator."""
        own = self.own_relay
        if own is None or self._runner is None:
            return
        address: Any = self._runner.addresses[0]
        certificate = self.certificate
        coordinates = relaychild.Coordinates(
            relaychild.loopback_url(address, https=certificate is not None),
            self.public_key,
            certificate.pin if certificate is not None else None,
        )
        others = [r for r in self.home_relays if r.number != relaychild.NUMBER]
        verbose = logging.getLogger("pywg").isEnabledFor(logging.DEBUG)
        argv = relaychild.command(self.store.state_dir, own, coordinates, others, verbose=verbose)
        self.relay = relaychild.RelaySupervisor(argv)
        self.relay.start()

    @property
    def port(self) -> int:
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the coordinator is not listening")
        address: Any = self._runner.addresses[0]
        return int(address[1])

    async def close(self) -> None:
        """Stop serving (long-polls answer at once), then the own relay, then close the
        store. In that order: the relay's own long-poll is answered while its connection
        still stands, rather than written to a connection its exit closed."""
        if self._closing:
            return
        self._closing = True
        self._notify()
        if self._listening is not None:
            await asyncio.to_thread(self._listening.close)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runner is not None:
            await self._runner.cleanup()
        if self.relay is not None:
            await self.relay.close()
        self.store.close()

    # -- changes ---------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake every long-poll (each re-reads the version)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def changed(self) -> None:
        """The state changed in this process (an admin's action): wake the long-polls."""
        self._changed_here()

    def _changed_here(self) -> None:
        self._notified = self.store.version()
        self._notify()

    async def _watch(self) -> None:
        """Notice changes by other processes (`pywg coordinator approve`, ...): the version
        moved since the last notification. (Not PRAGMA data_version: a change committed
        before its first reading would go unnoticed.)"""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                self._note_expiries()
                version = self.store.version()
                if version != self._notified:
                    self._notified = version
                    self._notify()
            except errors() as exc:
                log.warning("cannot read the state: %s", exc)

    def _listen(self) -> None:
        """Hear the roster versions other coordinators on the same database commit (at once,
        where the database sends notices: PostgreSQL's NOTIFY), and wake the long polls."""
        loop = asyncio.get_running_loop()

        def heard(version: int) -> None:  # in the listener's thread
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._heard, version)

        self._listening = self.store.listen(heard)

    def _heard(self, version: int) -> None:
        if version > self._notified:
            self._notified = version
            self._notify()

    def _note_expiries(self) -> None:
        """Keys that expired by time since the last look move the roster version (the
        long polls wake and leave those nodes out)."""
        now = self.clock_ms()
        self.store.note_expiries(self._expiries_seen, now)
        self._expiries_seen = now

    async def wait_version(self, since: int, timeout: float) -> int:
        """The roster version, once it is above `since` or after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.long_polls += 1
        try:
            while True:
                version = self.store.version()
                remaining = deadline - loop.time()
                if version > since or remaining <= 0 or self._closing or self._changed is None:
                    return version
                event = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            self.long_polls -= 1

    # -- admin, in this process ------------------------------------------------------------

    def new_token(self, ttl: float, *, reusable: bool = False) -> str:
        return new_token(self.store, self.key, ttl, reusable=reusable, now=self.clock_ms())

    def approve(self, name: str, prefixes: list[str]) -> list[str]:
        newly = self.store.approve(name, prefixes)
        self._changed_here()
        return newly

    def remove(self, name: str) -> Node:
        node = self.store.remove(name)
        self._replay.forget(node.id)
        self.paths.forget(node.id)
        self._changed_here()
        return node

    def expire(self, name: str) -> Node:
        """Expire a node's keys now (it may join again with a new token)."""
        node = self.store.expire(name, now=self.clock_ms())
        self._changed_here()
        return node

    def revoke(self, name: str) -> Node:
        """Revoke a node for good: its keys are never taken again."""
        node = self.store.revoke(name, now=self.clock_ms())
        self._replay.forget(node.id)
        self._changed_here()
        return node

    def check_policy(self, text: str) -> None:
        """Raise `PolicyError` (line, reason) if `text` is no policy for this mesh."""
        access.check_policy(text, access.mesh_names(self.store))

    def set_policy(self, text: str | None) -> None:
        """Put access policy `text` in force (None: none, everyone reaches everyone); a
        refused one (`PolicyError`) changes nothing. Every node has it within a long poll."""
        access.set_policy(self.store, text)
        self._changed_here()

    def policy(self) -> str | None:
        """The access policy's text in force (None: none)."""
        return self.store.policy()

    # -- rosters ---------------------------------------------------------------------------

    def join_answer(self, node: Node) -> JoinAnswer:
        return JoinAnswer(self._node_info(node), self.networks, self.public_key)

    def current_view(self) -> MeshView:
        """The mesh in memory (`meshview`), brought up to the store's version."""
        if self.store.version() != self.view.version:
            self.view.refresh()
        return self.view

    def roster(self, node_id: int) -> Roster | None:
        """The roster of one member (None if it is not one): expired and revoked nodes
        are in no roster; under an access policy, only the peers and devices it may talk
        to, and its rules (`pywg.mesh.access`)."""
        view = self.current_view()
        policy = self.store.policy()
        if policy is None:
            return view.roster(node_id)
        self._policy_seen = view.version
        return self._policy_roster(view, node_id, policy)

    def _policy_roster(self, view: MeshView, node_id: int, policy: str) -> Roster | None:
        """Member `node_id`'s whole roster, filtered by the access policy `policy`."""
        full, me = view.roster(node_id), view.me(node_id)
        if full is None or me is None:
            return None
        active = [n for n in view.nodes.values() if n.public_key in view.peers]
        devices = [d for carried in view.carried.values() for d in carried]
        rules = self.access.view(
            view.version, policy, lambda: access.members(active, devices, self.store.tags())
        )
        hidden = {d.name for d in devices if not rules.sees(me.name, d.name)}
        by_name = {n.name: n for n in active}

        def entry(peer: PeerEntry) -> PeerEntry:
            """The peer's entry with the devices it carries that `me` may not see left out
            of its routes."""
            carried = view.carried.get(peer.name, [])
            if not any(d.name in hidden for d in carried):
                return peer
            shown = [d for d in carried if d.name not in hidden]
            return peer_entry(by_name[peer.name], shown, view.frame)

        return dataclasses.replace(
            full,
            peers=tuple(entry(p) for p in full.peers if rules.sees(me.name, p.name)),
            devices=tuple(d for d in full.devices if d.name not in hidden),
            rules=rules.rules(me.name),
        )

    def roster_since(self, node_id: int, since: int) -> Roster | RosterDelta | None:
        """What changed in a member's roster since version `since` (a whole roster when the
        view cannot tell, under an access policy, or from a roster served under one);
        None if it is not a member."""
        if self.store.policy() is not None or since <= self._policy_seen:
            return self.roster(node_id)
        return self.current_view().delta(node_id, since)

    def _home_of(self, node: Node) -> int | None:
        """The node's home relay, if the map still has it."""
        return self.view.frame.home_of(node)

    def _node_info(self, node: Node) -> NodeInfo:
        """A member as the coordinator describes it to itself."""
        return NodeInfo(
            name=node.name,
            public_key=node.public_key,
            addresses=(node.ipv4, node.ipv6),
            routes=tuple(node.approved_routes),
            pending_routes=tuple(node.pending_routes),
            node_id=node.id,
            home_relay=self._home_of(node),
            keys_ms=node.keys_ms,
            expires_ms=node.expires_ms,
        )

    # -- HTTP ------------------------------------------------------------------------------

    @staticmethod
    def _response(message: Message, status: int = 200) -> web.Response:
        return web.Response(body=encode(message), status=status, content_type="application/json")

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Refuse a source that spent its refusals (429, before any work), answer, count;
        sign the answer if the request was authenticated."""
        _SIGNED_FOR.set(None)
        source = source_key(request.remote)
        if self.guard.blocked(source):
            response: web.StreamResponse = self._response(ErrorAnswer(LIMITED), 429)
            response.headers[hdrs.RETRY_AFTER] = str(math.ceil(1 / self.limits.refusals_per_second))
        else:
            response = await self._answer(request, handler, source)
        self.requests[(*_route_of(request), response.status)] += 1
        if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
            return response
        response.headers[auth.COORDINATOR_KEY_HEADER] = auth.b64(self.public_key)
        signed_for = _SIGNED_FOR.get()
        if signed_for is not None:
            response.headers[auth.SIGNATURE_HEADER] = auth.sign_response(
                self.key, signed_for, response.body
            )
        return response

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        source: bytes | None,
    ) -> web.StreamResponse:
        """The handler's answer, its refusals and faults as answers (a 401 costs the source
        one of its refusals)."""
        try:
            return await handler(request)
        except ApiError as exc:
            if exc.status == 401:
                self.guard.refused(source)
            return self._response(ErrorAnswer(exc.message), exc.status)
        except web.HTTPException as exc:  # 404, 405 from the router
            await self._authenticate_quietly(request, source)
            return self._response(ErrorAnswer(exc.reason.lower()), exc.status)
        except _CLIENT_FAULTS as exc:
            self.faults.fault(f"{request.method} {_route_of(request)[1]}", request.remote, exc)
            return self._response(ErrorAnswer("the request broke off"), 400)
        except Exception:
            self.faults.internal(f"{request.method} {_route_of(request)[1]} failed")
            return self._response(ErrorAnswer("internal error"), 500)

    async def _authenticate_quietly(self, request: web.Request, source: bytes | None) -> None:
        """Authenticate a member's request the router refused, so that its answer is signed."""
        if request.headers.get("Authorization") is None:
            return
        try:
            await self._member(request)
        except ApiError as exc:
            if exc.status == 401:
                self.guard.refused(source)

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, if it is at most MAX_BODY bytes and arrives within the body timeout."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(400, f"the body is larger than {MAX_BODY} bytes")
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(400, f"the body is larger than {MAX_BODY} bytes") from None
        except TimeoutError:
            self.faults.fault("a body too slow", request.remote, "timed out")
            raise ApiError(408, "the body did not arrive in time") from None

    @staticmethod
    def _request_auth(request: web.Request) -> auth.RequestAuth:
        try:
            return auth.parse_authorization(request.headers.get("Authorization"))
        except auth.AuthError as exc:
            raise ApiError(401, f"{exc} ({auth.SCHEME} expected)") from None

    async def _member(self, request: web.Request) -> tuple[Node, bytes]:
        """The member a request is from, and its body; 401 unless it is signed as it must be
        (one answer for an unknown key and a bad signature, after the same work)."""
        request_auth = self._request_auth(request)
        body = await self._read_body(request)
        node = self.store.node_by_key(auth.unb64(request_auth.node, 32))
        control = node.control_key if node is not None else _DECOY_KEY
        signed = request_auth.verify(control, request.method, request.raw_path, body)
        if node is None or not signed:
            raise ApiError(401, NOT_AUTHENTICATED)
        if not self._replay.accept(node.id, request_auth, self.clock_ms(), node.last_ms):
            raise ApiError(401, "stale or replayed request (check the clock)")
        if node.revoked:
            raise ApiError(401, "this node was revoked by the mesh's admin")
        if not node.active(self.clock_ms()):
            raise ApiError(401, "this node's keys expired: join again with a new token")
        self.store.accept_request(node.id, request_auth.time_ms)  # the newest, kept on disk
        _SIGNED_FOR.set(request_auth.signature)
        return node, body

    async def _health(self, request: web.Request) -> web.Response:
        return self._response(Health(ok=True))

    async def _join(self, request: web.Request) -> web.Response:
        """Join: the token first (a refusal before it tells nothing of the mesh), then
        the request's signature and freshness, then the store's checks of the rest."""
        request_auth = self._request_auth(request)
        body = await self._read_body(request)
        join = _request_body(body, JoinRequest.from_json)
        secret = self._join_token(join)
        if auth.unb64(request_auth.node, 32) != join.public_key:
            raise ApiError(401, "the request is not signed for this public key")
        if not request_auth.verify(join.control_key, request.method, request.raw_path, body):
            raise ApiError(401, "bad signature (not by this control key)")
        existing = self.store.node_by_key(join.public_key)
        last_ms = None
        if existing is not None and existing.control_key == join.control_key:
            last_ms = existing.last_ms
        now = self.clock_ms()
        if not request_auth.fresh(now, last_ms):
            raise ApiError(401, "stale or replayed request (check the clock)")
        _SIGNED_FOR.set(request_auth.signature)
        node, created = self._admit(join, secret, request_auth.time_ms, now)
        if created:
            log.info("%s joined as %s, %s", node.name, node.ipv4, node.ipv6)
            self._changed_here()
        return self._response(self.join_answer(node))

    def _join_token(self, join: JoinRequest) -> str:
        """The secret of the join's token; 401 unless it is a token of this coordinator that
        admits this key now (known, not expired, not spent on another node)."""
        try:
            token = auth.parse_token(join.token)
        except auth.AuthError as exc:
            raise ApiError(401, str(exc)) from None
        if not auth.same_hash(token.fingerprint, auth.fingerprint(self.public_key)):
            raise ApiError(401, "the join token is for another coordinator")
        try:
            self.store.check_join_token(
                auth.token_hash(token.secret), join.public_key, self.clock_ms()
            )
        except TokenRefused as exc:
            raise ApiError(401, str(exc)) from None
        return token.secret

    def _admit(self, join: JoinRequest, secret: str, time_ms: int, now: int) -> tuple[Node, bool]:
        """The store's join, its refusals as API errors: (the node, whether it is new)."""
        try:
            return self.store.join(
                auth.token_hash(secret),
                join.name,
                join.public_key,
                join.control_key,
                join.routes,
                time_ms=time_ms,
                now=now,
                auto_approve=self.auto_approve_routes,
            )
        except (TokenRefused, KeyRefused) as exc:
            raise ApiError(401, str(exc)) from None
        except Conflict as exc:
            raise ApiError(409, str(exc)) from None
        except StoreError as exc:
            raise ApiError(400, str(exc)) from None

    async def _roster(self, request: web.Request) -> web.StreamResponse:
        node, _ = await self._member(request)
        since, wait = _roster_query(request)
        await self.wait_version(since, wait)
        delta = request.rel_url.query.get("delta") == "1"
        roster = self.roster_since(node.id, since) if delta else self.roster(node.id)
        if roster is None:
            raise ApiError(401, "not a member of this mesh (removed)")
        if isinstance(roster, Roster) and roster.rules is None:
            # no access policy: its peer entries encoded once, not once a member
            async with self._whole_rosters:
                body = self.view.roster_body(node.id)
                if body is None:
                    raise ApiError(401, "not a member of this mesh (removed)")
                return await self._send_whole(request, body)
        return self._response(roster)

    async def _send_whole(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Write a whole roster, signed, and wait until the transport took all but its
        high-water mark of it: the caller's semaphore bounds the memory held for slow
        readers."""
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/json"})
        response.content_length = len(body)
        response.headers[auth.COORDINATOR_KEY_HEADER] = auth.b64(self.public_key)
        signed_for = _SIGNED_FOR.get()
        if signed_for is not None:
            response.headers[auth.SIGNATURE_HEADER] = auth.sign_response(self.key, signed_for, body)
        await response.prepare(request)
        try:
            await response.write(body)
            await response.write_eof()
        except ConnectionError as exc:  # the node went away while it was sent
            self.faults.fault(f"{request.method} {_route_of(request)[1]}", request.remote, exc)
        return response

    async def _members(self, request: web.Request) -> web.Response:
        """Every member, for a home relay: a request signed by a relay key it was given (a
        read, so freshness is enough: a replay gets only the answer its sender saw)."""
        request_auth = self._request_auth(request)
        key = auth.unb64(request_auth.node, 32)
        body = await self._read_body(request)
        if (
            key not in self.relay_keys
            or not request_auth.verify(key, request.method, request.raw_path, body)
            or not request_auth.fresh(self.clock_ms(), None)
        ):
            raise ApiError(401, "not a relay of this mesh, or a stale request")
        _SIGNED_FOR.set(request_auth.signature)
        since, wait = _roster_query(request)
        await self.wait_version(since, wait)
        version, nodes = self.store.snapshot()
        now = self.clock_ms()
        members = tuple(Member(n.public_key, n.control_key, n.id) for n in nodes if n.active(now))
        return self._response(MembersList(version, members))

    async def _rotate(self, request: web.Request) -> web.Response:
        node, body = await self._member(request)
        rotation = _request_body(body, RotateRequest.from_json)
        now = self.clock_ms()
        if abs(rotation.time_ms - now) > auth.MAX_SKEW_MS or not expiry.check_proof(
            rotation.proof,
            node.public_key,
            rotation.public_key,
            rotation.control_key,
            rotation.time_ms,
        ):
            raise ApiError(401, "rotate: the proof is not by the new control key, or stale")
        try:
            rotated = self.store.rotate(
                node.id,
                node.public_key,
                (rotation.public_key, rotation.control_key),
                now=now,
            )
        except (KeyRefused, NotFound) as exc:
            raise ApiError(401, f"rotate: {exc}") from None
        except Conflict as exc:
            raise ApiError(409, f"rotate: {exc}") from None
        except StoreError as exc:
            raise ApiError(400, f"rotate: {exc}") from None
        self._replay.forget(node.id)  # its requests now come signed by the new key
        log.info("%s rotated its keys", node.name)
        self._changed_here()
        return self._response(RotateAnswer(self._node_info(rotated)))

    async def _update(self, request: web.Request) -> web.Response:
        node, body = await self._member(request)
        update = _request_body(body, UpdateRequest.from_json)
        endpoints = update.endpoints
        home = update.home_relay
        if home and home not in {relay.number for relay in self.home_relays}:
            raise ApiError(400, f"update: home_relay {home} is not a relay of this mesh")
        before = self.store.version()
        try:
            version = self.store.update(
                node.id,
                endpoints=None if endpoints is None else [format_endpoint(e) for e in endpoints],
                routes=update.routes,
                home_relay=home,
                auto_approve=self.auto_approve_routes,
            )
        except NotFound:
            raise ApiError(401, "not a member of this mesh (removed)") from None
        except StoreError as exc:
            raise ApiError(400, str(exc)) from None
        if update.paths is not None:
            self.paths.report(node.id, update.paths, self.clock_ms())
        if version != before:
            self._changed_here()
        return self._response(UpdateAnswer(version))


def _mesh_key(store: Store, state_dir: str, *, shared: bool) -> SigningKey:
    """The coordinator's key (`load_or_create_key`); if the database is `shared` by several
    coordinators, checked with the certificate tokens pin against the mesh's
    (`Store.check_identity`): every coordinator of the mesh signs and serves alike."""
    key = load_or_create_key(state_dir)
    if shared:
        own = tls.self_made(state_dir)
        store.check_identity(bytes(key.verify_key), own.pin if own is not None else None)
    return key


def _relay_map(relays: Sequence[HomeRelay]) -> tuple[HomeRelay, ...]:
    """The relay map as configured; ValueError if two relays share a number, a name or a
    key (a node holds each relay under its number; a key names one relay)."""
    for index, relay in enumerate(relays):
        for other in relays[:index]:
            for what in ("number", "name", "key"):
                if getattr(other, what) == getattr(relay, what):
                    raise ValueError(f"two home relays have the same {what} ({relay.name})")
    return tuple(relays)


def _route_of(request: web.Request) -> tuple[str, str]:
    """(method, route) of a request, bounded to what the router knows (a label's values
    must be few): the route's pattern, "unmatched" for none, "OTHER" for an unknown method."""
    resource = request.match_info.route.resource
    method = request.method if request.method in hdrs.METH_ALL else "OTHER"
    return method, resource.canonical if resource is not None else "unmatched"


def _roster_query(request: web.Request) -> tuple[int, float]:
    query = request.rel_url.query
    try:
        since = int(query.get("since", "-1"))
        wait = float(query.get("wait", "0"))
    except ValueError:
        raise ApiError(400, "since is an integer and wait a number of seconds") from None
    if not -1 <= since < 1 << 62 or not math.isfinite(wait) or wait < 0:
        raise ApiError(400, "since or wait out of range")
    return since, min(wait, MAX_WAIT)


async def serve(
    state_dir: str,
    host: str | None,
    port: int,
    *,
    ipv4: str | None = None,
    ipv6: str | None = None,
    relay: relaychild.OwnRelay | None = None,
    auto_approve_routes: bool = False,
    relay_keys: Collection[bytes] = (),
    home_relays: Sequence[HomeRelay] = (),
    stop: asyncio.Event | None = None,
    ready: Callable[[Coordinator], None] | None = None,
    certificate: tls.Certificate | None = None,
    domain: str | None = None,
    setup: Callable[[Coordinator], None] | None = None,
    key_expiry_days: float | None = None,
    limits: Limits | None = None,
    database: str | None = None,
) -> None:
    """Run a coordinator until `stop` is set (or the task is cancelled); over HTTPS
    with `certificate`; with its own relay (a child process) if `relay` says how; its
    names under `domain` (default: as stored, else dns.DEFAULT_DOMAIN); what it grants
    each source address per `limits` (default: `Limits()`); its state in the
    PostgreSQL `database` if one is named (a URL), else in `state_dir`. `setup` is called
    before it starts (to add routes to its app: the admin UI)."""
    coordinator = Coordinator(
        state_dir,
        ipv4=ipv4,
        ipv6=ipv6,
        relay=relay,
        auto_approve_routes=auto_approve_routes,
        certificate=certificate,
        relay_keys=relay_keys,
        home_relays=home_relays,
        domain=domain,
        key_expiry_days=key_expiry_days,
        limits=limits,
        database=database,
    )
    try:
        if setup is not None:
            setup(coordinator)
        await coordinator.start(host, port)
        if ready is not None:
            ready(coordinator)
        await (stop or asyncio.Event()).wait()
    finally:
        await coordinator.close()
