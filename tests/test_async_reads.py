"""Async reads against the real MariaDB: in parallel, timed out, cancelled, raced, counted.

Slow queries are ``Where("SLEEP(s) = 0")`` on a table of one row: MySQL sleeps once per row
it looks at. Timing bounds are generous (two cores, other suites running): they separate
"in parallel" from "one after another", nothing finer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import statistics
import threading
import time
from decimal import Decimal
from urllib.parse import urlparse

import pytest

from beeorm_celery import (
    AllQueriesFailedError,
    ConfigError,
    DatabaseUnavailableError,
    Entity,
    Field,
    Pager,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    QueryUnavailableError,
    Registry,
    Where,
    race,
)
from beeorm_celery.async_reads import Outcome, Page, QueryFuture, race_future
from beeorm_celery.async_reads.statements import with_time_limit
from tests.support import services
from tests.support.services import wait_until


class Shelf(Entity, redis_cache=True, local_cache=True):
    name: str = Field(max_length=50, required=True)


class Book(Entity, redis_cache=True):
    title: str = Field(max_length=100, required=True)
    price: Decimal = Field(precision=8, scale=2, default=Decimal("0.00"))
    pages: int = 0


class Memo(Entity):
    """No cache: searches select every column."""

    text: str = Field(max_length=100)


def SLOW(seconds: float) -> Where:  # reads as a constant in the tests
    return Where(f"SLEEP({seconds}) = 0")


# --- helpers that look at the server from outside the engine


def _database(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def running_queries(mysql_url: str, like: str = "%SLEEP%") -> list[tuple[int, str]]:
    """(id, info) of the statements running in this test's database right now."""
    conn = services.server_connection(mysql_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                "COMMAND = 'Query' AND INFO LIKE %s AND ID <> CONNECTION_ID()",
                (_database(mysql_url), like),
            )
            return [(int(r[0]), str(r[1])) for r in cursor.fetchall()]
    finally:
        conn.close()


def connections_to(mysql_url: str) -> int:
    conn = services.server_connection(mysql_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s",
                (_database(mysql_url),),
            )
            row = cursor.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


def runner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("beeorm-query")]


@pytest.fixture
def engine(make_engine):
    engine = make_engine(Shelf, Book, Memo)
    ctx = engine.new_context()
    ctx.new_entity(Memo, text="the only memo")  # one row: SLEEP() runs once
    ctx.flush()
    return engine


@pytest.fixture
def make_replicated_engine(mysql_url, redis_url, key_prefix):
    """An engine with a second MySQL pool "replica" (the same database, under another name)."""
    engines = []

    def make(**kwargs):
        registry = Registry(key_prefix=key_prefix, **kwargs)
        registry.register_mysql(mysql_url)
        registry.register_mysql(mysql_url, pool="replica")
        registry.register_redis(redis_url)
        registry.register_entity(Shelf, Book, Memo)
        engine = registry.validate()
        engine.update_schema()
        ctx = engine.new_context()
        ctx.new_entity(Memo, text="the only memo")
        ctx.flush()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


# --- in parallel


def test_four_slow_queries_take_about_as_long_as_one(engine):
    ctx = engine.new_context()
    started = time.monotonic()
    futures = [ctx.count_async(Memo, SLOW(0.5)) for _ in range(4)]
    assert [f.result(timeout=10) for f in futures] == [1, 1, 1, 1]
    assert time.monotonic() - started < 1.8  # one after another would be 2 s


def test_futures_return_at_once_while_the_queries_run(engine):
    ctx = engine.new_context()
    started = time.monotonic()
    future = ctx.count_async(Memo, SLOW(0.5))
    assert time.monotonic() - started < 0.3
    assert not future.done()
    assert future.result(timeout=10) == 1


# --- same answers as the plain reads


def _fill_books(engine, n=12):
    ctx = engine.new_context()
    shelf = ctx.new_entity(Shelf, name="fiction")
    for i in range(n):
        ctx.new_entity(Book, title=f"book {i:02}", price=Decimal(i), pages=100 + i)
        ctx.new_entity(Memo, text=f"memo {i:02}")
    ctx.flush()
    return shelf


