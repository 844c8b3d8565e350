"""pywg.ratelimiter at slow rates: an idle source is forgotten only once its bucket would be
full again (forgetting it sooner would hand it a full burst early), and a peek spends nothing."""

from __future__ import annotations

from pywg.ratelimiter import RateLimiter

SOURCE = bytes([192, 0, 2, 7])


def test_a_slow_bucket_is_not_refilled_by_forgetting() -> None:
    limiter = RateLimiter(rate=1.0, burst=20)
    assert all(limiter.allow(SOURCE, 0.0) for _ in range(20))
    assert not limiter.allow(SOURCE, 0.0)
    limiter.allow(bytes([192, 0, 2, 8]), 2.5)  # another source: the table is swept
    # 2.5 s later: two tokens back, not a fresh burst of twenty
    assert sum(limiter.allow(SOURCE, 2.5) for _ in range(20)) == 2
    # once it would be full again, forgetting it is the same as keeping it
    limiter.allow(bytes([192, 0, 2, 8]), 30.0)
    assert sum(limiter.allow(SOURCE, 30.0) for _ in range(25)) == 20


def test_would_allow_spends_nothing() -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    assert limiter.would_allow(SOURCE, 0.0)
    assert limiter.allow(SOURCE, 0.0) and limiter.allow(SOURCE, 0.0)
    assert not limiter.would_allow(SOURCE, 0.0)
    assert not limiter.would_allow(SOURCE, 0.5)
    assert limiter.would_allow(SOURCE, 1.0) and limiter.would_allow(SOURCE, 1.0)
    assert limiter.allow(SOURCE, 1.0) and not limiter.allow(SOURCE, 1.0)
