"""`pywg interop` itself: the conformance suite against Debian's wireguard-go and pywgd.

The whole suite runs once per session (in about 4 minutes, scenarios side by
side) through the command line with --json, and every scenario x column is a
test of its own here, so a failure names the scenario, the pair and the
implementation's misbehaviour. The table and JSON formats are checked on
that run's results; the pieces that need no root are tested on their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from pywg.interop import report
from pywg.interop.runner import Result, columns, load
from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, Impl

SUITE_TIMEOUT = 900  # seconds for the whole run (it takes ~4 min on 2 vCPUs)
EXPECTED_COLUMNS = [
    "pywg ↔ wireguard-go",
    "pywg ↔ pywg",
    "pywg adversary → wireguard-go",
    "pywg adversary → pywgd",
]
needs_lab = pytest.mark.needs_lab("wireguard-go", "ping", "pywgd")  # what the suite's run uses


@pytest.fixture(scope="module")
def suite() -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pywg.cmd.main", "interop", "--impl", "wireguard-go",
         "--impl", "pywgd", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=SUITE_TIMEOUT)
    except BaseException:
        # SIGTERM, not SIGKILL: pywg interop then removes its labs before it exits
        proc.terminate()
        proc.communicate(timeout=60)
        raise
    assert stdout, f"no output; stderr: {stderr[-2000:]}"
    doc: dict[str, Any] = json.loads(stdout)
    doc["exit"] = proc.returncode
    doc["stderr"] = stderr
    return doc


def _units() -> list[tuple[str, str]]:
    scenarios = load()
    impls = [WIREGUARD_GO, PYWGD]
    return [
        (c.label, sc.name) for c in columns(impls) for sc in scenarios.values() if sc.kind == c.kind
    ]


def test_columns_pair_pywg_with_each_and_attack_each() -> None:
    got = [c.label for c in columns([WIREGUARD_GO, PYWGD])]
    assert got == EXPECTED_COLUMNS
    # the same program twice is one pair; two others give all three pairs
    other = Impl.parse("/usr/local/bin/boringtun-cli --disable-drop-privileges")
    labels = [c.label for c in columns([WIREGUARD_GO, other]) if c.kind == "pair"]
    assert labels == ["pywg ↔ wireguard-go", "pywg ↔ boringtun-cli", "wireguard-go ↔ boringtun-cli"]


def test_every_scenario_is_documented_and_bounded() -> None:
    for sc in load().values():
        assert sc.doc and sc.title and 0 < sc.timeout <= 300, sc


def test_report_formats() -> None:
    results = [
        Result("pywg ↔ x", "handshake-a", "pass", metrics={"handshake_s": 0.1}),
        Result("pywg ↔ x", "throughput", "pass", metrics={"a_to_b_mbit": 1.5, "ping_ms": 0.2}),
        Result("pywg adversary → x", "wrong-mac1", "fail", reason="x answered"),
    ]
    text = report.text(results)
    assert "| handshake, A initiates (`handshake-a`) | pass | — |" in text
    assert "| pywg ↔ x | 1.5 | — | 0.2 |" in text
    assert "- FAIL `wrong-mac1` [pywg adversary → x]: x answered" in text
    assert "2 of 3 passed" in text
    doc = json.loads(report.as_json(results))
    assert doc["passed"] == 2 and doc["total"] == 3
    assert doc["results"][2]["reason"] == "x answered"


@needs_lab
@pytest.mark.parametrize(("column", "scenario"), _units())
def test_scenario(suite: dict[str, Any], column: str, scenario: str) -> None:
    found = [r for r in suite["results"] if r["column"] == column and r["scenario"] == scenario]
    assert len(found) == 1, f"{scenario} [{column}] missing from the run: {suite['stderr'][-1500:]}"
    r = found[0]
    assert r["status"] == "pass", f"{r['status']}: {r['reason']} ({r['metrics']})"


@needs_lab
def test_suite_exit_status_and_columns(suite: dict[str, Any]) -> None:
    assert suite["columns"] == EXPECTED_COLUMNS
    assert suite["exit"] == (0 if suite["passed"] == suite["total"] else 1)