def test_search_async_and_count_async_return_what_search_and_count_return(engine):
    shelf = _fill_books(engine)
    ctx = engine.new_context()
    where = Where("`price` >= ? AND `pages` < ?", 3, 110)
    pager = Pager(2, 2)
    for entity, clause in ((Book, where), (Memo, Where("`text` LIKE ?", "memo%")), (Shelf, None)):
        assert ctx.search_async(entity, clause).result(10) == ctx.search(entity, clause)
        assert ctx.search_async(entity, clause, pager).result(10) == ctx.search(
            entity, clause, pager
        )
        assert ctx.count_async(entity, clause).result(10) == ctx.count(entity, clause)
    assert ctx.search_async(Shelf).result(10)[0].id == shelf.id


def test_paginate_async_gives_items_total_and_last_page(engine):
    _fill_books(engine, n=7)
    ctx = engine.new_context()
    page = ctx.paginate_async(Book, Where("`pages` >= ?", 100), 2, 3).result(10)
    assert isinstance(page, Page)
    assert [b.title for b in page.items] == ["book 03", "book 04", "book 05"]
    assert (page.total, page.page, page.per_page, page.last_page) == (7, 2, 3, 3)
    assert page.has_next and len(page) == 3
    last = ctx.paginate_async(Book, None, 3, 3).result(10)
    assert [b.title for b in last] == ["book 06"] and not last.has_next
    beyond = ctx.paginate_async(Book, None, 9, 3).result(10)
    assert (beyond.items, beyond.total, beyond.last_page) == ([], 7, 3)
    nothing = ctx.paginate_async(Book, Where("`pages` < 0"), 1, 3).result(10)
    assert (nothing.items, nothing.total, nothing.last_page) == ([], 0, 1)


def test_a_future_can_be_awaited_with_asyncio(engine):
    _fill_books(engine, n=3)
    ctx = engine.new_context()

    async def main():
        return await asyncio.gather(
            asyncio.wrap_future(ctx.count_async(Book)),
            asyncio.wrap_future(ctx.search_async(Book, Where("`pages` = ?", 101))),
            asyncio.wrap_future(ctx.count_async(Memo, SLOW(0.05))),
        )

    count, books, slow = asyncio.run(main())
    assert count == 3 and [b.title for b in books] == ["book 01"] and slow == 4


def test_a_future_is_a_concurrent_futures_future(engine):
    future = engine.new_context().count_async(Memo)
    assert isinstance(future, concurrent.futures.Future) and isinstance(future, QueryFuture)
    assert future.pool == "default"
    done, _ = concurrent.futures.wait([future], timeout=10)
    assert done == {future} and future.result() == 1


# --- timeouts


def test_a_timeout_raises_query_timeout_error_quickly_and_leaves_no_running_query(
    engine, mysql_url
):
    ctx = engine.new_context()
    started = time.monotonic()
    future = ctx.count_async(Memo, SLOW(5), timeout=0.5)
    with pytest.raises(QueryTimeoutError) as caught:
        future.result(timeout=10)
    assert time.monotonic() - started < 2.0
    assert caught.value.code == 1969  # MariaDB's max_statement_time, not a kill from outside
    assert "0.5s" in str(caught.value)
    assert running_queries(mysql_url) == []


def test_a_connection_that_timed_out_serves_the_next_query(make_engine):
    engine = make_engine(Memo, query_workers=1)
    ctx = engine.new_context()
    ctx.new_entity(Memo, text="one")
    ctx.flush()
    before = engine.query_runner.select("SELECT CONNECTION_ID()").result(10)
    with pytest.raises(QueryTimeoutError):
        ctx.count_async(Memo, SLOW(5), timeout=0.2).result(10)
    assert engine.query_runner.select("SELECT CONNECTION_ID()").result(10) == before
    assert ctx.count_async(Memo).result(10) == 1


def test_a_query_that_finishes_in_time_is_not_affected_by_its_timeout(engine):
    assert engine.new_context().count_async(Memo, SLOW(0.1), timeout=5).result(10) == 1


