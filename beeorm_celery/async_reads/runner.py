"""``QueryRunner``: runs reads in the background, on a bounded set of connections per MySQL pool.

Each call returns a ``QueryFuture`` at once. ``engine.query_runner`` is created on first use;
``engine.close()`` closes it (queued queries cancelled, running ones killed, threads joined).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from beeorm_celery.async_reads.future import QueryFuture
from beeorm_celery.async_reads.lane import Lane
from beeorm_celery.async_reads.page import Page
from beeorm_celery.async_reads.stats import (
    DEFAULT_SLOW_QUERY_S,
    Listener,
    QueryStats,
    SlowQueryLog,
    StatsBook,
)
from beeorm_celery.async_reads.watchdog import Watchdog
from beeorm_celery.async_reads.worker import Rows, RunSQL, Task
from beeorm_celery.errors import ConfigError, QueryError
from beeorm_celery.query import Pager, bind
from beeorm_celery.reads import count_sql, search_sql

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine
    from beeorm_celery.entity import Entity
    from beeorm_celery.query import Where
    from beeorm_celery.reads import Reader
    from beeorm_celery.schema import EntitySchema

T = TypeVar("T")

# close() waits this long for killed queries to come back before leaving their threads behind.
DEFAULT_CLOSE_WAIT_S = 5.0


class QueryRunner:
    """``workers``: at most this many connections (and threads) per MySQL pool."""

    def __init__(self, engine: Engine, workers: int) -> None:
        if workers < 1:
            raise ConfigError(f"query_workers must be at least 1, got {workers}")
        self._engine = engine
        self._workers = workers
        self._book = StatsBook()
        self._lock = threading.Lock()
        self._lanes: dict[str, Lane] = {}
        self._watchdog = Watchdog("beeorm-query-watchdog")
        self._pid = os.getpid()
        self._closed = False

    # --- what Context calls

    def search(
        self,
        reader: Reader,
        schema: EntitySchema,
        where: Where | None,
        pager: Pager | None,
        *,
        timeout: float | None = None,
        pool: str | None = None,
    ) -> QueryFuture[list[Entity]]:
        sql = search_sql(schema, where, pager)

        def job(run: RunSQL) -> list[Entity]:
            return reader.entities_from_search_rows(schema, run(sql))

        return self.submit(pool or schema.options.mysql_pool, job, timeout)

    def count(
        self,
        schema: EntitySchema,
        where: Where | None,
        *,
        timeout: float | None = None,
        pool: str | None = None,
    ) -> QueryFuture[int]:
        sql = count_sql(schema, where)
        return self.submit(
            pool or schema.options.mysql_pool, lambda run: int(run(sql)[0][0]), timeout
        )

    def paginate(
        self,
        reader: Reader,
        schema: EntitySchema,
        where: Where | None,
        page: int,
        per_page: int,
        *,
        timeout: float | None = None,
        pool: str | None = None,
    ) -> QueryFuture[Page[Entity]]:
        """Count, then the page's rows, on one connection; ``timeout`` covers both."""
        pager = Pager(page, per_page)
        counting, searching = count_sql(schema, where), search_sql(schema, where, pager)

        def job(run: RunSQL) -> Page[Entity]:
            total = int(run(counting)[0][0])
            items: list[Entity] = []
            if pager.offset < total:  # past the end there is nothing to select
                items = reader.entities_from_search_rows(schema, run(searching))
            return Page(items, total, page, per_page)

        return self.submit(pool or schema.options.mysql_pool, job, timeout)

    # --- any SELECT

    def select(
        self, sql: str, *params: Any, pool: str = "default", timeout: float | None = None
    ) -> QueryFuture[Rows]:
        """Rows of any one SELECT, with the same timeout, cancel and stats as the entity reads.

        ``params`` replace the ``?`` placeholders outside quotes, escaped, as in ``Where``
        (``select("SELECT `id` FROM `t` WHERE `name` = ?", name)``). Without params the SQL
        is sent as is: trusted SQL only. ``rows.columns`` names the columns.
        """
        if params:
            sql = bind(sql, params, f"select({sql!r:.80})")
        return self.submit(pool, lambda run: run(sql), timeout)

    def submit(
        self, pool: str, job: Callable[[RunSQL], T], timeout: float | None = None
    ) -> QueryFuture[T]:
        """Run ``job(run_sql)`` on one of ``pool``'s connections; every ``run_sql(sql)`` is a
        statement with the timeout (counted from the job's start), cancel and stats."""
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise QueryError(f"timeout must be a positive number of seconds, got {timeout!r}")
        lane = self._lane(pool)
        future: QueryFuture[T] = QueryFuture(pool, lambda: self._book.record_cancel(pool))
        lane.submit(Task(future, job, timeout))
        return future

    def _lane(self, pool: str) -> Lane:
        lane = self._lanes.get(pool)
        if lane is not None and self._pid == os.getpid():
            return lane
        mysql = self._engine.mysql.get(pool)
        if mysql is None:
            known = ", ".join(sorted(self._engine.mysql))
            raise ConfigError(
                f"MySQL pool {pool!r} is not registered (registered: {known}); call "
                f"registry.register_mysql(url, pool={pool!r})"
            )
        with self._lock:
            if self._pid != os.getpid():
                # After fork() the parent's threads are gone and its sockets are not ours.
                self._pid, self._lanes = os.getpid(), {}
                self._watchdog = Watchdog("beeorm-query-watchdog")
            if self._closed:
                raise QueryError("the query runner is closed (engine.close() was called)")
            lane = self._lanes.get(pool)
            if lane is None:
                lane = Lane(mysql, self._workers, self._book, self._watchdog)
                self._lanes[pool] = lane
            return lane

    # --- observing

    def stats(self) -> dict[str, QueryStats]:
        """Per registered MySQL pool: queries, errors, timeouts, cancellations, seconds."""
        result: dict[str, QueryStats] = {}
        for pool in self._engine.mysql:
            lane = self._lanes.get(pool)
            queued, running = lane.gauges() if lane is not None else (0, 0)
            result[pool] = self._book.snapshot(pool, queued, running)
        return result

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(QueryEvent)`` after every statement; returns the remover."""
        return self._book.add_listener(listener)

    def log_slow_queries(
        self,
        threshold_s: float = DEFAULT_SLOW_QUERY_S,
        logger: logging.Logger | None = None,
        level: int = logging.WARNING,
    ) -> SlowQueryLog:
        """Log statements slower than ``threshold_s``: use it in ``with``, or keep it and
        call ``.remove()``."""
        return SlowQueryLog(self._book, threshold_s, logger, level)

    # --- lifetime

    def close(self, wait_s: float = DEFAULT_CLOSE_WAIT_S) -> None:
        """Cancel queued queries, kill running ones, end the threads and connections."""
        with self._lock:
            self._closed = True
            lanes = list(self._lanes.values()) if self._pid == os.getpid() else []
            self._lanes = {}
        for lane in lanes:
            lane.close(wait_s)
        self._watchdog.stop()

    def __enter__(self) -> QueryRunner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
