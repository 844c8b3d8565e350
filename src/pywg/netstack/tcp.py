"""A TCP connection: the RFC 9293 state machine, driven by segments, user calls and time.

Sans-IO: segments come in through `receive`, time through `on_timer` (with `now` given by
the caller), the user's calls through `send`, `shutdown`, `abort`; what goes out leaves by
`transmit`, and the user hears of events through its `TcpUser`. The connection never
sends from inside a user call: it asks to be woken (`wake`) and sends in `output`, so a
user callback that writes while a segment is being processed is safe.
"""

from __future__ import annotations

from pywg.netstack.congestion import DUP_THRESHOLD, NewReno
from pywg.netstack.reassembly import Reassembly
from pywg.netstack.tcb import RECEIVING, SENDING, SYNCHRONIZED, State, TcpUser, unwrap
from pywg.netstack.tcpoutput import Sender
from pywg.netstack.tcpwire import ACK, FIN, RST, SYN, Segment

MAX_RCV_WSCALE = 14
_ESTABLISHING = frozenset({State.SYN_SENT, State.SYN_RECEIVED})


class TcpConnection(Sender):
    """One TCP connection (everything but LISTEN, which the stack's listeners are)."""

    # -- opening ------------------------------------------------------------------------

    def connect(self, user: TcpUser, now: float) -> None:
        """Active open: send a SYN (RFC 9293 §3.10.1)."""
        self.user = user
        self.state = State.SYN_SENT
        self.rcv_wscale = _scale_for(self.config.rcv_buffer) if self.config.window_scaling else 0
        self.send_syn(with_ack=False)
        self.timing = (self.iss + 1, now)
        self.rto_at = now + self.rtt.rto

    def accept_syn(self, syn: Segment, acceptor: TcpUser, now: float) -> None:
        """Passive open from a listener's SYN: answer with SYN-ACK (RFC 9293 §3.10.7.2)."""
        self.user = acceptor
        self.passive = True
        self.state = State.SYN_RECEIVED
        self._take_syn(syn)
        self.send_syn(with_ack=True)
        self.timing = (self.iss + 1, now)
        self.rto_at = now + self.rtt.rto
        self.linger_at = now + 75.0  # a handshake that never completes is dropped

    def accept_cookie(
        self, ack: Segment, irs: int, mss: int, acceptor: TcpUser, now: float
    ) -> None:
        """Open from a valid SYN cookie's ACK: no window scaling, no SACK (RFC 4987 §3.6)."""
        self.user = acceptor
        self.passive = True
        self.irs, self.rcv_nxt = irs, irs + 1
        self.mss = min(self.link_mss, mss)
        self.cc = NewReno(self.mss, self.iss)
        self.snd_nxt = self.snd_max = self.snd_una = self.iss + 1
        self.state = State.ESTABLISHED
        self.snd_wnd = self.max_snd_wnd = ack.window
        self.snd_wl1, self.snd_wl2 = irs + 1, self.snd_una
        self._established(now)

    def _take_syn(self, syn: Segment) -> None:
        self.irs = syn.seq
        self.rcv_nxt = syn.seq + 1
        self.mss = min(self.link_mss, syn.mss if syn.mss else 536)
        self.cc = NewReno(self.mss, self.iss)
        if self.config.window_scaling and syn.wscale is not None:  # RFC 7323 §2.2: both or neither
            self.snd_wscale = syn.wscale
            self.rcv_wscale = _scale_for(self.config.rcv_buffer)
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = self.config.sack and syn.sack_ok
        self.snd_wnd = self.max_snd_wnd = syn.window  # a SYN's window is never scaled
        self.snd_wl1 = syn.seq

    # -- user calls --------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue data for sending (RFC 9293 §3.10.2)."""
        if self.fin_queued or self.state not in SENDING | _ESTABLISHING:
            raise ConnectionError("connection is closing or closed")
        self.sndbuf += data
        self.wake(self)

    def shutdown(self) -> None:
        """Our side is done sending: a FIN after the queued data (RFC 9293 §3.10.4)."""
        if self.fin_queued:
            return
        if self.state == State.SYN_SENT:
            self._finish(None)
            return
        self.fin_queued = True
        if self.state in (State.ESTABLISHED, State.SYN_RECEIVED):
            self.state = State.FIN_WAIT_1
        elif self.state == State.CLOSE_WAIT:
            self.state = State.LAST_ACK
        self.wake(self)

    def close(self, now: float) -> None:
        """The user is gone: shut down, and bound FIN-WAIT-2 since no one will read."""
        self.user_closed = True
        self.shutdown()
        if self.state == State.FIN_WAIT_2:
            self.linger_at = now + self.config.fin_wait_2_timeout
        self._report_sent_all()

    def abort(self) -> None:
        """Abortive close: an RST to the peer, and the connection is gone (RFC 9293 §3.10.5)."""
        if self.state in SYNCHRONIZED | {State.SYN_RECEIVED} and self.state != State.TIME_WAIT:
            self.send_reset()
        self._finish(None)

    def set_reading(self, reading: bool) -> None:
        """Pause or resume delivery; held data shrinks the advertised window meanwhile."""
        self.reading = reading
        if reading and self.rcv_held and self.user is not None:
            before = self.rcv_window()
            data, self.rcv_held = bytes(self.rcv_held), bytearray()
            self.user.received(data)
            if self.eof_pending and not self.rcv_held and self.user is not None:
                self.eof_pending = False
                self.user.eof()
            if before < self.mss or before < self.config.rcv_buffer // 2:
                self.ack_now = True  # a window update (RFC 9293 §3.8.6.2.2)
                self.wake(self)

    # -- arriving segments (RFC 9293 §3.10.7) ------------------------------------------

    def receive(self, seg: Segment, now: float) -> None:
        """Process one segment for this connection."""
        if self.state == State.CLOSED:
            return
        if self.keepalive_at is not None:
            self._arm_keepalive(now)
        if self.state == State.SYN_SENT:
            self._receive_syn_sent(seg, now)
        else:
            self._receive_synchronized(seg, now)
        if self.ack_now:
            self.wake(self)

    def _receive_syn_sent(self, seg: Segment, now: float) -> None:
        ack = unwrap(seg.ack, self.snd_una)
        if seg.flags & ACK and not self.iss < ack <= self.snd_max:
            if not seg.flags & RST:
                self._reset_reply(seg)
            return
        if seg.flags & RST:
            if seg.flags & ACK:
                self._finish(ConnectionRefusedError("connection refused"))
            return
        if not seg.flags & SYN:
            return
        self._take_syn(seg)
        if seg.flags & ACK:
            self.snd_una = self.snd_wl2 = ack
            if self.timing is not None:
                self.rtt.sample(now - self.timing[1])
                self.timing = None
            self._established(now)
            self.ack_now = True
        else:  # simultaneous open (RFC 9293 §3.5)
            self.state = State.SYN_RECEIVED
            self.send_syn(with_ack=True)

    def _established(self, now: float) -> None:
        self.state = State.ESTABLISHED if not self.fin_queued else State.FIN_WAIT_1
        self.rto_at = None if self.snd_max == self.snd_una else now + self.rtt.rto
        self.retries = 0
        self.linger_at = None
        self._arm_keepalive(now)
        if self.user is not None:
            self.user.established()
        self.wake(self)

    def _receive_synchronized(self, seg: Segment, now: float) -> None:
        seq = unwrap(seg.seq, self.rcv_nxt)
        if not self._acceptable(seq, seg):
            if not seg.flags & RST:
                self.ack_now = True  # RFC 9293 §3.10.7.4 first check
            if self.state == State.TIME_WAIT and seg.flags & FIN:
                self.linger_at = now + 2 * self.config.msl
            # RCV.WND zero: valid ACKs still count (RFC 9293 §3.10.7.4), else two peers
            # with full buffers would each drop the ACK the other waits for
            if not (seg.flags & ACK and self.rcv_window() == 0):
                return
            seg.payload, seg.flags = b"", seg.flags & ~(FIN | SYN)
        if seg.flags & RST:
            self._receive_rst(seq)
            return
        if seg.flags & SYN:
            if self.state == State.SYN_RECEIVED and seq == self.irs:
                self.send_syn(with_ack=True)  # our SYN-ACK was lost
            else:
                self.ack_now = True  # challenge ACK (RFC 5961 §4.2)
            return
        if not seg.flags & ACK or not self._receive_ack(seg, seq, now):
            return
        if seg.payload and self.state in RECEIVING:
            self._receive_data(seq, seg, now)
        if seg.flags & FIN:
            self._receive_fin(seq + len(seg.payload), now)
        elif self.ooo.fin is not None and self.ooo.fin == self.rcv_nxt:
            self._receive_fin(self.rcv_nxt, now)

    def _acceptable(self, seq: int, seg: Segment) -> bool:
        """The sequence number check of RFC 9293 §3.10.7.4 (table of four cases)."""
        window = self.rcv_window()
        length = len(seg.payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
        if length == 0:
            # the right edge itself is accepted too (as Linux does): a peer that filled our
            # window and lost that data acknowledges from SND.MAX, which is that edge
            return self.rcv_nxt <= seq <= self.rcv_nxt + window
        if window == 0:
            return False
        right = self.rcv_nxt + window
        return self.rcv_nxt <= seq < right or self.rcv_nxt <= seq + length - 1 < right

    def _receive_rst(self, seq: int) -> None:
        if seq != self.rcv_nxt:
            self.ack_now = True  # in the window but not exact: challenge ACK (RFC 5961 §3.2)
            return
        if self.state == State.SYN_RECEIVED and self.passive:
            self._finish(None)  # a passive open goes back to LISTEN, silently
        elif self.state in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            self._finish(None)
        else:
            self._finish(ConnectionResetError("connection reset by peer"))

    def _reset_reply(self, seg: Segment) -> None:
        self.emit(unwrap(seg.ack, self.snd_una), RST)

    # -- acknowledgements --------------------------------------------------------------

    def _receive_ack(self, seg: Segment, seq: int, now: float) -> bool:
        """The ACK field (RFC 9293 §3.10.7.4 fifth check); False when the segment ends here."""
        ack = unwrap(seg.ack, self.snd_una)
        if self.state == State.SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                self._reset_reply(seg)
                return False
            self.snd_una = ack
            if self.timing is not None:
                self.rtt.sample(now - self.timing[1])
                self.timing = None
            self._update_window(seg, seq, ack)
            self._established(now)
            return not self.is_closed()
        if ack > self.snd_max:
            self.ack_now = True  # acknowledges what was never sent
            return False
        if seg.sack and self.sack_ok:
            for left, right in seg.sack:
                left, right = unwrap(left, self.snd_una), unwrap(right, self.snd_una)
                self.scoreboard.add(left, right, max(ack, self.snd_una), self.snd_max)
        if ack > self.snd_una:
            self._new_ack(ack, now)
        elif ack == self.snd_una and self._is_dupack(seg, seq):
            if self.cc.on_dupack(self.snd_una, self.snd_max, self.flight):
                self._fast_retransmit(now)
            self.wake(self)
        if self._sack_says_lost():
            self.cc.enter_recovery(self.snd_max, self.flight)
            self._fast_retransmit(now)
        self._update_window(seg, seq, ack)
        return self._after_ack(now)

    def _sack_says_lost(self) -> bool:
        """RFC 6675 §5 (IsLost): SACKed data of DupThresh segments above SND.UNA."""
        if self.cc.in_recovery or not self.scoreboard or self.snd_una < self.cc.recover:
            return False
        return self.scoreboard.sacked_bytes() >= DUP_THRESHOLD * self.mss

    def _fast_retransmit(self, now: float) -> None:
        self.retransmit(self.snd_una, now)
        self.rexmit_next = self.snd_una + self.mss

    def _is_dupack(self, seg: Segment, seq: int) -> bool:
        """RFC 5681 §2: no data, no SYN/FIN, window unchanged, data outstanding."""
        return (
            not seg.payload
            and not seg.flags & (SYN | FIN)
            and self.snd_max > self.snd_una
            and seg.window << self.snd_wscale == self.snd_wnd
        )

    def _new_ack(self, ack: int, now: float) -> None:
        acked = ack - self.snd_una
        flight = self.flight
        freed = min(ack, self.data_end) - self.buf_seq
        if freed > 0:
            del self.sndbuf[:freed]
            self.buf_seq += freed
        self.snd_una = ack
        self.snd_nxt = max(self.snd_nxt, ack)
        self.scoreboard.advance(ack)
        if self.timing is not None and ack >= self.timing[0]:
            self.rtt.sample(now - self.timing[1])
            self.timing = None
        self.rtt.reset_backoff()
        self.retries = 0
        partial = self.cc.on_ack(acked, ack, flight)
        if partial:
            if not self.scoreboard:
                self.retransmit(ack, now)  # NewReno: the next hole (RFC 6582 §3.2 step 4)
            self.rto_at = now + self.rtt.rto  # reset on the first partial ACK's resend
        elif ack >= self.snd_max:
            self.scoreboard.clear()
        self.rto_at = None if ack >= self.snd_max else now + self.rtt.rto
        if freed > 0 and self.user is not None and not self.fin_queued:
            self.user.writable()
        self.wake(self)

    def _update_window(self, seg: Segment, seq: int, ack: int) -> None:
        """SND.WND from the newest segment (RFC 9293 §3.10.7.4, SND.WL1/WL2 rule)."""
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            opened = self.snd_wnd == 0
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1, self.snd_wl2 = seq, ack
            if opened and self.snd_wnd:
                self.persist_at = None
                self.wake(self)

    def _after_ack(self, now: float) -> bool:
        """State changes once our FIN is acknowledged; False when the connection is over."""
        fin_acked = self.fin_queued and self.snd_una > self.data_end
        if not fin_acked:
            return True
        if self.state == State.FIN_WAIT_1:
            self.state = State.FIN_WAIT_2
            self.rto_at = None
            if self.user_closed:
                self.linger_at = now + self.config.fin_wait_2_timeout
            self._report_sent_all()
        elif self.state == State.CLOSING:
            self._time_wait(now)
        elif self.state == State.LAST_ACK:
            self._finish(None)
            return False
        return True

    def _report_sent_all(self) -> None:
        """A user that closed hears of it once our FIN is acknowledged."""
        done = self.state in (State.FIN_WAIT_2, State.TIME_WAIT)
        if done and self.user is not None and self.user_closed:
            user, self.user = self.user, None
            user.closed(None)

    # -- data and FIN ------------------------------------------------------------------

    def _receive_data(self, seq: int, seg: Segment, now: float) -> None:
        data = seg.payload
        if seq < self.rcv_nxt:  # trim what we have (RFC 9293 §3.10.7.4 eighth check)
            data = data[self.rcv_nxt - seq :]
            seq = self.rcv_nxt
        data = data[: self.rcv_nxt + self.rcv_window() - seq]
        if not data:
            self.ack_now = True
            return
        if seq > self.rcv_nxt:
            self.ooo.add(seq, data)
            # out of order: a duplicate ACK for each such segment, not one per batch, so
            # that the sender counts them (RFC 5681 §4.2, §3.2)
            self.emit(self.snd_max, ACK)
            return
        pieces = [data]
        self.rcv_nxt += len(data)
        if self.ooo:
            for piece in self.ooo.pop_ready(self.rcv_nxt):
                pieces.append(piece)
                self.rcv_nxt += len(piece)
            self.ack_now = True  # a hole filled: ACK at once (RFC 5681 §4.2)
        self._deliver(b"".join(pieces) if len(pieces) > 1 else data)
        # a segment longer than the MSS was coalesced from several (pywg.packetlink)
        self.unacked_segments += max(1, len(data) // self.mss)
        if self.unacked_segments >= 2:
            self.ack_now = True
        elif self.delack_at is None:
            self.delack_at = now + self.config.delayed_ack  # RFC 9293 §3.8.6.3

    def _deliver(self, data: bytes) -> None:
        if self.user is None or self.user_closed:
            return
        if self.reading and not self.rcv_held:
            self.user.received(data)
        else:
            self.rcv_held += data

    def _receive_fin(self, fin_seq: int, now: float) -> None:
        if fin_seq != self.rcv_nxt:
            if fin_seq > self.rcv_nxt and self.state in RECEIVING:
                self.ooo.fin = fin_seq  # wait for the data before it
            return
        if self.state not in RECEIVING | {State.CLOSE_WAIT, State.CLOSING, State.TIME_WAIT}:
            return
        self.ack_now = True
        if self.state not in RECEIVING:
            return  # a retransmitted FIN: only the ACK
        self.rcv_nxt += 1
        self.ooo.fin = None
        if self.state == State.ESTABLISHED:
            self.state = State.CLOSE_WAIT
        elif self.state == State.FIN_WAIT_1:
            self.state = State.CLOSING
        else:
            self._time_wait(now)
        if self.rcv_held:
            self.eof_pending = True  # after the data the reader has yet to take
        elif self.user is not None and not self.user_closed:
            self.user.eof()

    def _time_wait(self, now: float) -> None:
        self.state = State.TIME_WAIT
        self.rto_at = self.persist_at = self.keepalive_at = None
        self.linger_at = now + 2 * self.config.msl
        self.sndbuf = bytearray()
        self.ooo = Reassembly()
        self._report_sent_all()

    def _finish(self, exc: Exception | None) -> None:
        """The connection is over: tell the user (once) and the stack."""
        if self.state == State.CLOSED:
            return
        self.state = State.CLOSED
        self.error = exc
        self.rto_at = self.delack_at = self.persist_at = self.keepalive_at = self.linger_at = None
        self.sndbuf, self.rcv_held = bytearray(), bytearray()
        user, self.user = self.user, None
        if user is not None:
            user.closed(exc)
        self.on_closed(self)

    # -- timers ------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        """Run the timers that are due."""
        if self.linger_at is not None and now >= self.linger_at:
            self._finish(None if self.state == State.TIME_WAIT else TimeoutError("timed out"))
            return
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            self.ack_now = True
        if self.rto_at is not None and now >= self.rto_at:
            self._on_rto(now)
        if self.persist_at is not None and now >= self.persist_at:
            self.rtt.back_off()
            self.persist_at = now + self.rtt.rto
            self.probe(now)
        if self.keepalive_at is not None and now >= self.keepalive_at:
            self._keepalive(now)
        if self.state != State.CLOSED:
            self.wake(self)

    def _on_rto(self, now: float) -> None:
        """The retransmission timer expired (RFC 6298 §5.4-5.6)."""
        self.retries += 1
        limit = self.config.syn_retries if self.state in _ESTABLISHING else self.config.retries
        if self.retries > limit:
            self._finish(TimeoutError("connection timed out"))
            return
        self.rtt.back_off()
        self.rto_at = now + self.rtt.rto
        self.timing = None
        if self.state in _ESTABLISHING:
            self.send_syn(with_ack=self.state == State.SYN_RECEIVED)
            return
        if self.snd_max == self.snd_una:
            self.rto_at = None
            return
        self.cc.on_timeout(self.flight, self.snd_max)
        self.scoreboard.clear()
        self.snd_nxt = self.snd_una  # go back N from the first unacknowledged byte
        self.rexmit_next = self.snd_una

    def _arm_keepalive(self, now: float) -> None:
        idle = self.config.keepalive_idle
        self.keepalive_probes = 0
        self.keepalive_at = None if idle is None else now + idle

    def _keepalive(self, now: float) -> None:
        """RFC 9293 §3.8.4: probe an idle connection; give it up after the count."""
        if self.keepalive_probes >= self.config.keepalive_count:
            self._finish(TimeoutError("keep-alive timed out"))
            return
        self.keepalive_probes += 1
        self.keepalive_at = now + self.config.keepalive_interval
        self.probe(now)


def _scale_for(buffer: int) -> int:
    """The smallest window scale that lets `buffer` be advertised (RFC 7323 §2.3)."""
    scale = 0
    while (0xFFFF << scale) < buffer and scale < MAX_RCV_WSCALE:
        scale += 1
    return scale
