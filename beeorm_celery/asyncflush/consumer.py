"""``consume_async_flush_events``: apply pending batches in this process, without Celery."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from beeorm_celery.asyncflush.backoff import backoff_s
from beeorm_celery.asyncflush.drain import Drain
from beeorm_celery.asyncflush.parts import AsyncParts
from beeorm_celery.asyncflush.report import DrainReport
from beeorm_celery.asyncflush.signing import warn_at_worker_start
from beeorm_celery.errors import TemporaryApplyError

logger = logging.getLogger(__name__)

DEFAULT_NONBLOCKING_RETRY_FOR_S = 30.0
_IDLE_WAIT_S = 1.0


class HasAsyncParts(Protocol):
    """An ``Engine`` (or anything else that carries the async core's parts)."""

    @property
    def async_parts(self) -> AsyncParts: ...


def consume_async_flush_events(
    engine: HasAsyncParts,
    block: bool = False,
    stop: threading.Event | None = None,
    *,
    groups: Iterable[str] | None = None,
    retry_for_s: float = DEFAULT_NONBLOCKING_RETRY_FOR_S,
) -> dict[str, DrainReport]:
    """Apply every pending batch of ``groups`` (default: all) in this process.

    Same order, exactly-once, retry and dead-letter rules as the Celery workers, which may run
    at the same time. ``block=False``: return once nothing is pending; a temporary error is
    retried with backoff for ``retry_for_s`` and then raised (``TemporaryApplyError``).
    ``block=True``: keep applying new batches until ``stop`` is set; temporary errors are
    retried with backoff for as long as it takes. Returns what was done, per group.
    """
    if block and stop is None:
        raise ValueError(
            "block=True needs a stop event: consume_async_flush_events(engine, True, stop)"
        )
    parts = engine.async_parts
    if parts.log_redis_guard is not None:
        parts.log_redis_guard.report_at_worker_start()
    warn_at_worker_start(parts)
    names = sorted(groups) if groups is not None else sorted(parts.async_groups)
    settings = parts.settings
    # One Drain per group for the whole call: a failure being isolated, or rows a dead letter
    # touched, stay known from one pass to the next (this loop is its own fairness: round robin).
    drains = {g: Drain(parts, g) for g in names}
    totals = {g: DrainReport(g) for g in names}
    attempts = dict.fromkeys(names, 0)
    not_before = dict.fromkeys(names, 0.0)
    first_failure: dict[str, float] = {}
    stopped = stop or threading.Event()
    while not stopped.is_set():
        worked = False
        come_back_soon = False  # busy elsewhere, or more left after the time budget
        retrying = False  # a group waits out its backoff
        for group in names:
            now = time.monotonic()
            if now < not_before[group]:
                retrying = True
                continue
            try:
                report = drains[group].run(linger_s=0)
            except TemporaryApplyError as e:
                attempts[group] += 1
                first_failure.setdefault(group, now)
                if not block and now - first_failure[group] > retry_for_s:
                    raise
                delay = backoff_s(
                    attempts[group], settings.retry_backoff_s, settings.retry_backoff_max_s
                )
                logger.warning("%s; retrying in %.2fs", e, delay)
                not_before[group] = now + delay
                retrying = True
                continue
            attempts[group] = 0
            first_failure.pop(group, None)
            totals[group].add(report)
            come_back_soon = come_back_soon or report.busy or report.more
            worked = worked or bool(report.applied_batches or report.dead_lettered)
        if not block and not (come_back_soon or retrying or worked):
            break
        if worked:
            continue
        if come_back_soon:
            stopped.wait(0.05)
        elif block:
            _wait_for_batches(parts, names, not_before, stopped)
        else:
            now = time.monotonic()
            due = [t - now for t in not_before.values() if t > now]
            stopped.wait(min(due) if due else 0.0)
    return totals


def _wait_for_batches(
    parts: AsyncParts, groups: list[str], not_before: dict[str, float], stop: threading.Event
) -> None:
    """Block until a batch lands in a group that may run now, a retry is due, or stop."""
    now = time.monotonic()
    ready = [g for g in groups if not_before[g] <= now]
    due = min((t - now for t in not_before.values() if t > now), default=_IDLE_WAIT_S)
    wait_s = max(0.01, min(_IDLE_WAIT_S, due))
    if not ready:
        stop.wait(wait_s)
        return
    client = parts.log_redis()
    streams = {parts.keys.log(g): "0-0" for g in ready}
    client.xread(streams, count=1, block=max(1, int(wait_s * 1000)))  # type: ignore[arg-type]
