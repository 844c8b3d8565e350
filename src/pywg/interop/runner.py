"""Running the suite: which pairs and targets, one fresh lab per scenario, time limits.

The implementations under test are given as :class:`pywg.lab.wireguard.Impl`
(``pywgd``, ``wireguard-go``, any command with wireguard-go's command line,
or ``kernel``). pywg itself, the reference, is this package's pywgd. Runs:

- pair scenarios between pywg and each implementation, and between every two
  implementations; a pair of the same program twice (pywg and ``--impl
  pywgd``) is run once, as that program against itself;
- hostile scenarios (pywg's adversarial peer) against each implementation.

Each (column, scenario) is one unit with its own :class:`pywg.lab.Lab`. Units
run on a few worker threads, longest first; a unit past its scenario's time
limit has its lab closed under it (daemons killed, namespaces deleted) and
fails as timed out.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from ..lab import Lab, LabError, close_all_labs, unavailable_reason
from ..lab.wireguard import PYWGD, Impl
from .context import build_hostile, build_pair
from .scenario import REGISTRY, Failed, Scenario, Skipped

Status = Literal["pass", "fail", "skip", "error"]
REFERENCE = "pywg"
LAB_PREFIX = "pwi"
TIME_SCALE = 10.0  # for time-scaled scenarios where both sides can (a 120 s rekey in 12 s)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table: a pair of implementations, or one under attack."""

    kind: Literal["pair", "hostile"]
    a: Impl  # the pair's A side; for hostile columns pywg's adversary
    b: Impl  # the pair's B side; for hostile columns the target

    @property
    def can_scale_time(self) -> bool:
        return self.a.time_scale_env is not None and self.b.time_scale_env is not None

    @property
    def label(self) -> str:
        if self.kind == "hostile":
            return f"{REFERENCE} adversary → {self.b.name}"
        return f"{_label(self.a)} ↔ {_label(self.b)}"


@dataclass
class Result:
    column: str
    scenario: str
    status: Status
    reason: str = ""
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


def _label(impl: Impl) -> str:
    return REFERENCE if impl is PYWGD else impl.name


def columns(impls: Sequence[Impl], *, with_pairs: bool = True) -> list[Column]:
    """The pair columns (pywg with each, each two) and the hostile ones (each)."""
    out: list[Column] = []
    if with_pairs:
        seen: set[frozenset[tuple[str, ...]]] = set()
        sides = [PYWGD, *impls]
        for i, a in enumerate(sides):
            for b in sides[i + 1 :]:
                key = frozenset({a.argv, b.argv})
                if key in seen:
                    continue
                seen.add(key)
                out.append(Column("pair", a, b))
    out += [Column("hostile", PYWGD, impl) for impl in impls]
    return out


@functools.cache
def kernel_module_reason() -> str:
    """Why kernel WireGuard cannot be tested here."""
    probe = Lab(LAB_PREFIX)
    try:
        host = probe.host("k")
        got = host.run("ip", "link", "add", "wgprobe", "type", "wireguard", check=False)
    finally:
        probe.close()
    if got.returncode != 0:
        return f"no WireGuard kernel module here (ip link add type wireguard: {got.stderr.strip()})"
    return "the kernel module exists, but pywg.lab drives only UAPI daemons so far"


def availability(impl: Impl) -> str | None:
    """Why `impl` cannot run here, or None."""
    program = impl.argv[0] if impl.argv else ""
    if program == "kernel":
        return kernel_module_reason()
    if shutil.which(program) is None and not os.path.exists(program):
        return f"{program} not found"
    return None


def run_unit(column: Column, sc: Scenario) -> Result:
    """One scenario in one column, in a lab of its own, within its time limit."""
    started = time.monotonic()
    result = Result(column.label, sc.name, "pass")
    reason = availability(column.a) or availability(column.b)
    if reason is not None:
        result.status, result.reason = "skip", reason
        return result
    lab = Lab(LAB_PREFIX)
    outcome: list[BaseException | None] = []
    metrics: dict[str, Any] = {}

    def body() -> None:
        try:
            if column.kind == "pair":
                scale = TIME_SCALE if sc.time_scaled and column.can_scale_time else 1.0
                ctx: Any = build_pair(lab, column.a, column.b, time_scale=scale)
            else:
                ctx = build_hostile(lab, column.b)
            metrics_ref = ctx.metrics
            try:
                sc.run(ctx)
            finally:
                metrics.update(metrics_ref)
            outcome.append(None)
        except BaseException as exc:  # reported, never raised past the unit
            outcome.append(exc)

    worker = threading.Thread(target=body, name=f"interop-{sc.name}", daemon=True)
    worker.start()
    worker.join(sc.timeout)
    if worker.is_alive():
        lab.close()  # everything it runs dies; the scenario's next call fails
        worker.join(15)
        result.status, result.reason = "fail", f"timed out after {sc.timeout:.0f} s"
    else:
        lab.close()
        exc = outcome[0] if outcome else RuntimeError("the scenario thread ended without result")
        if isinstance(exc, Skipped):
            result.status, result.reason = "skip", str(exc)
        elif isinstance(exc, Failed | AssertionError):
            result.status, result.reason = "fail", str(exc) or type(exc).__name__
        elif isinstance(exc, LabError):
            result.status, result.reason = "error", f"lab: {exc}"
        elif exc is not None:
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
            result.status, result.reason = "error", f"{type(exc).__name__}: {exc}{where}"
    result.seconds = round(time.monotonic() - started, 1)
    result.metrics = metrics
    return result


def load() -> dict[str, Scenario]:
    """Every scenario, registered by importing the modules that define them."""
    from . import pairs  # noqa: F401, I001 (pairs first: their rows come first)
    from . import hostile  # noqa: F401

    return REGISTRY


def select(names: Sequence[str] | None) -> list[Scenario]:
    """The scenarios to run, in registry order; KeyError names an unknown one."""
    load()
    if not names:
        return list(REGISTRY.values())
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(", ".join(unknown))
    return [sc for sc in REGISTRY.values() if sc.name in names]


def run_suite(
    impls: Sequence[Impl],
    *,
    scenarios: Sequence[str] | None = None,
    jobs: int = 3,
    with_pairs: bool = True,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run the suite; results in table order (column by column, scenario by scenario)."""
    why = unavailable_reason()
    if why is not None:
        raise LabError(f"the interop suite needs the lab: {why}")
    chosen = select(scenarios)
    cols = columns(impls, with_pairs=with_pairs)
    units = [(c, sc) for c in cols for sc in chosen if sc.kind == c.kind]
    order = sorted(range(len(units)), key=lambda i: -units[i][1].timeout)
    results: list[Result | None] = [None] * len(units)
    lock = threading.Lock()

    def one(i: int) -> None:
        column, sc = units[i]
        res = run_unit(column, sc)
        with lock:
            results[i] = res
            if progress is not None:
                progress(res)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        try:
            list(pool.map(one, order))
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through pywg interop
            pool.shutdown(wait=False, cancel_futures=True)
            close_all_labs()  # the running units fail fast once their labs are gone
            raise
    return [r for r in results if r is not None]
