"""pywg.mesh.paths: probing, the choice between direct and relay, falling back and back."""

from __future__ import annotations

from pywg.mesh.paths import (
    DIRECT_TIMEOUT,
    FAST_PERIOD,
    IPV6_FACTOR,
    IPV6_SLACK,
    KEEPALIVE,
    OPEN_PERIOD,
    PROBE_FAST,
    PROBE_SLOW,
    PathSelector,
    is_ipv6,
)

A = ("198.18.1.2", 51820)
B = ("198.18.2.2", 51820)
RELAY = ("198.18.9.2", 40001)


def probes_over(sel: PathSelector, start: float, end: float, step: float = 0.25) -> list[float]:
    times = []
    t = start
    while t < end:
        if sel.probes_due(t):
            times.append(t)
        t += step
    return times


def test_relay_first_then_direct_once_a_probe_is_answered() -> None:
    sel = PathSelector()
    sel.set_paths([A, B], RELAY, 0.0)
    assert sel.choice(0.0) == RELAY
    assert sel.openers_due(0.0) == [A, B]  # openers first, probes OPEN_PERIOD later
    assert sel.probes_due(0.0) == []
    assert sel.probes_due(0.5) == []
    assert sel.probes_due(1.0) == [A, B]
    assert sel.answered(B, 1.0, 1.02)
    assert sel.choice(1.1) == B
    assert sel.direct(1.1) == B


def test_no_relay_falls_back_to_first_candidate_and_none_without_any() -> None:
    sel = PathSelector()
    assert sel.choice(0.0) is None
    sel.set_paths([A, B], None, 0.0)
    assert sel.choice(0.0) == A


def test_fast_then_slow_probing_while_nothing_answers() -> None:
    sel = PathSelector()
    sel.set_paths([A], RELAY, 0.0)
    times = probes_over(sel, 0.0, FAST_PERIOD + 3 * PROBE_SLOW)
    fast = [t for t in times if t < FAST_PERIOD]
    slow = [t for t in times if t >= FAST_PERIOD]
    assert len(fast) >= FAST_PERIOD / PROBE_FAST - 1
    assert 2 <= len(slow) <= 4


def test_the_direct_path_is_kept_alive_often_the_others_now_and_then() -> None:
    sel = PathSelector()
    sel.set_paths([A, B], RELAY, 0.0)
    sel.probes_due(0.0)
    sel.answered(A, 0.0, 0.01)
    due: list[tuple[str, int]] = []
    t = 0.0
    while t < 3 * KEEPALIVE:
        for endpoint in sel.probes_due(t):
            due.append(endpoint)
            sel.answered(endpoint, t, t + 0.01)
        t += 0.25
    assert 2 <= due.count(A) <= 4
    assert due.count(B) <= 2


def test_lowest_round_trip_wins() -> None:
    sel = PathSelector()
    sel.set_paths([A, B], RELAY, 0.0)
    sel.answered(A, 0.0, 0.2)
    sel.answered(B, 0.0, 0.01)
    assert sel.choice(0.3) == B


def test_silent_direct_path_falls_back_to_relay_and_probing_restarts() -> None:
    sel = PathSelector()
    sel.set_paths([A], RELAY, 0.0)
    sel.answered(A, 0.0, 0.01)
    assert sel.choice(1.0) == A
    probes_over(sel, 1.0, 0.01 + DIRECT_TIMEOUT + 0.1)  # answered by nobody
    late = 0.01 + DIRECT_TIMEOUT + 0.1
    assert sel.choice(late) == RELAY
    assert sel.probes_due(late) == [A] or sel.probes_due(late + PROBE_FAST) == [A]
    # fast probing again: several probes in the next seconds
    assert len(probes_over(sel, late + PROBE_FAST, late + 6)) >= 3
    sel.answered(A, late + 6, late + 6.01)
    assert sel.choice(late + 6.1) == A


def test_new_candidates_restart_fast_probing_and_keep_known_state() -> None:
    sel = PathSelector()
    sel.set_paths([A], RELAY, 0.0)
    probes_over(sel, 0.0, 100.0)
    sel.answered(A, 99.0, 99.01)
    sel.set_paths([A, B], RELAY, 100.0)
    assert sel.choice(100.0) == A  # what was learnt about A stays
    assert sel.openers_due(100.0) == [A, B]
    assert B in sel.probes_due(100.0 + OPEN_PERIOD)


def test_answer_from_a_non_candidate_is_ignored() -> None:
    sel = PathSelector()
    sel.set_paths([A], RELAY, 0.0)
    assert not sel.answered(B, 0.0, 0.1)
    assert sel.choice(0.2) == RELAY


def test_a_path_about_as_fast_as_the_current_one_does_not_take_over() -> None:
    sel = PathSelector()
    sel.set_paths([A, B], RELAY, 0.0)
    sel.answered(A, 0.0, 0.010)
    assert sel.choice(0.1) == A
    sel.answered(B, 0.1, 0.108)  # a little faster: A stays
    assert sel.choice(0.2) == A
    for t in range(1, 6):  # much faster, consistently: B takes over
        sel.answered(B, float(t), t + 0.001)
    assert sel.choice(6.0) == B


