"""``Drain``: the loop that applies one async group's log, step after step, in order.

Each step is one MySQL transaction (``step.py``). The loop decides when to stop: the log is
empty (then the trigger protocol: release the flag, look again), another worker holds the group
(``busy``), the time budget is spent or another group is waiting (``more``: the caller wakes this
group again). Between steps it lingers for new batches and lets a few gather (``coalesce_s``), so
one transaction carries many of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pymysql
import redis

from beeorm_celery.asyncflush.deadletters import DeadLetters
from beeorm_celery.asyncflush.holding import ExpiredCauses
from beeorm_celery.asyncflush.invalidate import Invalidation
from beeorm_celery.asyncflush.isolate import Isolation
from beeorm_celery.asyncflush.log import GroupLog
from beeorm_celery.asyncflush.packets import StatementLimits
from beeorm_celery.asyncflush.report import DrainReport, Outcome
from beeorm_celery.asyncflush.step import TransactionStep
from beeorm_celery.errors import ConfigError, TemporaryApplyError

if TYPE_CHECKING:
    from pymysql.connections import Connection

    from beeorm_celery.asyncflush.parts import AsyncParts

# How often a long drain asks whether another group is waiting for this worker.
_YIELD_CHECK_INTERVAL_S = 0.25


class Drain:
    """Applies one group; keeps what it learned (failure isolation, rows a dead letter touched)
    from one ``run`` to the next. Not thread-safe: one per thread."""

    def __init__(self, parts: AsyncParts, group: str) -> None:
        pool_name = parts.async_groups.get(group)
        if pool_name is None:
            raise ConfigError(f"async group {group!r} is not registered with this engine")
        self.group = group
        self.settings = parts.settings
        self.pool = parts.mysql[pool_name]
        # What the last joint step (joint.py) saw of this group: operations per batch it
        # applied, and operations left in the log after them (0: none, or not known yet).
        self.ops_per_batch = 1.0
        self.backlog_ops = 0
        self._columns = parts.applied_columns
        self.log = GroupLog(parts, group)
        invalidation = Invalidation(
            parts.caches.drop, parts.caches.release_pending, parts.caches.mark_stale
        )
        expired = ExpiredCauses(self.log.client, parts.keys.expired_holds(group))
        self.isolation = Isolation(
            group, self.settings, self.log, DeadLetters(parts), invalidation, expired
        )
        self.step = TransactionStep(
            group,
            parts,
            self.settings,
            self.log,
            self.isolation,
            invalidation,
            parts.pending_memory,
            StatementLimits(self.pool, self.settings.max_statement_bytes),
            self._reconnect,
        )

    def run(
        self,
        budget_s: float | None = None,
        linger_s: float | None = None,
        should_yield: Callable[[], bool] | None = None,
    ) -> DrainReport:
        """Apply the group's pending batches until none is left or the budget is spent.

        Ends with the trigger protocol (release the flag, look again) unless another worker
        holds the group (``busy``), or the budget ran out or ``should_yield`` said another group
        is waiting for this worker (``more``: the caller wakes this group again).
        """
        settings = self.settings
        budget = settings.drain_budget_s if budget_s is None else budget_s
        linger = settings.linger_s if linger_s is None else linger_s
        coalesce = settings.coalesce_s
        deadline = time.monotonic() + budget
        next_yield_check = time.monotonic() + _YIELD_CHECK_INTERVAL_S
        report = DrainReport(self.group)
        conn = None
        broken = False
        try:
            conn = self._connect()
            while True:
                outcome = self.step.run(conn, report)
                if outcome is Outcome.BUSY:
                    report.busy = True
                    return report
                now = time.monotonic()
                remaining = deadline - now
                if outcome is Outcome.PROGRESS:
                    if remaining <= 0:
                        report.more = True
                        return report
                    if should_yield is not None and now >= next_yield_check:
                        next_yield_check = now + _YIELD_CHECK_INTERVAL_S
                        if should_yield():
                            report.more = True
                            return report
                    if self.step.caught_up and coalesce > 0:
                        # Caught up with the producers: let a few more batches gather, so the
                        # next transaction carries many of them instead of one.
                        time.sleep(min(coalesce, remaining))
                    continue
                if (
                    linger > 0
                    and remaining > 0
                    and self.log.wait_for_entries(min(linger, remaining))
                ):
                    if coalesce > 0:
                        time.sleep(min(coalesce, max(0.0, deadline - time.monotonic())))
                    continue
                if self.log.release_trigger_if_idle():
                    return report
                if not self.log.claim_trigger():
                    return report  # a producer set the flag after our look: its wake-up is coming
        except TemporaryApplyError:
            broken = True
            raise
        except (pymysql.MySQLError, redis.RedisError, OSError) as e:
            broken = True
            self.isolation.temporary(None, e)
            raise AssertionError("unreachable") from e  # temporary() always raises
        finally:
            if conn is not None:
                self.pool.release(conn, broken=broken)

    def connect(self) -> Connection[Any]:
        """A connection of the group's pool, set up for applying (lock wait timeout)."""
        return self._connect()

    def _session(self, conn: Connection[Any]) -> None:
        with conn.cursor() as cursor:
            timeout_s = int(self.settings.lock_wait_timeout_s)
            cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {timeout_s}")

    def _reconnect(self, conn: Connection[Any], error: BaseException) -> None:
        """Open ``conn`` again in place, with this drain's session settings; if that fails,
        the head batch is retried later (temporary)."""
        try:
            conn.ping(reconnect=True)
            self._session(conn)
        except pymysql.MySQLError:
            self.isolation.temporary(None, error)

    def _connect(self) -> Connection[Any]:
        conn = self.pool.acquire(multi_statements=self.settings.pack_statements)
        try:
            self._session(conn)
            # Outside any transaction: an ALTER TABLE would commit it.
            self._columns.ensure(self.pool.name, conn)
        except BaseException:
            self.pool.release(conn, broken=True)
            raise
        return conn
