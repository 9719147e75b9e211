"""Retry delays: full jitter under a cap that doubles per attempt up to the maximum."""

from __future__ import annotations

import random

from beeorm_celery.asyncflush.backoff import backoff_s


def test_delays_stay_under_a_doubling_cap_that_saturates():
    random.seed(7)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (8, 60.0), (50, 60.0)]:
        delays = [backoff_s(attempt, 0.5, 60.0) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # the jitter uses the whole range, not a fixed step


def test_attempt_zero_or_less_waits_like_the_first_retry():
    assert all(0.0 <= backoff_s(0, 1.0, 10.0) <= 1.0 for _ in range(50))