def test_reflexive_candidates_are_probed_kept_and_bounded() -> None:
    sel = PathSelector()
    sel.set_paths([A], RELAY, 0.0)
    probes_over(sel, 0.0, 100.0)  # slow probing by now
    roamed = ("198.18.7.7", 40000)
    assert sel.add_reflexive(roamed, 100.0)
    assert not sel.add_reflexive(roamed, 100.0)  # known already
    assert roamed in sel.probes_due(100.0)  # at once, and fast again
    assert not sel.answers(roamed, 100.5)
    sel.answered(roamed, 100.0, 100.01)
    assert sel.answers(roamed, 100.5) and sel.choice(100.5) == roamed
    sel.set_paths([A, B], RELAY, 101.0)  # a new roster keeps it
    assert sel.choice(101.0) == roamed
    for port in (1, 2, 3):
        sel.add_reflexive(("198.18.7.7", port), 102.0)
    reflexive = [c.endpoint for c in sel.candidates if c.reflexive]
    assert reflexive == [("198.18.7.7", 2), ("198.18.7.7", 3)]
    assert sel.answers(roamed, 102.0) is False  # the oldest went


def test_openers_once_before_the_first_probes_and_again_when_probing_restarts() -> None:
    sel = PathSelector()
    sel.set_paths([A], RELAY, 0.0)
    assert sel.next_due() == 0.0
    assert sel.openers_due(0.0) == [A]
    assert sel.next_due() == OPEN_PERIOD
    assert probes_over(sel, 0.0, OPEN_PERIOD) == []  # nothing reaches the peer's router yet
    assert sel.probes_due(OPEN_PERIOD) == [A]
    assert [t for t in range(100) if sel.openers_due(float(t))] == []  # once only
    sel.answered(A, 100.0, 100.01)
    assert sel.openers_due(100.5) == []  # a direct path: none
    late = 100.01 + DIRECT_TIMEOUT + 0.1
    sel.probes_due(late)  # silent: probing starts again, openers with it
    assert sel.openers_due(late) == [A]


def test_a_reflexive_candidate_is_probed_at_once_without_an_opener() -> None:
    sel = PathSelector()
    sel.set_paths([A], RELAY, 0.0)
    sel.openers_due(0.0)
    roamed = ("198.18.7.7", 40000)
    sel.add_reflexive(roamed, 50.0)
    assert roamed not in sel.openers_due(50.0)
    assert roamed in sel.probes_due(50.0)


A6 = ("2001:db8:1::2", 51820)
B6 = ("2001:db8:2::2", 51820)


def keep_answering(
    sel: PathSelector, rtts: dict[tuple[str, int], float], start: float, end: float
) -> None:
    """Every probe due in [start, end) answered after the round trip `rtts` gives."""
    t = start
    while t < end:
        for endpoint in sel.probes_due(t):
            if endpoint in rtts:
                sel.answered(endpoint, t, t + rtts[endpoint])
        t += 0.25


def test_ipv6_first_when_both_answer_even_a_little_slower() -> None:
    sel = PathSelector()
    sel.set_paths([A, A6], RELAY, 0.0)
    sel.answered(A, 1.0, 1.001)  # IPv4 answers first, and faster
    assert sel.choice(1.01) == A
    sel.answered(A6, 1.0, 1.004)  # IPv6 answers: 4 ms against 1 ms, within 2 x 1 + 10
    assert sel.choice(1.01) == A6
    keep_answering(sel, {A: 0.001, A6: 0.004}, 1.25, 30.0)
    assert sel.choice(30.0) == A6
    assert sel.may_stay(A6, 30.0) and not sel.may_stay(A, 30.0)  # WireGuard on IPv4: moved


def test_ipv4_when_ipv6_is_much_slower_and_back_when_it_recovers() -> None:
    sel = PathSelector()
    sel.set_paths([A6, A], RELAY, 0.0)
    slow = 0.020 * IPV6_FACTOR + IPV6_SLACK + 0.005  # over the limit for a 20 ms IPv4
    sel.answered(A, 1.0, 1.020)
    sel.answered(A6, 1.0, 1.0 + slow)
    assert sel.choice(1.1) == A
    assert sel.may_stay(A, 1.1) and not sel.may_stay(A6, 1.1)
    keep_answering(sel, {A: 0.020, A6: 0.005}, 1.25, 40.0)  # IPv6 got fast: the EWMA follows
    assert sel.choice(40.0) == A6


def test_in_use_ipv6_is_left_only_on_a_clear_case_and_when_it_goes_silent() -> None:
    sel = PathSelector()
    sel.set_paths([A, A6], RELAY, 0.0)
    sel.answered(A, 1.0, 1.010)
    sel.answered(A6, 1.0, 1.012)
    assert sel.choice(1.1) == A6
    # IPv6 drifts to just over the limit (10 ms x 2 + 10 ms = 30): it stays (60 once in use)
    keep_answering(sel, {A: 0.010, A6: 0.035}, 1.25, 30.0)
    assert sel.choice(30.0) == A6
    keep_answering(sel, {A: 0.010, A6: 0.080}, 30.0, 60.0)  # clearly worse: IPv4
    assert sel.choice(60.0) == A
    # IPv6 goes silent: IPv4 stays the choice; it comes back fast: IPv6 again
    keep_answering(sel, {A: 0.010}, 60.0, 60.0 + DIRECT_TIMEOUT + 1)
    assert sel.choice(60.0 + DIRECT_TIMEOUT + 1) == A
    # (probed every PROBE_SLOW meanwhile, its round trip averaged down from 80 ms)
    keep_answering(sel, {A: 0.010, A6: 0.011}, 70.0, 130.0)
    assert sel.choice(130.0) == A6


def test_ipv4_only_and_ipv6_only_peers_keep_the_lowest_round_trip() -> None:
    sel = PathSelector()
    sel.set_paths([A6, B6], RELAY, 0.0)
    sel.answered(A6, 0.0, 0.2)
    sel.answered(B6, 0.0, 0.01)
    assert sel.choice(0.3) == B6
    assert is_ipv6(B6) and not is_ipv6(A) and not is_ipv6(("::ffff:198.18.1.2", 1))
