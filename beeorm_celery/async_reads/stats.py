"""Counting what the query runner did, per MySQL pool, and telling listeners (slow-query log)."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger("beeorm_celery.queries")

DEFAULT_SLOW_QUERY_S = 1.0
_LOGGED_SQL_CHARS = 1000


class Outcome(enum.Enum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class QueryEvent:
    """One statement the runner sent to MySQL, given to listeners when it ended."""

    pool: str
    sql: str  # as sent, with the time-limit wrapper if any
    seconds: float
    outcome: Outcome
    error: BaseException | None = None


@dataclass(frozen=True)
class QueryStats:
    """One MySQL pool's async reads since the engine started.

    ``queries`` counts statements sent to MySQL (a paginate sends two), whatever their outcome,
    ``errors`` and ``timeouts`` the ones that failed so. ``cancellations`` counts cancelled
    futures, queued or running (a running one's statement is killed and counted in
    ``queries``). Seconds are time in MySQL, not time queued. ``queued`` and ``running`` are
    gauges: now.
    """

    pool: str
    queries: int = 0
    errors: int = 0
    timeouts: int = 0
    cancellations: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    queued: int = 0
    running: int = 0

    @property
    def average_seconds(self) -> float:
        return self.total_seconds / self.queries if self.queries else 0.0


Listener = Callable[[QueryEvent], None]


class StatsBook:
    """Thread-safe counters per pool, and the listeners called after every statement."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, float]] = {}
        self._listeners: list[Listener] = []

    def _row(self, pool: str) -> dict[str, float]:
        return self._counts.setdefault(pool, dict.fromkeys(_COUNTERS, 0.0))

    def record(self, event: QueryEvent) -> None:
        with self._lock:
            row = self._row(event.pool)
            row["queries"] += 1
            row["total_seconds"] += event.seconds
            row["max_seconds"] = max(row["max_seconds"], event.seconds)
            counter = _OUTCOME_COUNTER.get(event.outcome)
            if counter is not None:
                row[counter] += 1
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("query listener %r failed", listener)

    def record_cancel(self, pool: str) -> None:
        """A future was cancelled (queued, or running: its statement killed, if one ran).

        Called by ``cancel()`` itself, so the count is up to date when it returns.
        """
        with self._lock:
            self._row(pool)["cancellations"] += 1

    def snapshot(self, pool: str, queued: int, running: int) -> QueryStats:
        with self._lock:
            row = dict(self._row(pool))
        return QueryStats(
            pool=pool,
            queries=int(row["queries"]),
            errors=int(row["errors"]),
            timeouts=int(row["timeouts"]),
            cancellations=int(row["cancellations"]),
            total_seconds=row["total_seconds"],
            max_seconds=row["max_seconds"],
            queued=queued,
            running=running,
        )

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` after every statement (in the worker thread; keep it quick).

        Returns a function that removes it.
        """
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove


_COUNTERS = ("queries", "errors", "timeouts", "cancellations", "total_seconds", "max_seconds")
# Cancellations are counted per future (record_cancel), not per killed statement.
_OUTCOME_COUNTER = {Outcome.ERROR: "errors", Outcome.TIMEOUT: "timeouts"}


class SlowQueryLog:
    """Logs every statement slower than ``threshold_s`` until removed (or the ``with`` ends).

    ::

        with engine.query_runner.log_slow_queries(0.5):
            ...
    """

    def __init__(
        self,
        book: StatsBook,
        threshold_s: float = DEFAULT_SLOW_QUERY_S,
        logger: logging.Logger | None = None,
        level: int = logging.WARNING,
    ) -> None:
        self.threshold_s = threshold_s
        self._logger = logger or log
        self._level = level
        self._remove = book.add_listener(self._on_query)

    def _on_query(self, event: QueryEvent) -> None:
        if event.seconds < self.threshold_s:
            return
        sql = event.sql
        if len(sql) > _LOGGED_SQL_CHARS:
            sql = sql[:_LOGGED_SQL_CHARS] + "..."
        self._logger.log(
            self._level,
            "slow query on MySQL pool %r: %.3fs (%s): %s",
            event.pool,
            event.seconds,
            event.outcome.value,
            sql,
        )

    def remove(self) -> None:
        self._remove()

    def __enter__(self) -> SlowQueryLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
