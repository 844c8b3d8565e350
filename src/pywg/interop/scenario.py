"""Scenarios of the conformance suite: what one is, how it passes, fails or is skipped.

A scenario is a function registered with :func:`scenario`. It gets a fresh
context (a lab of its own, daemons freshly started, see
:mod:`pywg.interop.context`) and either returns (pass), raises
:class:`Failed` (through :func:`check`, or any AssertionError), raises
:class:`Skipped` with a reason, or runs out of its time limit (fail). Any
other exception is reported as an error of the suite, with its message.

Two kinds:

- ``pair``: two implementations, each a daemon in its own lab host, peers
  of each other (:class:`pywg.interop.context.PairContext`);
- ``hostile``: pywg's adversarial peer, built on the sans-IO core, against
  one implementation (:class:`pywg.interop.context.HostileContext`); it sends
  what honest peers never do and checks the implementation rejects it
  without harm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

Kind = Literal["pair", "hostile"]
KINDS: Final = ("pair", "hostile")


class Skipped(Exception):
    """The scenario cannot run here; the message says why."""


class Failed(AssertionError):
    """The implementation did not behave as the protocol requires; the message says how."""


def check(condition: object, message: str) -> None:
    """Fail the scenario with `message` unless `condition` holds."""
    if not condition:
        raise Failed(message)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str  # short, unique, used on the command line (--scenario NAME)
    title: str  # one line for the table
    kind: Kind
    run: Callable[[Any], None]
    timeout: float  # seconds, setup included; past it the scenario fails
    doc: str  # what it checks (the function's docstring)
    time_scaled: bool = False  # runs on scaled protocol time where both sides allow it


REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str, title: str, *, kind: Kind, timeout: float = 60.0, time_scaled: bool = False
) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register the decorated function as a scenario (in definition order).

    `time_scaled`: when both implementations can run their protocol timers
    fast (``Impl.time_scale_env``), the daemons are started that way and the
    context's ``time_scale`` says by how much; otherwise it runs in real time.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}")

    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        if name in REGISTRY:
            raise ValueError(f"scenario {name!r} registered twice")
        doc = " ".join((fn.__doc__ or "").split())
        REGISTRY[name] = Scenario(name, title, kind, fn, timeout, doc, time_scaled)
        return fn

    return register
