"""``Rotation``: one wake-up's turn of a worker process over every group waiting for it.

With more groups than worker processes, a turn of one group per message was mostly overhead:
a message, a connection set-up, a look at an empty log and a linger per visit, while the other
groups' messages waited behind that linger (at 64 groups, two thirds of the pool's time went
to lingering; see bench/README.md). A rotation starts with the group it was woken for, adopts
every other group this worker serves whose oldest batch has waited ``adopt_after_s``, and
visits the groups in turn, oldest head first: one transaction per group per visit, on one
connection per MySQL pool, until nothing is pending and nothing arrives within ``linger_s``,
or the time budget is spent.

The laws are the drain's: every visit is the same ``TransactionStep`` (the group's row in the
position table locked ``FOR UPDATE SKIP LOCKED``, so a group another process is applying is
skipped this round; its position moved in the same transaction as the rows). Wake-ups: a group
the rotation adopted is held (its trigger flag set, refreshed by every step, so producers do
not send messages for it meanwhile) until the rotation ends with the trigger protocol for it
(release the flag, look again; work left: wake it through the waker). A batch queued meanwhile
is applied by the rotation or woken at its end, never left waiting. A temporary error in an
adopted group drops it from the rotation and wakes it, so its own message retries it with
backoff; the other groups go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pymysql
import redis

from beeorm_celery.asyncflush.drain import Drain
from beeorm_celery.asyncflush.enqueue import wake
from beeorm_celery.asyncflush.heads import Heads
from beeorm_celery.asyncflush.joint import joint_step
from beeorm_celery.asyncflush.log import GroupLog
from beeorm_celery.asyncflush.mysql_errors import ErrorClass, classify, error_code, error_message
from beeorm_celery.asyncflush.report import DrainReport, Outcome
from beeorm_celery.asyncflush.transport import WakeReason, WakeUp
from beeorm_celery.errors import TemporaryApplyError

if TYPE_CHECKING:
    from pymysql.connections import Connection

    from beeorm_celery.asyncflush.parts import AsyncParts
    from beeorm_celery.asyncflush.transport import Waker

logger = logging.getLogger(__name__)


class Cooling:
    """Groups that just failed with a temporary error in this process: not adopted until their
    own message's retry is due (thread-safe; one per ``GroupWorker``)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, group: str, seconds: float) -> None:
        with self._lock:
            self._until[group] = time.monotonic() + seconds

    def active(self) -> set[str]:
        now = time.monotonic()
        with self._lock:
            for group in [g for g, t in self._until.items() if t <= now]:
                del self._until[group]
            return set(self._until)


