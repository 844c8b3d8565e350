"""The suite's verdict: a table (scenario × column) for people, JSON for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .runner import Result
from .scenario import REGISTRY

MARK = {"pass": "pass", "fail": "FAIL", "skip": "skip", "error": "ERROR"}


def _columns(results: Sequence[Result]) -> list[str]:
    out: list[str] = []
    for r in results:
        if r.column not in out:
            out.append(r.column)
    return out


def table(results: Sequence[Result]) -> str:
    """A Markdown table: one row per scenario, one column per pair or target."""
    cols = _columns(results)
    cell = {(r.scenario, r.column): r for r in results}
    names = [n for n in REGISTRY if any(r.scenario == n for r in results)]
    lines = [
        "| scenario | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name in names:
        row = []
        for col in cols:
            r = cell.get((name, col))
            row.append("—" if r is None else MARK[r.status])
        lines.append(f"| {REGISTRY[name].title} (`{name}`) | " + " | ".join(row) + " |")
    return "\n".join(lines)


def figures(results: Sequence[Result]) -> str:
    """Throughput and latency per pair, from the `throughput` scenario."""
    rows = [r for r in results if r.scenario == "throughput" and r.metrics]
    if not rows:
        return ""
    lines = ["| pair | A→B Mbit/s | B→A Mbit/s | ping ms |", "|---|---|---|---|"]
    for r in rows:
        m = r.metrics
        lines.append(
            f"| {r.column} | {m.get('a_to_b_mbit', '—')} | {m.get('b_to_a_mbit', '—')} "
            f"| {m.get('ping_ms', '—')} |"
        )
    return "\n".join(lines)


def notes(results: Sequence[Result]) -> str:
    """Every result that did not pass, with its reason."""
    lines = [
        f"- {MARK[r.status]} `{r.scenario}` [{r.column}]: {r.reason}"
        for r in results
        if r.status != "pass"
    ]
    return "\n".join(lines)


def text(results: Sequence[Result]) -> str:
    passed = sum(r.status == "pass" for r in results)
    parts = [table(results)]
    if fig := figures(results):
        parts.append(fig)
    if note := notes(results):
        parts.append(note)
    parts.append(f"{passed} of {len(results)} passed")
    return "\n\n".join(parts)


def as_json(results: Sequence[Result]) -> str:
    doc: dict[str, Any] = {
        "columns": _columns(results),
        "scenarios": {
            name: {"title": sc.title, "kind": sc.kind, "checks": sc.doc}
            for name, sc in REGISTRY.items()
            if any(r.scenario == name for r in results)
        },
        "results": [
            {
                "column": r.column,
                "scenario": r.scenario,
                "status": r.status,
                "reason": r.reason,
                "seconds": r.seconds,
                "metrics": r.metrics,
            }
            for r in results
        ],
        "passed": sum(r.status == "pass" for r in results),
        "total": len(results),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)