def test_timeout_works_for_any_select_given_to_the_runner(engine):
    runner = engine.query_runner
    for sql in (
        "  select sleep(5)",
        "(SELECT SLEEP(5))",
        "WITH s AS (SELECT SLEEP(5)) SELECT * FROM s",
    ):
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError):
            runner.select(sql, timeout=0.3).result(10)
        assert time.monotonic() - started < 2.0, sql


def test_a_select_the_server_cannot_limit_is_killed_by_the_watchdog_at_its_deadline(
    engine, mysql_url
):
    # On MySQL only a statement that starts with SELECT takes the time-limit hint. Make the
    # runner treat this MariaDB as MySQL, and give it a WITH: only the watchdog can stop it.
    runner = engine.query_runner
    assert runner.select("SELECT 1").result(10) == [(1,)]
    runner._lane("default").mariadb = False
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError) as caught:
        runner.select("WITH s AS (SELECT SLEEP(5)) SELECT * FROM s", timeout=0.3).result(10)
    assert time.monotonic() - started < 2.0
    assert caught.value.code == 1317  # killed from outside, reported as the timeout it is
    assert running_queries(mysql_url) == []


def test_a_limit_the_server_ignores_is_backed_by_the_watchdog(engine, mysql_url):
    # MariaDB reads MySQL's /*+ MAX_EXECUTION_TIME */ hint as a plain comment.
    runner = engine.query_runner
    runner.select("SELECT 1").result(10)
    runner._lane("default").mariadb = False
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError):
        runner.select("SELECT SLEEP(5)", timeout=0.3).result(10)
    assert time.monotonic() - started < 3.0  # deadline plus the watchdog's grace
    assert running_queries(mysql_url) == []


def test_paginate_timeout_covers_both_statements(engine):
    with pytest.raises(QueryTimeoutError):
        engine.new_context().paginate_async(Memo, SLOW(0.3), 1, 10, timeout=0.5).result(10)


def test_the_time_limit_is_written_for_each_server():
    sql = "SELECT `id` FROM `t` WHERE SLEEP(1) = 0"
    assert with_time_limit(sql, 0.25, mariadb=True) == (
        f"SET STATEMENT max_statement_time=0.250000 FOR {sql}",
        True,
    )
    assert with_time_limit(sql, 0.25, mariadb=False) == (
        "SELECT /*+ MAX_EXECUTION_TIME(250) */ `id` FROM `t` WHERE SLEEP(1) = 0",
        True,
    )
    assert with_time_limit("  select 1", 0.0001, mariadb=False)[0] == (
        "  select /*+ MAX_EXECUTION_TIME(1) */ 1"
    )
    assert with_time_limit("WITH a AS (SELECT 1) SELECT * FROM a", 1, mariadb=False)[1] is False
    assert "max_statement_time=0.000001" in with_time_limit(sql, 1e-9, mariadb=True)[0]


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
def test_a_timeout_must_be_a_positive_number_of_seconds(engine, timeout):
    with pytest.raises(QueryError, match="timeout must be a positive number"):
        engine.new_context().count_async(Memo, timeout=timeout)


# --- cancelling


def _wait_until_running(mysql_url, like="%SLEEP%", n=1):
    return wait_until(lambda: len(running_queries(mysql_url, like)) >= n, timeout_s=10)


def test_cancel_of_a_running_query_returns_true_and_kills_it(engine, mysql_url):
    ctx = engine.new_context()
    started = time.monotonic()
    future = ctx.count_async(Memo, SLOW(5))
    _wait_until_running(mysql_url)
    assert future.running()
    assert future.cancel() is True
    assert running_queries(mysql_url) == []  # cancel() returns once MySQL let go of it
    assert future.cancelled() and future.done()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=1)
    assert time.monotonic() - started < 3.0
    assert future.cancel() is True  # again: still cancelled


def test_a_killed_connection_goes_back_to_work_healthy(make_engine, mysql_url):
    engine = make_engine(Memo, query_workers=1)
    ctx = engine.new_context()
    ctx.new_entity(Memo, text="one")
    ctx.flush()
    before = engine.query_runner.select("SELECT CONNECTION_ID()").result(10)
    future = ctx.count_async(Memo, SLOW(5))
    _wait_until_running(mysql_url)
    assert future.cancel()
    assert engine.query_runner.select("SELECT CONNECTION_ID()").result(10) == before
    assert ctx.count_async(Memo).result(10) == 1


