"""Arguments the commands share the syntax of: listening addresses, and the error they raise."""

from __future__ import annotations

import ipaddress


class UsageError(ValueError):
    """A bad argument (exit status 2)."""


def parse_hostport(text: str, what: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` (host None: every address)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"{what} must be HOST:PORT (e.g. 0.0.0.0:8580 or [::]:8580), not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"{what}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise UsageError(f"{what}: put an IPv6 address in brackets, [{host}]:{port_text}")
    return host or None, int(port_text)
