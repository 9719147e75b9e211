"""A ``Worker``: a thread with its own MySQL connection that runs one lane's tasks.

A task is a job (``search``: the SELECT, then entities through the caches) and its future.
Every statement of a job gets the time limit left, is tracked so that ``cancel()`` and the
timeout watchdog can kill exactly it, and is counted in the stats.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.async_reads.killer import close_quietly
from beeorm_celery.async_reads.statements import (
    ER_QUERY_INTERRUPTED,
    TIMEOUT_CODES,
    error_code,
    is_broken_connection,
    killed_by_timeout,
    query_error,
    with_time_limit,
)
from beeorm_celery.async_reads.stats import Outcome, QueryEvent
from beeorm_celery.defaults import DEFAULT_MYSQL_PING_AFTER_IDLE_S

if TYPE_CHECKING:
    from pymysql.connections import Connection

    from beeorm_celery.async_reads.future import QueryFuture
    from beeorm_celery.async_reads.lane import Lane

# How long cancel() waits for a killed statement to leave the server before returning anyway.
DEFAULT_CANCEL_WAIT_S = 2.0
# A KILL can reach the server just before the statement does; it is sent again this often.
DEFAULT_KILL_RETRY_S = 0.1
# The server enforces timeouts itself; the watchdog kills only this long after the deadline.
DEFAULT_TIMEOUT_GRACE_S = 1.0


class Rows(list[tuple[Any, ...]]):
    """A statement's rows, as tuples; ``columns`` names them (from the cursor's description)."""

    __slots__ = ("_description",)

    def __init__(self, rows: Iterable[tuple[Any, ...]], description: Any = None) -> None:
        super().__init__(rows)
        self._description = description

    @property
    def columns(self) -> list[str]:
        # Read only by the callers that want names (the query builder's dicts): kept raw here.
        return [d[0] for d in self._description] if self._description else []


RunSQL = Callable[[str], Rows]


@dataclass
class Task:
    future: QueryFuture[Any]
    job: Callable[[RunSQL], Any]
    timeout_s: float | None
    deadline: float = 0.0  # set when the job starts: queue time does not count


class _Abandoned(Exception):
    """The future was cancelled: stop the job, set nothing."""


class Worker(threading.Thread):
    def __init__(self, lane: Lane) -> None:
        super().__init__(name=f"beeorm-query-{lane.pool.name}", daemon=True)
        self.lane = lane
        self._conn: Connection[Any] | None = None
        self._last_used = 0.0
        # Guards which statement runs now; a KILL is only sent while holding it, so it can
        # never hit the next statement on this connection.
        self._cond = threading.Condition()
        self._statement_of: QueryFuture[Any] | None = None
        self._task_future: QueryFuture[Any] | None = None
        self._thread_id = 0
        self._kill_reason: Outcome | None = None

    def run(self) -> None:
        try:
            while (task := self.lane.next_task(self)) is not None:
                self._run(task)
        finally:
            self._drop_connection()

    def _run(self, task: Task) -> None:
        future = task.future
        future.set_stopper(lambda: self.stop(future, Outcome.CANCELLED, DEFAULT_CANCEL_WAIT_S))
        self._task_future = future  # before it runs, so close() cannot miss it
        value: Any = None
        error: BaseException | None = None
        deliver = False
        try:
            if future.set_running_or_notify_cancel():  # else: cancelled while queued
                if task.timeout_s is not None:
                    task.deadline = time.monotonic() + task.timeout_s
                value = task.job(lambda sql: self._statement(task, sql))
                deliver = True
        except _Abandoned:
            pass
        except BaseException as e:
            error, deliver = e, True
        finally:
            self._task_future = None
            # Free before the result wakes the caller, so its next query finds this worker
            # idle instead of starting another thread and connection.
            self.lane.task_done()
        if deliver and future.claim():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def cancel_current(self) -> None:
        future = self._task_future
        if future is not None:
            future.cancel()

    # --- one statement

    def _statement(self, task: Task, sql: str) -> Rows:
        future, pool = task.future, self.lane.pool.name
        if future.cancelled():
            raise _Abandoned
        conn = self._connection(sql)
        statement, enforced, limit = sql, False, 0.0
        if task.timeout_s is not None:
            limit = task.deadline - time.monotonic()
            if limit <= 0:  # a later statement of the job (paginate) found no time left
                late = killed_by_timeout(pool, sql, task.timeout_s, "was not started")
                self.lane.book.record(QueryEvent(pool, sql, 0.0, Outcome.TIMEOUT, late))
                raise late
            statement, enforced = with_time_limit(sql, limit, bool(self.lane.mariadb))
        with self._cond:
            if future.cancelled():
                raise _Abandoned
            self._statement_of, self._kill_reason = future, None
            self._thread_id = int(conn.thread_id())  # type: ignore[no-untyped-call]
        alarm = None
        if task.timeout_s is not None:
            grace = DEFAULT_TIMEOUT_GRACE_S if enforced else 0.0
            alarm = self.lane.watchdog.arm(limit + grace, lambda: self._on_deadline(future))
        started = time.monotonic()
        rows = Rows(())
        error: Exception | None = None
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
                rows = Rows(cursor.fetchall(), cursor.description)
        except Exception as e:
            error = e
        finally:
            seconds = time.monotonic() - started
            self._last_used = time.monotonic()
            if alarm is not None:
                alarm.disarm()
            with self._cond:
                self._statement_of = None
                killed = self._kill_reason
                self._cond.notify_all()
        return self._outcome(task, sql, statement, seconds, rows, error, killed)

    def _outcome(
        self,
        task: Task,
        sql: str,
        statement: str,
        seconds: float,
        rows: Rows,
        error: Exception | None,
        killed: Outcome | None,
    ) -> Rows:
        pool = self.lane.pool.name
        code = error_code(error) if error is not None else None
        if error is not None and (
            is_broken_connection(error) or not isinstance(error, pymysql.MySQLError)
        ):
            self._drop_connection()  # the protocol state is unknown: start afresh
        elif killed is not None:
            self._check_health()
        outcome = Outcome.OK
        result_error: Exception | None = None
        if task.future.cancelled():
            outcome = Outcome.CANCELLED
        elif error is None:
            pass
        elif code in TIMEOUT_CODES:
            outcome = Outcome.TIMEOUT
            result_error = query_error(error, pool, sql, task.timeout_s)
        elif killed is Outcome.TIMEOUT and code == ER_QUERY_INTERRUPTED:
            outcome = Outcome.TIMEOUT
            result_error = killed_by_timeout(pool, sql, task.timeout_s)
            result_error.__cause__ = error
        elif isinstance(error, pymysql.MySQLError):
            outcome = Outcome.ERROR
            result_error = query_error(error, pool, sql, task.timeout_s)
        else:
            outcome, result_error = Outcome.ERROR, error
        self.lane.book.record(QueryEvent(pool, statement, seconds, outcome, result_error))
        if outcome is Outcome.CANCELLED:
            raise _Abandoned
        if result_error is not None:
            raise result_error
        return rows

    # --- killing

    def stop(self, future: QueryFuture[Any], reason: Outcome, wait_s: float) -> bool:
        """Kill ``future``'s statement if it is running here; wait up to ``wait_s`` for it to
        end (sending KILL again meanwhile). True if it is still running when this returns."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while self._statement_of is future:
                if self._kill_reason is None:
                    self._kill_reason = reason
                self.lane.killer.kill(self._thread_id)
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(min(DEFAULT_KILL_RETRY_S, left))
        return False

    def _on_deadline(self, future: QueryFuture[Any]) -> float | None:
        # The server should have stopped it already; kill it, and check again shortly.
        still_running = self.stop(future, Outcome.TIMEOUT, 0.0)
        return DEFAULT_KILL_RETRY_S if still_running else None

    # --- the connection

    def _connection(self, sql: str) -> Connection[Any]:
        if self._conn is not None and (
            time.monotonic() - self._last_used > DEFAULT_MYSQL_PING_AFTER_IDLE_S
        ):
            self._check_health()  # the server may have dropped it (wait_timeout)
        if self._conn is None:
            try:
                self._conn = self.lane.pool.new_connection()
            except pymysql.MySQLError as e:
                pool = self.lane.pool.name
                error = query_error(e, pool, sql, None)
                self.lane.book.record(QueryEvent(pool, sql, 0.0, Outcome.ERROR, error))
                raise error from e
            if self.lane.mariadb is None:
                info = str(self._conn.get_server_info())  # type: ignore[no-untyped-call]
                self.lane.mariadb = "mariadb" in info.lower()
        return self._conn

    def _check_health(self) -> None:
        """After a kill or a long idle: keep the connection only if it answers."""
        if self._conn is None:
            return
        try:
            self._conn.ping(reconnect=False)
        except Exception:
            self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            close_quietly(conn)