def test_cancel_of_a_queued_query_means_it_never_runs(make_engine, mysql_url):
    engine = make_engine(Memo, query_workers=1)
    ctx = engine.new_context()
    ctx.new_entity(Memo, text="one")
    ctx.flush()
    first = ctx.count_async(Memo, SLOW(0.5))
    queued = ctx.count_async(Memo, Where("SLEEP(0.4) = 0"))
    assert not queued.running()
    assert queued.cancel() is True
    assert first.result(10) == 1
    assert queued.cancelled()
    time.sleep(0.2)
    assert running_queries(mysql_url, "%SLEEP(0.4)%") == []
    assert engine.query_stats()["default"].queries == 1


def test_cancel_after_the_result_is_in_returns_false(engine):
    future = engine.new_context().count_async(Memo)
    assert future.result(10) == 1
    assert future.cancel() is False and not future.cancelled()


def test_waiters_and_callbacks_see_a_running_query_cancelled(engine, mysql_url):
    future = engine.new_context().count_async(Memo, SLOW(5))
    seen = []
    future.add_done_callback(lambda f: seen.append(f.cancelled()))
    _wait_until_running(mysql_url)
    waiter = concurrent.futures.ThreadPoolExecutor(1)
    done_later = waiter.submit(concurrent.futures.wait, [future], 10)
    as_completed = waiter.submit(lambda: list(concurrent.futures.as_completed([future], 10)))
    time.sleep(0.1)
    future.cancel()
    assert done_later.result(5).done == {future}
    assert as_completed.result(5) == [future]
    waiter.shutdown()
    assert seen == [True]


def test_asyncio_wait_for_cancels_and_kills_the_query(engine, mysql_url):
    future = engine.new_context().count_async(Memo, SLOW(5))

    async def main():
        await asyncio.wait_for(asyncio.wrap_future(future), 0.5)

    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(main())
    assert time.monotonic() - started < 3.0
    assert future.cancelled()
    assert running_queries(mysql_url) == []


# --- replicas and races


def test_pool_reads_from_another_registered_mysql_pool(make_replicated_engine):
    engine = make_replicated_engine()
    _fill_books(engine, n=4)
    ctx = engine.new_context()
    future = ctx.search_async(Book, Where("`pages` > ?", 101), pool="replica")
    assert future.pool == "replica"
    assert [b.title for b in future.result(10)] == ["book 02", "book 03"]
    assert ctx.count_async(Book, pool="replica").result(10) == 4
    assert engine.query_stats()["replica"].queries == 2


def test_an_unknown_pool_is_refused_at_once(engine):
    with pytest.raises(ConfigError, match="'replica' is not registered"):
        engine.new_context().count_async(Memo, pool="replica")


def test_race_returns_the_fast_result_and_kills_the_slow_query(make_replicated_engine, mysql_url):
    engine = make_replicated_engine()
    ctx = engine.new_context()
    slow = ctx.count_async(Memo, SLOW(5), pool="replica")
    _wait_until_running(mysql_url)
    started = time.monotonic()
    fast = ctx.count_async(Memo, Where("`id` > ?", 0))
    assert race(slow, fast) == 1
    assert time.monotonic() - started < 2.0
    assert slow.cancelled()
    assert running_queries(mysql_url) == []  # killed before race() returned
    assert engine.query_stats()["replica"].cancellations == 1


def test_race_raises_all_queries_failed_error_with_every_error(make_replicated_engine):
    engine = make_replicated_engine()
    ctx = engine.new_context()
    broken = ctx.count_async(Memo, Where("`nope` = 1"), pool="replica")
    slow = ctx.count_async(Memo, SLOW(5), timeout=0.3)
    with pytest.raises(AllQueriesFailedError) as caught:
        race(broken, slow, timeout=10)
    first, second = caught.value.errors
    assert isinstance(first, QueryError) and first.code == 1054
    assert isinstance(second, QueryTimeoutError)


def test_race_skips_failures_and_returns_the_first_success(engine):
    ctx = engine.new_context()
    broken = ctx.count_async(Memo, Where("`nope` = 1"))
    ok = ctx.count_async(Memo, SLOW(0.2))
    assert race(broken, ok, timeout=10) == 1


