"""`pywg show`: a `wg show`-style, human-readable status of a device.

`format_status` renders a `pywg.status.InterfaceStatus` (parsed from the
UAPI `get=1` answer) the way wg(8) `show` lays it out: the interface block,
then each peer, most recent handshake first and peers that never completed
one last. `now` (wall-clock seconds, as the handshake times are) is a
parameter, so the output is reproducible.
"""

from __future__ import annotations

from typing import Final

from pywg.status import InterfaceStatus, PeerStatus

__all__ = ["format_bytes", "format_duration", "format_status"]

_UNITS: Final = (
    ("year", 365 * 24 * 3600),
    ("day", 24 * 3600),
    ("hour", 3600),
    ("minute", 60),
    ("second", 1),
)

_BYTE_UNITS: Final = ("KiB", "MiB", "GiB", "TiB")

_RESET: Final = "\x1b[0m"
_BOLD: Final = "\x1b[1m"
_GREEN: Final = "\x1b[32m"
_YELLOW: Final = "\x1b[33m"
_CYAN: Final = "\x1b[36m"


def format_duration(seconds: int) -> str:
    """`1 minute, 5 seconds`: years (of 365 days) down to seconds; `0 seconds` for 0."""
    if seconds <= 0:
        return "0 seconds"
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return ", ".join(parts)


def format_bytes(count: int) -> str:
    """`512 B`, `1.52 KiB`, `3.07 MiB`, ... up to TiB, with two decimals above bytes."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in _BYTE_UNITS:
        value /= 1024
        if value < 1024 or unit == _BYTE_UNITS[-1]:
            break
    return f"{value:.2f} {unit}"


def _handshake_phrase(last_handshake: float, now: float) -> str:
    elapsed = now - last_handshake
    if not elapsed >= 1:  # under a second, or "in the future" after a clock step
        return "Now"
    return f"{format_duration(int(elapsed))} ago"


def format_status(status: InterfaceStatus, *, now: float, color: bool = False) -> str:
    """The `wg show` text for one interface; `now` is wall-clock seconds (unix time).

    With `color`, headings and labels carry ANSI escapes, for a terminal.
    """

    def heading(label: str, value: str, tint: str) -> str:
        if color:
            return f"{_BOLD}{tint}{label}:{_RESET} {tint}{value}{_RESET}"
        return f"{label}: {value}"

    def item(label: str, value: str) -> str:
        if color:
            return f"  {_BOLD}{label}:{_RESET} {value}"
        return f"  {label}: {value}"

    def hidden() -> str:
        return f"{_CYAN}(hidden){_RESET}" if color else "(hidden)"

    out = [heading("interface", status.name, _GREEN)]
    if status.public_key is not None:
        out.append(item("public key", status.public_key))
    if status.has_private_key:
        out.append(item("private key", hidden()))
    if status.listen_port:
        out.append(item("listening port", str(status.listen_port)))
    if status.fwmark:
        out.append(item("fwmark", f"0x{status.fwmark:x}"))
    for peer in _by_handshake(status.peers):
        out.append("")
        out.append(heading("peer", peer.public_key, _YELLOW))
        if peer.preshared_key:
            out.append(item("preshared key", hidden()))
        if peer.endpoint is not None:
            out.append(item("endpoint", peer.endpoint))
        out.append(item("allowed ips", ", ".join(peer.allowed_ips) or "(none)"))
        if peer.last_handshake is not None:
            out.append(item("latest handshake", _handshake_phrase(peer.last_handshake, now)))
        if peer.rx_bytes or peer.tx_bytes:
            transfer = f"{format_bytes(peer.rx_bytes)} received, {format_bytes(peer.tx_bytes)} sent"
            out.append(item("transfer", transfer))
        if peer.persistent_keepalive:
            every = f"every {format_duration(peer.persistent_keepalive)}"
            out.append(item("persistent keepalive", every))
    return "\n".join(out) + "\n"


def _by_handshake(peers: tuple[PeerStatus, ...]) -> list[PeerStatus]:
    """Most recent handshake first, never-handshaked last; ties keep their order."""
    return sorted(
        peers,
        key=lambda p: (p.last_handshake is None, -(p.last_handshake or 0.0)),
    )
