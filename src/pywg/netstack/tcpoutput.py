"""What a TCP connection sends: new data, retransmissions, FIN, ACKs, window probes.

The send loop follows RFC 9293 §3.8.6.2.1 (no partial segment while the window, not the
data, limits it and something is in flight) within min(cwnd, SND.WND) (RFC 5681 §3.1).
During fast recovery with SACK, the holes below the highest SACKed byte go first
(RFC 6675 §5 NextSeg, rule 1), one full segment each, as the window allows.

Over a link that segments TCP (`tso_payload`, `pywg.packetlink`), new data that would go
as several full segments in a row goes as one super-packet instead, cut by the link into
those very segments: the same bytes on the wire, one packet built here instead of dozens.
Retransmissions, probes and the FIN stay single segments.
"""

from __future__ import annotations

from pywg.netstack import tcpwire
from pywg.netstack.tcb import ControlBlock, State, wire
from pywg.netstack.tcpwire import ACK, FIN, PSH, RST, SYN

_FIN_STATES = frozenset({State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK})
_DATA_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)


class Sender(ControlBlock):
    """The sending half of a connection."""

    def emit(self, seq: int, flags: int, payload: bytes = b"", options: bytes = b"") -> None:
        """Put one segment on the wire, acknowledging RCV.NXT when ACK is set."""
        window = min(self.rcv_window() >> self.rcv_wscale, 0xFFFF)
        ack = wire(self.rcv_nxt) if flags & ACK else 0
        if flags & ACK and self.sack_ok and self.ooo and not flags & SYN:
            blocks = self.ooo.sack_blocks(tcpwire.MAX_SACK_BLOCKS)
            options = tcpwire.sack_option([(wire(s), wire(e)) for s, e in blocks])
        fields = (self.local_port, self.remote_port, wire(seq), ack, flags, window)
        checksum = len(payload) <= self.mss  # a super-packet's segments are checksummed by the link
        self.transmit(
            tcpwire.build(self.local_addr, self.remote_addr, fields, options, payload, checksum)
        )
        if flags & ACK:
            self.ack_now = False
            self.delack_at = None
            self.unacked_segments = 0

    def room(self) -> int:
        """Payload bytes a segment may carry: the MSS less the SACK option it will carry
        (RFC 9293 §3.7.1: the MSS counts data only, so options come out of it)."""
        if self.sack_ok and self.ooo:
            return self.mss - 4 - 8 * min(len(self.ooo.ranges), tcpwire.MAX_SACK_BLOCKS)
        return self.mss

    def send_syn(self, with_ack: bool) -> None:
        """(Re)send our SYN, with our MSS, window scale and SACK-permitted (RFC 7323, 2018)."""
        wscale = self.rcv_wscale if self.config.window_scaling else None
        options = tcpwire.syn_options(self.link_mss, wscale, self.config.sack)
        flags = SYN | ACK if with_ack else SYN
        window = min(self.rcv_window(), 0xFFFF)  # never scaled in a SYN (RFC 7323 §2.2)
        ack = wire(self.rcv_nxt) if with_ack else 0
        fields = (self.local_port, self.remote_port, wire(self.iss), ack, flags, window)
        self.transmit(tcpwire.build(self.local_addr, self.remote_addr, fields, options, b""))
        self.snd_nxt = self.snd_max = self.iss + 1

    def send_reset(self) -> None:
        """An RST at SND.NXT for an abortive close (RFC 9293 §3.10.5)."""
        self.emit(self.snd_max, RST | ACK)

    def output(self, now: float) -> None:
        """Send what the windows allow, then an ACK if one is owed and nothing carried it."""
        if self.state in _DATA_STATES:
            if self.cc.in_recovery and self.scoreboard:
                self._resend_holes(now)
            self._send_new(now)
        if self.ack_now and self.state not in (State.CLOSED, State.SYN_SENT):
            # at SND.MAX, not a rewound SND.NXT: the peer has seen everything up to SND.MAX,
            # and would find an ACK below it out of its window and drop it unread
            self.emit(self.snd_max, ACK)

    def _send_new(self, now: float) -> None:
        end = self.data_end
        while True:
            limit = min(self.snd_una + self.cc.send_window, self.window_edge)
            avail = end - self.snd_nxt
            if avail > 0:
                room = self.room()
                size = min(room, avail, limit - self.snd_nxt)
                # no runt while data is in flight (RFC 9293 §3.8.6.2.1); after a timeout
                # rewound SND.NXT, what is outstanding is not in flight and is resent
                if size <= 0 or (size < avail and size < room and self.snd_nxt > self.snd_una):
                    break
                if size == room and self.tso_payload and self.mss == self.link_mss:
                    size = self._super_size(room, avail, limit - self.snd_nxt)
                self._send_segment(self.snd_nxt, size, now)
                continue
            if self.fin_queued and self.snd_nxt == end and self.state in _FIN_STATES:
                self.emit(end, FIN | ACK)
                self._sent(end, 1, now)
            break
        stalled = self.window_edge <= self.snd_una < end and self.snd_max == self.snd_una
        if stalled and self.persist_at is None:  # zero window: probe it (RFC 9293 §3.8.6.1)
            self.persist_at = now + self.rtt.rto

    def _super_size(self, room: int, avail: int, window: int) -> int:
        """Bytes of one super-packet: whole segments of `room` bytes the windows allow, and
        the last piece of the data if it fits too. The link cuts a TCP packet into segments
        of MTU - headers bytes, which is `room` while our MSS is the link's (checked by the
        caller): the peer's MSS is never exceeded."""
        size = min(avail, window, self.tso_payload // room * room)
        if size < avail:
            size -= size % room
        return max(size, room)

    def _send_segment(self, seq: int, size: int, now: float) -> None:
        offset = seq - self.buf_seq
        payload = bytes(self.sndbuf[offset : offset + size])
        last = seq + size == self.data_end
        self.emit(seq, ACK | PSH if last else ACK, payload)
        self._sent(seq, size, now)

    def _sent(self, seq: int, size: int, now: float) -> None:
        end = seq + size
        if end > self.snd_max:
            if self.timing is None and seq >= self.snd_max:
                self.timing = (end, now)  # a first transmission: fit for RTT (Karn)
            self.snd_max = end
        self.snd_nxt = max(self.snd_nxt, end)
        if self.rto_at is None:
            self.rto_at = now + self.rtt.rto
        self.persist_at = None

    def retransmit(self, seq: int, now: float) -> None:
        """Resend the one segment starting at `seq` (data, or the FIN).

        Never past SND.MAX: what was not sent before is new data, which only the send
        loop may send (within the windows, and counted in SND.MAX).
        """
        if self.timing is not None and seq < self.timing[0]:
            self.timing = None  # Karn: its ACK could be for either copy
        end = self.data_end
        stop = min(end, self.snd_max)
        if seq < stop:
            size = min(self.room(), stop - seq)
            offset = seq - self.buf_seq
            self.emit(seq, ACK, bytes(self.sndbuf[offset : offset + size]))
        elif self.fin_queued and seq == end and self.snd_max > end:
            self.emit(seq, FIN | ACK)
        if self.rto_at is None:
            self.rto_at = now + self.rtt.rto

    def _resend_holes(self, now: float) -> None:
        high = self.scoreboard.high
        if high is None:
            return
        seq = max(self.rexmit_next, self.snd_una)
        # RFC 6675 §4 pipe: what is beyond the highest SACK is in flight, and so are the
        # holes resent already; the holes not yet resent are presumed lost
        resent = seq - self.snd_una - self.scoreboard.sacked_below(seq)
        budget = self.cc.ssthresh - (self.snd_max - high) - resent
        while budget > 0:
            hole = self.scoreboard.next_hole(seq)
            if hole is None:
                break
            start, stop = hole
            size = min(self.room(), stop - start, self.data_end - start)
            if size <= 0:
                break
            self.retransmit(start, now)
            seq = start + size
            budget -= size
        self.rexmit_next = seq

    def probe(self, now: float) -> None:
        """A window probe or keep-alive: an ACK at SND.UNA - 1 that the peer must answer."""
        self.emit(self.snd_una - 1, ACK)
