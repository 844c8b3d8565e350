"""The coordinator's admin web UI in a real browser: headless chromium through chromedriver.

One coordinator (HTTPS with its self-made certificate, the UI mounted as
`pywg coordinator serve` mounts it) runs on an event loop inside a lab
host; its nodes are simulated in process, each sending real signed
requests (join, updates with endpoints and path states, roster long-polls);
one chromium session (helpers.browser) serves the whole module. The tests
run in file order and share that state: the login of the first is the
session of the others.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

pytest.importorskip("selenium", reason="the browser tests need selenium (pip install selenium)")

from helpers.browser import Browser, LoopThread
from helpers.mesh_harness import make_coordinator
from pywg.endpoint import parse_endpoint
from pywg.keys import PrivateKey
from pywg.lab import Host, Lab
from pywg.mesh import auth, tls
from pywg.mesh.client import CoordinatorClient, CoordinatorError
from pywg.mesh.coordinator import Coordinator
from pywg.mesh.schema import PathState, Roster
from pywg.mesh.webui import passwords
from pywg.mesh.webui.app import add_routes
from pywg.mesh.webui.sessions import Sessions
from pywg.mesh.webui.ui import AdminUI

PREFIX = "pwui"
PASSWORD = "a browser test password"
SESSION_TTL = 600.0
PHONE_WIDTH = 390
WAKE = 5.0  # s: a long-poll answers this soon after an admin's change

pytestmark = [
    pytest.mark.needs_lab("chromium", "chromedriver", "zbarimg"),
    pytest.mark.time_limit(30),
]


@dataclass
class SimNode:
    """A node as the coordinator sees it: keys and a client pinned to its certificate."""

    name: str
    client: CoordinatorClient
    wg: PrivateKey = field(default_factory=PrivateKey.generate)

    @property
    def key(self) -> bytes:
        return bytes(self.wg.public_key)


@dataclass
class Env:
    host: Host
    loop: LoopThread
    coordinator: Coordinator
    ui: AdminUI
    browser: Browser
    url: str
    skew: list[float]
    nodes: dict[str, SimNode] = field(default_factory=dict)

    def node(self, name: str, **more: Any) -> SimNode:
        """A new simulated node (its client made on the loop)."""

        async def make() -> SimNode:
            control = SigningKey.generate()
            wg = PrivateKey.generate()
            pin = self.coordinator.certificate.pin if self.coordinator.certificate else None
            client = CoordinatorClient(self.url, wg.public_key.to_base64(), control, tls_pin=pin)
            return SimNode(name, client, wg)

        made = self.loop.run(make())
        self.nodes[name] = made
        return made

    def run(self, coro: Any) -> Any:
        return self.loop.run(coro)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state = str(tmp_path_factory.mktemp("webui"))
    with Lab(PREFIX) as lab:
        host = lab.host("h")
        host.ip("link", "set", "lo", "up")
        loop = LoopThread(host)
        skew = [0.0]
        try:
            coordinator = make_coordinator(
                state, certificate=tls.load_or_make(state, ["127.0.0.1"])
            )
            clock = loop.loop.time
            ui = AdminUI(coordinator, sessions=Sessions(SESSION_TTL, lambda: clock() + skew[0]))
            add_routes(ui)
            passwords.set_password(coordinator.store, PASSWORD)
            port = loop.run(coordinator.start("127.0.0.1", 0))
            url = f"https://127.0.0.1:{port}"
            browser = Browser(host, url)
            made = Env(host, loop, coordinator, ui, browser, url, skew)
            try:
                _populate(made)
                yield made
            finally:
                for node in made.nodes.values():
                    loop.run(node.client.close())
                browser.close()
                loop.run(coordinator.close())
        finally:
            loop.close()


def _populate(env: Env) -> None:
    """alpha reaches beta directly and gamma through the relay; beta advertises two subnets."""
    token = env.coordinator.new_token(600, reusable=True)
    alpha, beta, gamma = env.node("alpha"), env.node("beta"), env.node("gamma")
    env.run(alpha.client.join(token, "alpha", []))
    env.run(beta.client.join(token, "beta", ["10.20.0.0/24", "10.21.0.0/24"]))
    env.run(gamma.client.join(token, "gamma", []))
    env.run(
        beta.client.update([parse_endpoint("192.0.2.2:51820")], ["10.20.0.0/24", "10.21.0.0/24"])
    )
    paths = (
        PathState(beta.key, "direct", parse_endpoint("192.0.2.2:51820")),
        PathState(gamma.key, "relay", parse_endpoint("127.0.0.1:40003")),
    )
    env.run(alpha.client.report_paths(paths))


def login(env: Env, secret: str = PASSWORD) -> None:
    env.browser.open("/admin/login")
    env.browser.fill("#secret", secret)
    env.browser.click("form button[type=submit]")


# -- the tests, in order -------------------------------------------------------------------


def test_wrong_password_is_refused_then_the_right_one_logs_in(env: Env) -> None:
    env.browser.open("/admin/nodes")
    assert env.browser.path() == "/admin/login"  # no session: the login form
    login(env, "not the password")
    assert "Wrong password" in env.browser.text("#message")
    env.browser.open("/admin/nodes")
    assert env.browser.path() == "/admin/login"
    login(env)
    assert env.browser.path() == "/admin/nodes"
    assert env.browser.texts("h1") == ["Nodes"]


def test_nodes_show_their_path_state(env: Env) -> None:
    env.browser.open("/admin/nodes")
    paths = env.browser.do(
        lambda d: [
            (e.get_attribute("data-peer"), e.get_attribute("data-path"), e.text)
            for e in d.find_elements("css selector", "#node-alpha tr.path")
        ]
    )
    assert [(peer, path) for peer, path, _ in paths] == [("beta", "direct"), ("gamma", "relay")]
    assert "192.0.2.2:51820" in paths[0][2] and "127.0.0.1:40003" in paths[1][2]
    beta = env.browser.text("#node-beta")
    assert "192.0.2.2:51820" in beta and "online" in beta and "Not reported yet" in beta
    address = env.coordinator.store.node_by_name("beta")
    assert address is not None and address.ipv4 in beta and address.ipv6 in beta


def test_approving_a_route_reaches_the_nodes_at_once(env: Env) -> None:
    alpha = env.nodes["alpha"]
    version = env.run(alpha.client.roster(-1, 0)).version
    polling = env.loop.submit(alpha.client.roster(version, 30))  # waiting for a change
    env.browser.open("/admin/routes")
    row = "tr.pending[data-node=beta][data-prefix='10.20.0.0/24']"
    assert env.browser.count(row) == 1
    env.browser.click(f"{row} button.approve")
    assert "Approved for beta: 10.20.0.0/24" in env.browser.text(".flash.ok")
    roster: Roster = polling.result(WAKE)
    beta = next(p for p in roster.peers if p.name == "beta")
    assert "10.20.0.0/24" in beta.routes and "10.21.0.0/24" not in beta.routes
    # the other one refused: it leaves the list and stays out of the rosters
    env.browser.click("tr.pending[data-node=beta][data-prefix='10.21.0.0/24'] button.refuse")
    assert "Refused for beta: 10.21.0.0/24" in env.browser.text(".flash.ok")
    assert env.browser.count("tr.pending") == 0
    assert "10.21.0.0/24" in env.browser.text("tr.settled[data-node=beta]")
    node = env.coordinator.store.node_by_name("beta")
    assert node is not None and node.refused_routes == ["10.21.0.0/24"]


def test_adding_a_device_shows_its_config_and_qr_code(env: Env, tmp_path: Path) -> None:
    env.browser.open("/admin/devices")
    env.browser.fill("#device-name", "phone")
    env.browser.do(lambda d: _select(d, "#gateway", "beta"))
    env.browser.click("#add-device")
    config = env.browser.text("#config")
    assert "[Interface]" in config and "Endpoint = 192.0.2.2:51820" in config
    image = tmp_path / "qr.png"
    image.write_bytes(env.browser.screenshot("#qr"))
    decoded = subprocess.run(
        ["zbarimg", "--raw", "-q", str(image)],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert decoded.strip() == config.strip()
    roster = env.run(env.nodes["beta"].client.roster(-1, 0))
    assert [d.name for d in roster.devices] == ["phone"]
    env.browser.open("/admin/devices")
    assert env.browser.count("tr.device[data-name=phone]") == 1


def _select(driver: Any, css: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("css selector", css)).select_by_visible_text(value)


def _make_token(env: Env) -> str:
    env.browser.open("/admin/tokens")
    env.browser.tick("#reusable")
    env.browser.click("#make-token")
    token = env.browser.text("#token")
    assert f"pywg join {env.url} --token {token}" == env.browser.text("#join-command")
    return token


def test_a_revoked_token_admits_no_node(env: Env) -> None:
    kept, revoked = _make_token(env), _make_token(env)
    digest = auth.token_hash(auth.parse_token(revoked).secret)
    env.browser.open("/admin/tokens")
    env.browser.click(f"tr.token[data-hash='{digest}'] button.revoke")
    assert "Token revoked" in env.browser.text(".flash.ok")
    assert env.browser.count(f"tr.token[data-hash='{digest}']") == 0
    with pytest.raises(CoordinatorError, match="unknown join token"):
        env.run(env.node("delta").client.join(revoked, "delta", []))
    env.run(env.node("epsilon").client.join(kept, "epsilon", []))  # the other one still works


def test_removing_a_node(env: Env) -> None:
    env.browser.open("/admin/nodes")
    env.browser.click("#node-gamma button.danger")
    assert "Removed gamma" in env.browser.text(".flash.ok")
    assert env.browser.count("#node-gamma") == 0
    with pytest.raises(CoordinatorError, match="not a member"):
        env.run(env.nodes["gamma"].client.roster(-1, 0))


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(env: Env) -> None:
    for change in ("el.remove()", "el.value = 'x' + el.value.slice(1)"):
        env.browser.open("/admin/nodes")
        env.browser.script(
            f"const el = document.querySelector('#node-epsilon input[name=csrf]'); {change};"
        )
        env.browser.click("#node-epsilon button.danger")
        assert "CSRF" in env.browser.text("#message")
        assert env.coordinator.store.node_by_name("epsilon") is not None


def test_an_expired_session_is_refused(env: Env) -> None:
    env.browser.open("/admin/nodes")  # a form loaded while the session lived
    env.skew[0] = SESSION_TTL
    try:
        env.browser.click("#node-epsilon button.danger")
        assert "not logged in" in env.browser.text("#message")
        assert env.coordinator.store.node_by_name("epsilon") is not None
        env.browser.open("/admin/nodes")
        assert env.browser.path() == "/admin/login?expired=1"
        assert "expired" in env.browser.text("#message")
    finally:
        env.skew[0] = 0.0
    login(env)
    assert env.browser.path() == "/admin/nodes"


GOOD_POLICY = '{\n  "rules": [\n    {"from": ["alpha"], "to": ["beta:22/tcp"]},\n  ],\n}\n'


def _set_policy(env: Env, text: str) -> None:
    env.browser.open("/admin/policy")
    env.browser.script("document.querySelector('#policy').value = arguments[0];", text)
    env.browser.click("#set-policy")


def test_the_policy_page_sets_refuses_and_clears(env: Env) -> None:
    env.browser.open("/admin/policy")
    assert "No policy" in env.browser.text("#policy-state")
    # refused: the line and the reason, the text kept in the form, nothing in force
    _set_policy(env, GOOD_POLICY.replace('"beta:', '"zeta:'))
    error = env.browser.text("#policy-error")
    assert "line 3" in error and "zeta" in error, error
    assert env.browser.text("#error-line").startswith("3 | ")
    assert "zeta" in env.browser.script("return document.querySelector('#policy').value")
    assert env.coordinator.policy() is None
    _set_policy(env, GOOD_POLICY)
    assert "Policy set" in env.browser.text(".flash.ok")
    assert env.coordinator.policy() == GOOD_POLICY
    roster = env.run(env.nodes["alpha"].client.roster(-1, 0))
    assert [p.name for p in roster.peers] == ["beta"] and roster.rules == ()
    # a later refusal keeps the policy in force
    _set_policy(env, GOOD_POLICY.replace("22/tcp", "22/tpc"))
    assert "tpc" in env.browser.text("#policy-error")
    assert env.coordinator.policy() == GOOD_POLICY
    env.browser.click("#clear-policy")
    assert "Policy cleared" in env.browser.text(".flash.ok")
    assert env.coordinator.policy() is None
    assert env.run(env.nodes["alpha"].client.roster(-1, 0)).rules is None


def test_pages_fit_a_phone(env: Env) -> None:
    metrics = {"width": PHONE_WIDTH, "height": 844, "deviceScaleFactor": 2, "mobile": True}
    env.browser.do(lambda d: d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics))
    try:
        for page in ("nodes", "routes", "tokens", "devices", "policy"):
            env.browser.open(f"/admin/{page}")
            width = env.browser.script("return document.documentElement.scrollWidth")
            viewport = env.browser.script("return window.innerWidth")
            assert viewport == PHONE_WIDTH
            assert width <= PHONE_WIDTH, f"/admin/{page} scrolls sideways at {PHONE_WIDTH} px"
        _make_token(env)
        assert env.browser.script("return document.documentElement.scrollWidth") <= PHONE_WIDTH
    finally:
        env.browser.do(lambda d: d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {}))


def test_logins_are_rate_limited_and_answers_carry_security_headers(env: Env) -> None:
    try:
        for _ in range(env.ui.limiter.max_failures):
            login(env, "guessing")
            assert "Wrong password" in env.browser.text("#message")
        login(env)  # the right one, too late
        assert "Too many failed logins" in env.browser.text("#message")
    finally:
        env.ui.limiter.clear()
    headers, cookie = env.run(_login_headers(env.url))
    csp = headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags


async def _login_headers(url: str) -> tuple[dict[str, str], str]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/admin/login", data={"secret": PASSWORD}, ssl=False, allow_redirects=False
        ) as answer,
    ):
        assert answer.status == 303
        return dict(answer.headers), answer.headers["Set-Cookie"]