def test_race_with_a_timeout_cancels_everything(engine, mysql_url):
    ctx = engine.new_context()
    futures = [ctx.count_async(Memo, SLOW(5)) for _ in range(2)]
    _wait_until_running(mysql_url, n=2)
    with pytest.raises(TimeoutError):
        race(*futures, timeout=0.3)
    assert all(f.cancelled() for f in futures)
    assert running_queries(mysql_url) == []


def test_race_future_can_be_awaited(engine):
    ctx = engine.new_context()

    async def main():
        return await asyncio.wrap_future(
            race_future(ctx.count_async(Memo, SLOW(5)), ctx.count_async(Memo))
        )

    started = time.monotonic()
    assert asyncio.run(main()) == 1
    assert time.monotonic() - started < 3.0


def test_race_needs_a_future(engine):
    with pytest.raises(ValueError):
        race()


# --- errors


def test_a_query_error_arrives_through_the_future_with_the_mysql_code(engine):
    future = engine.new_context().search_async(Memo, Where("`no_such_column` = ?", 1))
    with pytest.raises(QueryError) as caught:
        future.result(timeout=10)
    assert caught.value.code == 1054
    assert "no_such_column" in str(caught.value)
    assert not isinstance(caught.value, QueryTimeoutError | QueryCancelledError)
    assert caught.value.__cause__ is not None  # the PyMySQL error, for the curious


def test_a_syntax_error_arrives_as_query_error_1064(engine):
    with pytest.raises(QueryError) as caught:
        engine.query_runner.select("SELECT FROM WHERE").result(10)
    assert caught.value.code == 1064


def test_a_query_cannot_run_a_second_statement(engine):
    # Where() text is the user's: no multi-statements on the runner's connections.
    with pytest.raises(QueryError):
        engine.new_context().count_async(Memo, Where("1; DROP TABLE `memo`")).result(10)
    assert engine.new_context().count(Memo) == 1


def test_an_unreachable_server_arrives_as_query_error_through_the_future(
    mysql_url, redis_url, key_prefix
):
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_mysql("mysql://root@127.0.0.1:1/nowhere", pool="down")
    registry.register_entity(Memo)
    with registry.validate() as engine:
        future = engine.new_context().count_async(Memo, pool="down")
        with pytest.raises(QueryError) as caught:
            future.result(timeout=30)
        assert caught.value.code == 2003  # can't connect
        # as a synchronous read reports it: MySQL unavailable, nothing written
        assert isinstance(caught.value, QueryUnavailableError)
        assert isinstance(caught.value, DatabaseUnavailableError)
        assert caught.value.written is False
        assert engine.query_stats()["down"].errors == 1


def test_a_connection_killed_under_a_query_arrives_as_unavailable(engine, mysql_url):
    future = engine.new_context().count_async(Memo, SLOW(5))
    wait_until(lambda: running_queries(mysql_url), timeout_s=10, message="the slow count to run")
    (thread_id, _), *_ = running_queries(mysql_url)
    conn = services.server_connection(mysql_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"KILL CONNECTION {thread_id}")  # an operator, a failover, a crash
    finally:
        conn.close()
    with pytest.raises(QueryUnavailableError) as caught:
        future.result(timeout=30)
    assert caught.value.code in (2013, 2006)  # lost connection / server gone
    assert isinstance(caught.value, DatabaseUnavailableError)
    # the runner starts afresh on a new connection
    assert engine.new_context().count_async(Memo).result(timeout=30) == 1


def test_cancels_racing_completions_leave_each_future_cancelled_or_answered(engine):
    ctx = engine.new_context()
    futures = [ctx.count_async(Memo) for _ in range(300)]
    cancelled = [f.cancel() for f in futures[::2]]  # while the first ones finish
    concurrent.futures.wait(futures, timeout=30)
    for future, said in zip(futures[::2], cancelled, strict=True):
        assert future.cancelled() is said
    for future in futures:
        assert future.cancelled() or future.result() == 1
    assert engine.query_stats()["default"].cancellations == sum(cancelled)


# --- statistics and the slow-query log