class Rotation:
    """One turn over the groups waiting for this worker; not thread-safe (one per message)."""

    def __init__(
        self,
        parts: AsyncParts,
        waker: Waker,
        served: Callable[[], list[str]],
        cooling: Cooling,
        cool_for_s: Callable[[str], float],
    ) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.waker = waker
        self.served = served
        self.cooling = cooling
        self.cool_for_s = cool_for_s
        self._drains: dict[str, Drain] = {}
        self._conns: dict[str, Connection[Any]] = {}
        self._last: dict[str, Outcome] = {}  # each group's last visit
        self._caught_up: set[str] = set()  # groups whose last visit applied all there was
        self._known: set[str] = set()  # groups whose row in the position table exists
        self._busy_until: dict[str, float] = {}  # monotonic ms: held elsewhere a moment ago
        self._heads = Heads(parts)

    def run(self, first: str, budget_s: float | None = None) -> DrainReport:
        """Apply ``first`` and the groups adopted on the way; the report counts them all.

        Raises ``TemporaryApplyError`` when ``first`` itself hit one (its message is retried);
        the other groups held are released (or woken) before.
        """
        budget = self.settings.drain_budget_s if budget_s is None else budget_s
        deadline = time.monotonic() + budget
        report = DrainReport(first)
        held: list[str] = [first]
        failure: TemporaryApplyError | None = None
        try:
            try:
                self._turn(first, held, report, deadline)
            except (pymysql.MySQLError, redis.RedisError, OSError) as e:
                # Redis or MySQL failed outside a group's step (looking at the logs, lingering):
                # the woken group's message is retried, as a drain's would be.
                self._drain(first).isolation.temporary(None, e)
                raise AssertionError("unreachable") from e  # temporary() always raises
        except TemporaryApplyError as e:
            failure = e
            raise
        finally:
            self._close(broken=failure is not None)
            self._release(held, skip=first if failure is not None else None, report=report)
        return report

    def _turn(self, first: str, held: list[str], report: DrainReport, deadline: float) -> None:
        """Visit the due groups, adopting waiting ones, until nothing is pending (after the
        linger) or the deadline; ``held`` grows with the groups taken on."""
        settings = self.settings
        adopt_after_ms = settings.adopt_after_s * 1000
        coalesce_ms = settings.coalesce_s * 1000
        linger_ms = settings.linger_s * 1000
        while True:
            groups = self._candidates(first, held)
            heads = self._heads.oldest_ms(groups)
            now_ms = time.time() * 1000
            waiting = [(h, g) for g, h in zip(groups, heads, strict=True) if h is not None]
            # A group caught up at its last visit is due again once its oldest batch is this
            # old (the coalescing window). When one is due, every held group with a batch goes
            # along in the same joint transaction: a transaction then carries what all the
            # groups gathered, as one group's would. With many groups the window grows (one
            # more window per 2 groups waiting, at most the linger): each group's INSERT then
            # carries several batches, not a statement per batch per group, and a second
            # process finding every group held by the first tries again once per window, not
            # in a transaction of its own every few milliseconds (per 8 groups, at 16 groups
            # there were two such empty transactions per COMMIT; bench/README.md).
            gather_ms = min(coalesce_ms * max(1, len(waiting) // 2), max(coalesce_ms, linger_ms))
            due: list[tuple[int, str]] = []
            along: list[tuple[int, str]] = []  # held, not due yet: goes along with the due
            adopted: list[str] = []
            wait_ms: float | None = None  # how soon a group not due yet will be
            clock_ms = time.monotonic() * 1000
            for head, group in waiting:
                age_ms = now_ms - head
                if self._busy_until.get(group, 0.0) > clock_ms:
                    continue  # another process was applying it a moment ago
                if group in held:
                    needed = gather_ms if group in self._caught_up else 0.0
                else:
                    needed = adopt_after_ms  # just queued: its message, or another process
                if age_ms < needed:
                    wait_ms = needed - age_ms if wait_ms is None else min(wait_ms, needed - age_ms)
                    if group in held:
                        along.append((head, group))
                    continue
                if group not in held:
                    adopted.append(group)
                due.append((head, group))
            if due:
                due += along
            elif wait_ms is None and any(
                self._busy_until.get(g, 0.0) > clock_ms for _, g in waiting
            ):
                wait_ms = gather_ms  # only groups another process holds: look again shortly
            self._adopt(adopted, held)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return  # the budget is spent: the release in run() wakes what is left
            if not due:
                if wait_ms is not None:
                    time.sleep(min(wait_ms / 1000, remaining))
                    continue
                if settings.linger_s > 0 and self._wait(groups, remaining):
                    continue
                return
            ordered = [g for _, g in sorted(due)]
            for group in self._together(ordered, report, gather_ms):
                outcome = self._visit(group, report)
                if outcome is None:  # a temporary error in an adopted group
                    held.remove(group)
                elif outcome is Outcome.BUSY:
                    self._busy(group, gather_ms)
                elif outcome is Outcome.PROGRESS and not self._drains[group].step.caught_up:
                    self._caught_up.discard(group)
                else:
                    self._caught_up.add(group)

    # --- choosing groups

    def _candidates(self, first: str, held: list[str]) -> list[str]:
        """The groups to look at: the held ones, and the others this worker serves that did
        not just fail here (their own message retries them with backoff)."""
        cooling = self.cooling.active()
        known = self.parts.async_groups
        others = [g for g in self.served() if g in known and g not in held and g not in cooling]
        return held + others

    def _adopt(self, groups: list[str], held: list[str]) -> None:
        """Hold the groups' flags (one round trip): producers see a worker on them and send no
        message meanwhile."""
        if not groups:
            return
        pipe = self.parts.log_redis().pipeline(transaction=False)
        ttl_ms = max(1, int(self.settings.trigger_ttl_s * 1000))
        for group in groups:
            pipe.set(self.parts.keys.trigger(group), b"1", px=ttl_ms)
        pipe.execute()
        held.extend(groups)

    def _wait(self, groups: list[str], remaining: float) -> bool:
        """Linger: block until a batch lands in one of ``groups``, at most ``linger_s``."""
        timeout_ms = max(1, int(min(self.settings.linger_s, remaining) * 1000))
        keys = self.parts.keys
        found = self.parts.log_redis().xread(
            {keys.log(g): "0-0" for g in groups}, count=1, block=timeout_ms
        )
        return bool(found)

    # --- several groups of one pool in one transaction

    def _busy(self, group: str, gather_ms: float) -> None:
        """Another process holds ``group``: look again after a gathering window, not at once
        (its holder trims the log when it commits)."""
        self._busy_until[group] = time.monotonic() * 1000 + max(gather_ms, 1.0)

    def _together(self, groups: list[str], report: DrainReport, gather_ms: float) -> list[str]:
        """Apply ``groups`` pool by pool in joint transactions (``joint.py``); returns the
        groups left to a visit of their own, in the order given."""
        by_pool: dict[str, list[str]] = {}
        for group in groups:
            by_pool.setdefault(self.parts.async_groups[group], []).append(group)
        alone: set[str] = set()
        for pool, pool_groups in by_pool.items():
            if len(pool_groups) < 2:
                alone.update(pool_groups)
                continue
            drains = [self._drain(g) for g in pool_groups]
            try:
                conn = self._conns.get(pool)
                if conn is None:
                    conn = self._conns[pool] = drains[0].connect()
                joint = joint_step(
                    self.parts, conn, drains, dict.fromkeys(pool_groups, report), self._known
                )
            except (pymysql.MySQLError, redis.RedisError, OSError) as e:
                # each group's own step retries and reports it (temporary error, backoff)
                logger.info("joint step in pool %r failed (%s); one group at a time", pool, e)
                self._drop_connection(pool)
                alone.update(pool_groups)
                continue
            for group, caught_up in joint.applied.items():
                self._last[group] = Outcome.PROGRESS
                if caught_up:
                    self._caught_up.add(group)
                else:
                    self._caught_up.discard(group)
            for group in joint.empty:
                self._last[group] = Outcome.EMPTY
                self._caught_up.add(group)
            for group in joint.busy:
                self._last[group] = Outcome.BUSY
                self._busy(group, gather_ms)
            alone.update(joint.single)
            if joint.error is not None:
                _log_joint_failure(pool_groups, joint.error)
                if not conn.open:  # e.g. a statement too large: the server hung up
                    self._drop_connection(pool)
        return [g for g in groups if g in alone]

    def _drain(self, group: str) -> Drain:
        drain = self._drains.get(group)
        if drain is None:
            drain = self._drains[group] = Drain(self.parts, group)
        return drain

    # --- one visit: one transaction of one group

    def _visit(self, group: str, report: DrainReport) -> Outcome | None:
        drain = self._drain(group)
        pool = self.parts.async_groups[group]
        part = DrainReport(group)
        try:
            try:
                conn = self._conns.get(pool)
                if conn is None:
                    conn = self._conns[pool] = drain.connect()
                outcome = drain.step.run(conn, part)
                self._last[group] = outcome
                if outcome is not Outcome.BUSY:
                    self._known.add(group)
            except (pymysql.MySQLError, redis.RedisError, OSError) as e:
                self._drop_connection(pool)
                drain.isolation.temporary(None, e)
                raise AssertionError("unreachable") from e  # temporary() always raises
        except TemporaryApplyError as e:
            self._drop_connection(pool)
            report.add(part)
            if group == report.group:
                raise
            logger.warning("%s; its own message retries it", e)
            self.cooling.add(group, self.cool_for_s(group))
            wake(self.parts, self.waker, WakeUp(group, WakeReason.BACKLOG, f"{group}: retry"))
            return None
        report.add(part)
        return outcome

    # --- ending

    def _drop_connection(self, pool: str) -> None:
        conn = self._conns.pop(pool, None)
        if conn is not None:
            self.parts.mysql[pool].release(conn, broken=True)

    def _close(self, broken: bool) -> None:
        for pool, conn in self._conns.items():
            self.parts.mysql[pool].release(conn, broken=broken)
        self._conns.clear()

    def _release(self, held: list[str], skip: str | None, report: DrainReport) -> None:
        """The trigger protocol for every group held: release the flag, look again; batches
        there and the flag ours again: wake the group, so its next turn queues behind others."""
        for group in held:
            if group == skip:
                continue  # failed: its flag stays held until its message's retry
            if self._last.get(group) is Outcome.BUSY:
                # Another process stepped in after our last visit: the protocol is its to run
                # (whoever last found the group's lock free runs it after its step).
                if group == report.group:
                    report.busy = True
                continue
            try:
                log = GroupLog(self.parts, group)
                if log.release_trigger_if_idle() or not log.claim_trigger():
                    continue
            except redis.RedisError:
                # Redis is gone: the flag expires by itself and a sweep wakes the group.
                logger.warning("async group %r: Redis unreachable at the end of a turn", group)
                continue
            if group == report.group:
                report.more = True  # the caller wakes it
            else:
                wake(
                    self.parts,
                    self.waker,
                    WakeUp(group, WakeReason.BACKLOG, f"{group}: backlog continues"),
                )


def _log_joint_failure(groups: list[str], error: pymysql.MySQLError) -> None:
    code, message = error_code(error), error_message(error)
    if classify(error) is ErrorClass.TEMPORARY:
        logger.warning(
            "async groups %s: joint transaction hit a temporary error (%s: %s); "
            "applying them one at a time",
            groups,
            code,
            message,
        )
    else:
        logger.info(
            "async groups %s: joint transaction refused (%s: %s); applying them one at a time",
            groups,
            code,
            message,
        )
