"""`pywgd --metrics-listen` / PYWG_METRICS_LISTEN: Prometheus metrics that agree with `wg show`.

A pywgd node and a wireguard-go node on one veth link of a throw-away lab
(underlay 198.18.1.0/24, tunnel 198.19.1.0/24); the pywgd node serves its
metrics on its underlay address, scraped over HTTP from inside its namespace
and parsed with prometheus_client's parser. The flag's parsing is checked
without a lab.
"""

from __future__ import annotations

import pytest

from helpers.metrics import by_label, scrape, value
from helpers.wg_nodes import PORT, Pair, connect_pair, start_node
from pywg.cmd import daemon
from pywg.cmd.address import UsageError
from pywg.lab import Lab

PREFIX = "pwmet"
METRICS_PORT = 9586


def test_metrics_listen_is_taken_out_of_wireguard_gos_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYWG_METRICS_LISTEN", raising=False)
    args = ["--metrics-listen", "[::1]:9586", "-f", "wg0"]
    assert daemon.metrics_address(args) == ("::1", 9586)
    assert args == ["-f", "wg0"]
    args = ["-f", "--metrics-listen=:9586", "wg0"]
    assert daemon.metrics_address(args) == (None, 9586)
    assert args == ["-f", "wg0"]
    args = ["wg0"]
    assert daemon.metrics_address(args) is None
    monkeypatch.setenv("PYWG_METRICS_LISTEN", "127.0.0.1:9586")
    assert daemon.metrics_address(args) == ("127.0.0.1", 9586)
    with pytest.raises(UsageError):
        daemon.metrics_address(["--metrics-listen", "nowhere", "wg0"])


def test_a_bad_metrics_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.main(["--metrics-listen", "::1:9586", "wg0"]) == 2
    assert "put an IPv6 address in brackets" in capsys.readouterr().err


@pytest.mark.needs_lab("wg", "wireguard-go", "ping", "pywgd")
@pytest.mark.time_limit(30)
def test_peer_metrics_match_wg_show() -> None:
    with Lab(PREFIX) as lab:
        pw_host, go_host = lab.host("pw"), lab.host("go")
        link = lab.link(pw_host, go_host)
        listen = f"{link.address(pw_host, 4)}:{METRICS_PORT}"
        env = {"PYWG_METRICS_LISTEN": listen}
        pw = start_node(lab, pw_host, "pywgd", net=1, index=1, port=PORT, env=env)
        go = start_node(lab, go_host, "wireguard-go", net=1, index=2, port=PORT)
        pair = Pair(link, 4, pw, go)
        connect_pair(pair)
        pw_host.run("ping", "-c", "5", "-i", "0.05", "-W", "2", go.addr4)
        peer = str(go.public_key)
        labels = {"interface": pw.ifname, "public_key": peer}

        transfer = pw.wg("show", pw.ifname, "transfer")
        samples = pw_host.call(lambda: scrape(f"http://{listen}/metrics"))
        assert pw.wg("show", pw.ifname, "transfer") == transfer  # nothing moved meanwhile
        rx, tx = (int(n) for n in transfer.split()[1:3])
        assert rx > 0 and tx > 0
        assert value(samples, "pywg_peer_receive_bytes_total", **labels) == rx
        assert value(samples, "pywg_peer_transmit_bytes_total", **labels) == tx

        handshake = int(pw.wg("show", pw.ifname, "latest-handshakes").split()[1])
        assert handshake > 0
        assert int(value(samples, "pywg_peer_last_handshake_seconds", **labels)) == handshake
        assert value(samples, "pywg_peers", interface=pw.ifname) == 1

        drops = by_label(samples, "pywg_drops_total", "reason")
        assert {"tun_write_failed", "udp_send_failed"} <= set(drops)
        assert value(samples, "process_open_fds") > 0  # the process's own metrics too
        assert not any("private" in name for name, _ in samples)