def test_query_stats_count_queries_errors_timeouts_cancellations_and_seconds(engine, mysql_url):
    ctx = engine.new_context()
    ctx.count_async(Memo).result(10)
    ctx.paginate_async(Memo, None, 1, 10).result(10)  # two statements
    with pytest.raises(QueryError):
        ctx.count_async(Memo, Where("`nope` = 1")).result(10)
    with pytest.raises(QueryTimeoutError):
        ctx.count_async(Memo, SLOW(5), timeout=0.2).result(10)
    running = ctx.count_async(Memo, SLOW(5))
    _wait_until_running(mysql_url)
    running.cancel()
    stats = wait_until(
        lambda: (s := engine.query_stats()["default"]).cancellations == 1 and s.queries == 6 and s
    )
    assert (stats.queries, stats.errors, stats.timeouts, stats.cancellations) == (6, 1, 1, 1)
    assert 0.2 <= stats.total_seconds < 5
    assert stats.max_seconds >= 0.19
    assert stats.average_seconds == pytest.approx(stats.total_seconds / 6)
    assert (stats.queued, stats.running) == (0, 0)


def test_query_stats_list_every_pool_even_unused(make_replicated_engine):
    stats = make_replicated_engine().query_stats()
    assert set(stats) == {"default", "replica"}
    assert stats["replica"].queries == 0 and stats["replica"].average_seconds == 0.0


def test_slow_queries_are_logged_while_the_log_is_on(engine, caplog):
    ctx = engine.new_context()
    caplog.set_level(logging.WARNING, logger="beeorm_celery.queries")
    with engine.query_runner.log_slow_queries(threshold_s=0.2):
        ctx.count_async(Memo, SLOW(0.3)).result(10)
        ctx.count_async(Memo).result(10)
    ctx.count_async(Memo, SLOW(0.3)).result(10)
    slow = [r for r in caplog.records if r.name == "beeorm_celery.queries"]
    assert len(slow) == 1
    assert "slow query on MySQL pool 'default'" in slow[0].getMessage()
    assert "SLEEP(0.3)" in slow[0].getMessage()


def test_a_listener_sees_every_statement_with_its_outcome(engine):
    events = []
    remove = engine.query_runner.add_listener(events.append)
    ctx = engine.new_context()
    ctx.count_async(Memo).result(10)
    with pytest.raises(QueryTimeoutError):
        ctx.count_async(Memo, SLOW(5), timeout=0.2).result(10)
    remove()
    ctx.count_async(Memo).result(10)
    assert [e.outcome for e in events] == [Outcome.OK, Outcome.TIMEOUT]
    assert events[1].sql.startswith("SET STATEMENT max_statement_time=")
    assert isinstance(events[1].error, QueryTimeoutError)


def test_a_failing_listener_does_not_break_the_query(engine, caplog):
    def broken(event):
        raise RuntimeError("listener bug")

    engine.query_runner.add_listener(broken)
    assert engine.new_context().count_async(Memo).result(10) == 1
    assert "listener" in caplog.text


# --- load and lifetime


