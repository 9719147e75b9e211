"""``SpinPlan``: whether a call polls for its reply, from how long replies of its size take.

Polling for a reply (``redis_call``) answers sooner than sleeping on the socket, because waking
a sleeping CPU costs tens of microseconds, but only while the reply comes within the budget.
A reply that comes later costs the whole budget in CPU first, and on a small host that CPU is
the one Redis needs to run the script: measured here, a 100-entity ``flush_async()`` (a 17 KB
request, ~350 µs in Redis) took 9.6-10.5 µs per row of wall time and 7.8 µs of producer CPU
polling 200 µs first, against 8.6-8.8 µs and 5.8 µs blocking at once; a 10-entity flush (2.3 KB,
~100 µs) took 180-190 µs polled against 220-240 µs blocked.

So the caller learns, call by call, how the wait grows with the request's size (a flush's
script time grows with its entities, and so does its request): a straight line fitted to recent
calls (exponentially weighted least squares). A call polls only when the wait the line gives
for its size is within the budget, give or take: the line gives the mean wait, and a few
slow replies pull the mean up while the typical reply still comes within the budget (a
10-entity flush answered in 100-150 µs had a mean of 150-210 µs beside a busy worker, and
blocking on it cost 80-100 µs of latency per flush), so the mean may reach 1.5 times the budget.
A 100-entity flush (350 µs and more) still blocks. With one size seen so far, the wait is taken
as proportional to the size. A wait counts for at most twice the budget, so one stall of the
server (a fork, a slow command of another client) does not stop the polling for long.
"""

from __future__ import annotations

# The weight of each new call in the fit: about the last 16 calls count.
_WEIGHT = 1 / 16
# Sizes closer than this (relative) count as one size: no slope is fitted from them.
_SAME_SIZE = 0.05
# A call polls while the mean wait expected for its size is within this many budgets.
_MEAN_OVER_BUDGET = 1.5


class SpinPlan:
    """Per caller; updated without a lock (a lost update under threads only delays learning)."""

    def __init__(self, budget_ns: int) -> None:
        self.budget_ns = budget_ns
        self.calls = 0
        # weighted means of the size x, the wait y, x*x and x*y of recent calls
        self._x = self._y = self._xx = self._xy = 0.0

    def expected_ns(self, request_bytes: int) -> float:
        """The wait the recent calls give for a request of ``request_bytes``."""
        x, y = self._x, self._y
        variance = self._xx - x * x
        if variance > (_SAME_SIZE * x) ** 2:
            slope = (self._xy - x * y) / variance
            if slope >= 0:
                return y + slope * (request_bytes - x)
        return y * request_bytes / x if x > 0 else y

    def spin_ns(self, request_bytes: int) -> int:
        """How long to poll for the reply to a request of ``request_bytes``: the budget, or 0."""
        budget = self.budget_ns
        if budget and (
            self.calls == 0 or self.expected_ns(request_bytes) <= budget * _MEAN_OVER_BUDGET
        ):
            return budget
        return 0

    def observed(self, request_bytes: int, wait_ns: int) -> None:
        """A reply came ``wait_ns`` after its request of ``request_bytes`` was sent."""
        budget = self.budget_ns
        if not budget:
            return
        x, y = float(request_bytes), float(min(wait_ns, 2 * budget))
        if self.calls == 0:
            self._x, self._y, self._xx, self._xy = x, y, x * x, x * y
        else:
            w = _WEIGHT
            self._x += (x - self._x) * w
            self._y += (y - self._y) * w
            self._xx += (x * x - self._xx) * w
            self._xy += (x * y - self._xy) * w
        self.calls += 1
