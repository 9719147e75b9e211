"""Log entries whose id is in the future: garbage, dead-lettered, and no reason to stop sweeping.

A log entry id is ``<ms>-<seq>``, from Redis' clock when ``flush_async()`` queued it. An entry
added by hand with an explicit id far ahead (``XADD log 99999999999999-0 ...``) is not a batch
any producer queued, and it used to switch the sweep off for its group: the sweep wakes a group
whose oldest batch is old enough, and an age below zero never is.

- ``jumped_ahead``: the applier dead-letters an entry as malformed when its id is more than
  ``FUTURE_TOLERANCE_MS`` ahead of both the clock and the entry before it (or the applied
  position). Redis hands out later ids from the highest one in the stream, so batches queued after
  such an entry carry ids just above it; they are not "ahead of the entry before them" and apply
  as usual.
- ``due``: the sweep treats an oldest entry from the future as due (its age is unknown).
"""

from __future__ import annotations

from beeorm_celery.asyncflush.log import parse_id

# Far more than any clock step between Redis and the workers.
FUTURE_TOLERANCE_MS = 3_600_000


def jumped_ahead(entry_id: str, previous_id: str, now_ms: float) -> bool:
    """Whether ``entry_id`` is far ahead of the clock and of the id before it."""
    ms = parse_id(entry_id)[0]
    return ms > now_ms + FUTURE_TOLERANCE_MS and ms > parse_id(previous_id)[0] + FUTURE_TOLERANCE_MS


def due(oldest_ms: int, now_ms: float, min_age_s: float) -> bool:
    """Whether the sweep should wake a group whose oldest entry was queued at ``oldest_ms``."""
    if oldest_ms > now_ms + FUTURE_TOLERANCE_MS:
        return True
    return now_ms - oldest_ms >= min_age_s * 1000


def reason(entry_id: str) -> str:
    return (
        f"its id {entry_id} is more than {FUTURE_TOLERANCE_MS // 60_000} minutes in the future "
        "and ahead of the entry before it: not an id Redis gave a queued batch"
    )