def test_two_hundred_futures_on_eight_connections_finish_and_leak_nothing(make_engine, mysql_url):
    engine = make_engine(Memo, query_workers=8)
    ctx = engine.new_context()
    ctx.new_entity(Memo, text="one")
    ctx.flush()
    peak = {"running": 0, "connections": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak["running"] = max(peak["running"], len(running_queries(mysql_url)))
            peak["connections"] = max(peak["connections"], connections_to(mysql_url))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    futures = []
    for i in range(200):
        if i % 20 == 5:
            futures.append(ctx.count_async(Memo, SLOW(2), timeout=0.1))  # times out
        else:
            futures.append(ctx.count_async(Memo, SLOW(0.02)))
    for future in futures[::25]:
        future.cancel()  # some queued, some running
    _, not_done = concurrent.futures.wait(futures, timeout=60)
    stop.set()
    watcher.join()
    assert not not_done
    outcomes = {"ok": 0, "timeout": 0, "cancelled": 0}
    for future in futures:
        if future.cancelled():
            outcomes["cancelled"] += 1
        elif isinstance(future.exception(), QueryTimeoutError):
            outcomes["timeout"] += 1
        else:
            assert future.result() == 1
            outcomes["ok"] += 1
    assert sum(outcomes.values()) == 200 and outcomes["timeout"] >= 1
    assert peak["running"] <= 8
    # 8 workers, 1 killer, and the engine's own pool (schema and the flush above)
    assert peak["connections"] <= 8 + 1 + engine.mysql["default"].config.pool_size
    stats = engine.query_stats()["default"]
    assert (stats.cancellations, stats.timeouts) == (outcomes["cancelled"], outcomes["timeout"])
    engine.close()
    wait_until(lambda: connections_to(mysql_url) == 0, message="connections left open")
    assert runner_threads() == []


def test_engine_close_cancels_queued_kills_running_and_ends_threads(make_engine, mysql_url):
    engine = make_engine(Memo, query_workers=2)
    ctx = engine.new_context()
    ctx.new_entity(Memo, text="one")
    ctx.flush()
    futures = [ctx.count_async(Memo, SLOW(5)) for _ in range(5)]
    _wait_until_running(mysql_url, n=2)
    started = time.monotonic()
    engine.close()
    assert time.monotonic() - started < 3.0
    assert all(f.cancelled() for f in futures)
    assert running_queries(mysql_url) == []
    assert runner_threads() == []
    wait_until(lambda: connections_to(mysql_url) == 0, message="connections left open")
    with pytest.raises(QueryError, match="closed"):
        ctx.count_async(Memo)


def test_idle_workers_end_their_threads_and_connections(make_engine, mysql_url):
    engine = make_engine(Memo, query_workers=3)
    runner = engine.query_runner
    lane = runner._lane("default")
    lane._idle_s = 0.2  # instead of a minute
    futures = [runner.select("SELECT SLEEP(0.1)") for _ in range(3)]
    assert [f.result(10) for f in futures] == [[(0,)]] * 3
    wait_until(lambda: runner_threads() == [], message="idle workers still alive")
    engine.mysql["default"].close()  # the engine's own pool, so only the runner's would count
    wait_until(lambda: connections_to(mysql_url) == 0, message="idle connections left open")
    assert runner.select("SELECT 2").result(10) == [(2,)]  # a new worker starts on demand


# --- overhead


def test_overhead_of_an_async_query_over_a_plain_search_is_small(engine):
    _fill_books(engine, n=20)
    ctx = engine.new_context()
    where = Where("`id` = ?", 3)
    blocks, per_block = 20, 50  # 1,000 each way, interleaved so that load hits all alike
    for _ in range(50):  # warm both paths: connections, caches
        ctx.search(Memo, where)
        ctx.search_async(Memo, where).result()

    def plain():
        for _ in range(per_block):
            ctx.search(Memo, where)

    def one_by_one():
        for _ in range(per_block):
            ctx.search_async(Memo, where).result()

    def all_at_once():
        for future in [ctx.search_async(Memo, where) for _ in range(per_block)]:
            future.result()

    samples: dict[str, list[float]] = {"plain": [], "one_by_one": [], "all_at_once": []}
    for _ in range(blocks):
        for name, fn in (
            ("plain", plain),
            ("one_by_one", one_by_one),
            ("all_at_once", all_at_once),
        ):
            started = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - started) / per_block * 1e6)
    total = {name: sum(s) * per_block / 1e6 for name, s in samples.items()}
    median = {name: statistics.median(s) for name, s in samples.items()}
    rounds = blocks * per_block
    print(
        f"\n{rounds} small searches each way (uncached Memo by id), in {blocks} interleaved blocks:"
    )
    for name, label in (
        ("plain", "plain ctx.search"),
        ("one_by_one", "search_async().result(), one by one"),
        ("all_at_once", f"search_async x{per_block} at once, then results"),
    ):
        print(f"  {label:45} {total[name]:.3f} s total, median {median[name]:.0f} us/query")
    overhead = median["one_by_one"] - median["plain"]
    print(f"  overhead of async one by one (median): {overhead:+.0f} us per query")
    assert ctx.search_async(Memo, where).result() == ctx.search(Memo, where)
    # Generous: a thread hand-off costs tens of microseconds, not milliseconds.
    assert overhead < 2000
