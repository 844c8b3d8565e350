"""A TCP connection's control block (RFC 9293 §3.3.1): its state, variables and settings.

`TcpConfig` holds the knobs; `TcpUser` is what the connection tells its user (the asyncio
transport, in practice). Sequence numbers inside the block are unwrapped integers that
keep growing past 2**32; only the wire carries them modulo 2**32 (`wire`, `unwrap`), so
comparisons are plain integer comparisons.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pywg.netstack.congestion import NewReno
from pywg.netstack.reassembly import Reassembly
from pywg.netstack.rto import RtoEstimator
from pywg.netstack.scoreboard import Scoreboard

MASK = 0xFFFFFFFF
HALF = 1 << 31
DEFAULT_MSS = 536  # RFC 9293 §3.7.1, when the peer sends no MSS option


def wire(seq: int) -> int:
    """The 32-bit sequence number for an unwrapped one."""
    return seq & MASK


def unwrap(value: int, near: int) -> int:
    """The unwrapped sequence number closest to `near` whose low 32 bits are `value`."""
    return near + ((value - near + HALF) & MASK) - HALF


class State(enum.IntEnum):
    """The connection states of RFC 9293 §3.3.2 (LISTEN lives in the stack's listeners)."""

    CLOSED = 0
    SYN_SENT = 1
    SYN_RECEIVED = 2
    ESTABLISHED = 3
    FIN_WAIT_1 = 4
    FIN_WAIT_2 = 5
    CLOSE_WAIT = 6
    CLOSING = 7
    LAST_ACK = 8
    TIME_WAIT = 9


# states in which our side may still send data
SENDING = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
# states in which the peer may still send data
RECEIVING = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
SYNCHRONIZED = frozenset(State) - {State.CLOSED, State.SYN_SENT, State.SYN_RECEIVED}


@dataclass(frozen=True)
class TcpConfig:
    """Settings of the stack's TCP; times in seconds, sizes in bytes."""

    rcv_buffer: int = 1 << 20  # the receive window at most (scaled: RFC 7323)
    snd_buffer: int = 1 << 20  # data the user may queue before writing pauses
    rto_min: float = 0.2
    rto_initial: float = 1.0  # RFC 6298 §2.1
    delayed_ack: float = 0.04  # RFC 9293 §3.8.6.3: under 0.5 s
    msl: float = 30.0  # TIME-WAIT lasts 2 MSL (RFC 9293 §3.4.2)
    syn_retries: int = 6
    retries: int = 15  # data retransmissions before the connection is given up
    fin_wait_2_timeout: float = 60.0  # after the user closed, FIN-WAIT-2 is bounded
    keepalive_idle: float | None = None  # None: no keep-alives (RFC 9293 §3.8.4: off by default)
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    sack: bool = True
    window_scaling: bool = True


class TcpUser(Protocol):
    """What a connection reports to its user."""

    def established(self) -> None: ...
    def received(self, data: bytes) -> None: ...
    def eof(self) -> None: ...
    def closed(self, exc: Exception | None) -> None: ...
    def writable(self) -> None: ...


class ControlBlock:
    """The variables of one connection; `tcp.TcpConnection` runs the machine on them."""

    def __init__(
        self,
        config: TcpConfig,
        local: tuple[bytes, int],
        remote: tuple[bytes, int],
        iss: int,
        mss: int,
    ) -> None:
        self.config = config
        self.local_addr, self.local_port = local
        self.remote_addr, self.remote_port = remote
        self.user: TcpUser | None = None
        self.passive = False  # opened by a listener: an RST in SYN-RECEIVED just drops it
        self.state = State.CLOSED
        self.error: Exception | None = None
        # send sequence space (RFC 9293 §3.3.1)
        self.iss = iss
        self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.sack_ok = False
        self.link_mss = mss
        self.mss = min(mss, DEFAULT_MSS)
        self.tso_payload = 0  # new data per super-packet the link segments (0: none)
        self.sndbuf = bytearray()
        self.buf_seq = iss + 1  # sequence number of sndbuf[0]
        self.fin_queued = False
        self.user_closed = False
        # receive sequence space
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_held = bytearray()  # in order, not taken by a paused reader
        self.reading = True
        self.eof_pending = False
        self.ooo = Reassembly()
        self.scoreboard = Scoreboard()
        # timers and estimators
        self.rtt = RtoEstimator(config.rto_min, config.rto_initial)
        self.cc = NewReno(self.mss, iss)
        self.timing: tuple[int, float] | None = None  # (seq acked to measure, sent at)
        self.retries = 0
        self.rexmit_next = iss  # next hole to resend during SACK recovery
        self.rto_at: float | None = None
        self.delack_at: float | None = None
        self.persist_at: float | None = None
        self.keepalive_at: float | None = None
        self.linger_at: float | None = None  # TIME-WAIT, FIN-WAIT-2 and SYN-RECEIVED bounds
        self.keepalive_probes = 0
        self.ack_now = False
        self.unacked_segments = 0
        self.transmit: Callable[[bytes], None] = _nowhere
        self.wake: Callable[[ControlBlock], None] = _asleep
        self.on_closed: Callable[[ControlBlock], None] = _asleep

    @property
    def key(self) -> tuple[bytes, int, bytes, int]:
        """(local address, local port, remote address, remote port)."""
        return self.local_addr, self.local_port, self.remote_addr, self.remote_port

    @property
    def data_end(self) -> int:
        """One past the last byte the user queued."""
        return self.buf_seq + len(self.sndbuf)

    @property
    def window_edge(self) -> int:
        """The right edge of the peer's window: SND.WL2 + SND.WND, the window being
        relative to the ACK that carried it (RFC 9293 §3.8.6.2.1), not to SND.UNA, which an
        ACK in a segment too old to update the window may have moved since."""
        return self.snd_wl2 + self.snd_wnd

    @property
    def flight(self) -> int:
        """Bytes sent and not yet acknowledged (SND.MAX - SND.UNA)."""
        return self.snd_max - self.snd_una

    def rcv_window(self) -> int:
        """The receive window: the buffer not held by data the user has not taken."""
        return max(0, self.config.rcv_buffer - len(self.rcv_held))

    def is_closed(self) -> bool:
        """Whether the connection is over (a method, so that type narrowing stays honest)."""
        return self.state == State.CLOSED

    def next_deadline(self) -> float | None:
        """The earliest armed timer."""
        times = [
            t
            for t in (
                self.rto_at,
                self.delack_at,
                self.persist_at,
                self.keepalive_at,
                self.linger_at,
            )
            if t is not None
        ]
        return min(times) if times else None


def _nowhere(_data: bytes) -> None:
    pass


def _asleep(_tcb: ControlBlock) -> None:
    pass
