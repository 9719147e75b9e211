"""``GroupWorker``: what a worker does with a wake-up, whatever queue it came through.

An adapter maps its messages onto these calls and nothing else:

- a message for group G arrives: ``handle(G)``. It applies G, and every other group this
  worker serves whose batches wait (``rotation.py``: one transaction per group in turn), until
  nothing is pending or the time budget is spent; with work left it wakes the groups again
  through the waker, so their next turn queues behind the other messages. A temporary MySQL
  error in G raises ``TemporaryApplyError``: the adapter retries the message with the library's
  backoff (``retry_delay_s``), G waits behind its head batch meanwhile (an error in another
  group woken for it wakes that group, whose own message retries it).
- the worker starts: ``start_sweeping()`` (one sweep of every group with a backlog, then one
  every ``sweep_interval_s`` in a thread); the worker stops: ``stop()`` on what it returned.

The log is the truth and the message only a trigger, so a lost or repeated message delays a
batch, never loses or doubles it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from beeorm_celery.asyncflush import future_ids
from beeorm_celery.asyncflush.backoff import backoff_s
from beeorm_celery.asyncflush.enqueue import wake
from beeorm_celery.asyncflush.log import GroupLog
from beeorm_celery.asyncflush.parts import AsyncParts, Healed
from beeorm_celery.asyncflush.report import DrainReport
from beeorm_celery.asyncflush.rotation import Cooling, Rotation
from beeorm_celery.asyncflush.signing import warn_at_worker_start
from beeorm_celery.asyncflush.transport import Waker, WakeReason, WakeUp

logger = logging.getLogger(__name__)

# How often the sweeping thread looks for pending markers applied batches left behind: a scan
# of each cached table's marker hash (HSCAN), cheap but not free on a large backlog.
_HEAL_INTERVAL_S = 600.0


class GroupWorker:
    """Drives the drains of one process's async core for an adapter; thread-safe (a drain per
    call). ``waker`` is the adapter's: re-wakes and sweeps go through it. ``served`` tells which
    groups this worker process takes messages for (the adapter knows its queues; default: every
    group); a turn takes on only those."""

    def __init__(
        self, parts: AsyncParts, waker: Waker, served: Callable[[], list[str]] | None = None
    ) -> None:
        self.parts = parts
        self.waker = waker
        self.served = served or (lambda: self.groups)
        self._cooling = Cooling()

    @property
    def groups(self) -> list[str]:
        return sorted(self.parts.async_groups)

    def knows(self, group: object) -> bool:
        """Whether ``group`` (from a message: any type) is an async group of this engine."""
        return isinstance(group, str) and group in self.parts.async_groups

    def handle(self, group: str) -> DrainReport:
        """One wake-up of ``group``: drain it with fairness; wake it again if work is left.

        Raises ``TemporaryApplyError`` (retry this wake-up later, see ``retry_delay_s``) and
        ``ConfigError`` for a group this engine does not know (check with ``knows`` first).
        """
        rotation = Rotation(
            self.parts, self.waker, self.served, self._cooling, lambda g: self.retry_delay_s(1)
        )
        report = rotation.run(group)
        if report.more:  # handed over: queue the rest behind the other groups' wake-ups
            wake(
                self.parts,
                self.waker,
                WakeUp(group, WakeReason.BACKLOG, f"{group}: backlog continues"),
            )
        return report

    def retry_delay_s(self, attempt: int) -> float:
        """How long to wait before retry ``attempt`` (1, 2, ...) after a temporary error:
        exponential with full jitter, capped at ``retry_backoff_max_s``."""
        settings = self.parts.settings
        return backoff_s(attempt, settings.retry_backoff_s, settings.retry_backoff_max_s)

    def others_waiting(self, group: str) -> bool:
        """Whether another group's oldest batch has waited past ``yield_after_s``."""
        others = [g for g in self.parts.async_groups if g != group]
        if not others:
            return False
        limit_ms = self.parts.settings.yield_after_s * 1000
        now_ms = time.time() * 1000
        oldest = GroupLog.oldest_of(self.parts, others)
        return any(ms is not None and now_ms - ms > limit_ms for ms in oldest)

    # --- sweeps

    def sweep(self, *, at_start: bool) -> list[str]:
        """Wake every group with a batch pending nobody is on; returns the groups woken.

        ``at_start``: every group with a backlog, whatever its flag says (a worker that died
        may have left flags behind). Otherwise (the periodic sweep) only groups whose oldest
        batch is ``sweep_min_age_s`` old and whose trigger flag is unset: a set flag means a
        wake-up is on its way or a worker applies the group, and a flag whose holder died
        expires by itself (``trigger_ttl_s``), after which the next sweep wakes the group.
        """
        min_age_s = 0.0 if at_start else self.parts.settings.sweep_min_age_s
        woken: list[str] = []
        now_ms = time.time() * 1000
        groups = self.groups
        for group, oldest in zip(groups, GroupLog.oldest_of(self.parts, groups), strict=True):
            if oldest is None or not future_ids.due(oldest, now_ms, min_age_s):
                continue
            log = GroupLog(self.parts, group)
            if at_start:
                log.hold_trigger()
            elif not log.claim_trigger():
                continue
            if wake(
                self.parts,
                self.waker,
                WakeUp(group, WakeReason.SWEEP, f"{group}: sweep of pending batches"),
            ):
                woken.append(group)
        return woken

    def start_sweeping(self, interval_s: float | None = None) -> PeriodicSweep:
        """Sweep now (``at_start``), then every ``interval_s`` (default ``sweep_interval_s``)
        in a daemon thread until ``stop()`` is called on the result; that thread also releases
        pending markers applied batches left behind (``heal_pending``), at once and every
        ``_HEAL_INTERVAL_S``. Also says, once, whether the log's Redis may lose batches
        (eviction, no persistence)."""
        guard = self.parts.log_redis_guard
        if guard is not None:
            guard.report_at_worker_start()
        warn_at_worker_start(self.parts)
        try:
            woken = self.sweep(at_start=True)
            if woken:
                logger.info("worker start: woke groups with pending batches: %s", woken)
        except Exception:
            logger.exception("async flush sweep at worker start failed")
        interval = self.parts.settings.sweep_interval_s if interval_s is None else interval_s
        return PeriodicSweep(self, interval)

    def heal_pending(self, groups: Collection[str] | None = None) -> Healed:
        """Release the pending markers that applied batches of ``groups`` (default: those this
        worker serves) left behind (a worker killed between a COMMIT and its release;
        ``pending_heal.py``). Never raises: it only saves reads a trip to MySQL."""
        try:
            return self.parts.caches.heal_pending(self.served() if groups is None else groups)
        except Exception:
            logger.exception("releasing pending markers left behind failed; tried again later")
            return Healed()


class PeriodicSweep:
    """The sweeping thread ``GroupWorker.start_sweeping`` starts."""

    def __init__(self, worker: GroupWorker, interval_s: float) -> None:
        self._worker = worker
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beeorm-async-sweep", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # at start, in this thread: a scan of a large marker hash must not hold up the worker
        deferred = self._worker.heal_pending().deferred
        healed_at = time.monotonic()
        while not self._stop.wait(self._interval_s):
            try:
                woken = self._worker.sweep(at_start=False)
                if woken:
                    logger.info("sweep woke groups with waiting batches: %s", woken)
            except Exception:
                logger.exception(
                    "async flush sweep failed; trying again in %.0fs", self._interval_s
                )
            if time.monotonic() - healed_at >= _HEAL_INTERVAL_S:
                # a pool process killed mid-step leaves markers; its main process lives on
                healed_at = time.monotonic()
                deferred = self._worker.heal_pending().deferred
            elif deferred:
                # groups whose backlog made their marker hashes too large to read: each sweep
                # asks again (two cheap lengths per table) until the drain has shrunk them
                deferred = self._worker.heal_pending(deferred).deferred

    def stop(self) -> None:
        self._stop.set()
