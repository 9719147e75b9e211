"""Rolling deploys, secrets and big backlogs lose nothing (laws 13 and 14).

Real worker processes of two releases of one entity (``tests.support.releases``), workers with
another signing secret, and a private MariaDB whose ``max_allowed_packet`` the test lowers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from beeorm_celery import AsyncFlushSettings, Engine, consume_async_flush_events
from beeorm_celery.celery import install
from bench.chaos_mariadb import PrivateMariaDB
from tests.support.models import Counter
from tests.support.private_servers import private_mariadb
from tests.support.releases import RELEASE_1, RELEASE_2, Bulky, ItemV1, ItemV2
from tests.support.services import wait_until
from tests.support.sql import query, scalar
from tests.support.worker_app import build_app, build_engine
from tests.support.workers import CeleryHarness

FAST_RETRY = {"retry_backoff_s": 0.2, "retry_backoff_max_s": 0.5}


@pytest.fixture
def harnesses(
    mysql_url: str, redis_url: str, broker_url: str, key_prefix: str, tmp_path: Any
) -> Iterator[Any]:
    made: list[CeleryHarness] = []
    engines: list[Engine] = []

    def harness(release: str | None, options: dict[str, Any], db_url: str = mysql_url) -> Any:
        h = CeleryHarness(
            db_url, redis_url, broker_url, key_prefix, tmp_path, options, release=release
        )
        made.append(h)
        return h

    def producer(entities: tuple[Any, ...], options: dict[str, Any]) -> Engine:
        """Another release's producer: its own engine and Celery app, same database and prefix."""
        engine = build_engine(mysql_url, redis_url, key_prefix, options, entities)
        install(build_app(broker_url, key_prefix), engine, sweep=False)
        engines.append(engine)
        return engine

    harness.producer = producer  # type: ignore[attr-defined]
    yield harness
    for h in made:
        h.close()
    for engine in engines:
        engine.close()


def _rows(engine: Engine) -> dict[int, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in query(engine, "SELECT * FROM release_item")}


def test_a_new_producer_before_workers_and_migration_waits_then_applies(harnesses: Any) -> None:
    options = {**FAST_RETRY, "schema_lag_dead_letter_after_s": 300}
    h = harnesses("releases.RELEASE_1", options)
    new = harnesses.producer(RELEASE_2, options)
    old_worker = h.start_worker(concurrency=1, queues=("releases",))
    old_ctx = h.engine.new_context()
    first = old_ctx.new_entity(ItemV1, name="first", qty=1)
    old_ctx.flush_async()
    wait_until(lambda: first.id in _rows(h.engine), timeout_s=30)

    new_ctx = new.new_context()
    shiny = new_ctx.new_entity(ItemV2, name="shiny", qty=2, color="blue")
    new_ctx.flush_async()
    behind = old_ctx.new_entity(ItemV1, name="behind", qty=3)  # queued after: waits behind it
    old_ctx.flush_async()
    wait_until(lambda: old_worker.log().count("schema ahead") >= 2, timeout_s=30)
    assert set(_rows(h.engine)) == {first.id}
    assert h.engine.dead_letters.count() == 0
    assert h.engine.async_stats()["releases"].pending == 2

    # The workers are upgraded first: now the table lacks the column (MySQL 1054): still waits.
    old_worker.stop()
    new_worker = h.start_worker(concurrency=1, queues=("releases",), release="releases.RELEASE_2")
    wait_until(lambda: new_worker.log().count("schema ahead") >= 2, timeout_s=30)
    assert "1054" in new_worker.log()
    assert set(_rows(h.engine)) == {first.id}

    new.update_schema()
    wait_until(lambda: len(_rows(h.engine)) == 3, timeout_s=30, message="never applied")
    rows = _rows(h.engine)
    assert rows[shiny.id] == ("shiny", 2, "blue")
    assert rows[behind.id] == ("behind", 3, "red")  # the old producer's insert took the default
    assert h.engine.dead_letters.count() == 0


def test_an_old_producer_after_the_new_workers_and_table_applies_with_defaults(
    harnesses: Any,
) -> None:
    h = harnesses("releases.RELEASE_2", FAST_RETRY)
    old = harnesses.producer(RELEASE_1, FAST_RETRY)
    h.start_worker(concurrency=1, queues=("releases",))
    ctx = old.new_context()
    items = [ctx.new_entity(ItemV1, name=f"old{n}", qty=n) for n in range(3)]
    ctx.flush_async()
    edited = ctx.edit(items[0])
    edited.qty = 10
    ctx.flush_async()
    wait_until(lambda: _rows(h.engine).get(items[0].id, ("", 0))[1] == 10, timeout_s=30)
    rows = _rows(h.engine)
    assert rows == {
        items[0].id: ("old0", 10, "red"),
        items[1].id: ("old1", 1, "red"),
        items[2].id: ("old2", 2, "red"),
    }
    assert h.engine.dead_letters.count() == 0


def test_an_old_producers_edit_reaches_the_new_releases_cache(harnesses: Any) -> None:
    # The documented order: new workers and table first, then the producers. Meanwhile an old
    # producer edits a row the new release has cached (under its own layout's key).
    h = harnesses("releases.RELEASE_2", FAST_RETRY)
    old = harnesses.producer(RELEASE_1, FAST_RETRY)
    h.start_worker(concurrency=1, queues=("releases",))
    new_ctx = h.engine.new_context()
    item = new_ctx.new_entity(ItemV2, name="shared", qty=1, color="blue")
    new_ctx.flush_async()
    wait_until(lambda: item.id in _rows(h.engine), timeout_s=30)
    cached = h.engine.new_context().get_by_id(ItemV2, item.id)
    assert cached is not None and cached.qty == 1

    old_ctx = old.new_context()
    old_copy = old_ctx.get_by_id(ItemV1, item.id)
    assert old_copy is not None
    edited = old_ctx.edit(old_copy)
    edited.qty = 10
    old_ctx.flush_async()  # patches the old layout's entry only
    wait_until(lambda: _rows(h.engine)[item.id][1] == 10, timeout_s=30)

    def new_release_sees_it() -> bool:
        row = h.engine.new_context().get_by_id(ItemV2, item.id)
        return row is not None and row.qty == 10 and row.color == "blue"

    # the new worker applied a batch cached under another layout: its entry went stale
    wait_until(new_release_sees_it, timeout_s=10)
    assert h.engine.verify_cache(ItemV2) == []


def test_schema_lag_waits_up_to_its_limit_once_then_replays_after_the_upgrade(
    make_engine: Any,
) -> None:
    settings = AsyncFlushSettings(schema_lag_dead_letter_after_s=1, **FAST_RETRY)
    old = make_engine(*RELEASE_1, async_flush=settings)
    new = make_engine(*RELEASE_2, update_schema=False, async_flush=settings)
    ctx = new.new_context()
    one = ctx.new_entity(ItemV2, name="one", color="green")
    ctx.flush_async()
    two = ctx.new_entity(ItemV2, name="two", color="gold")
    ctx.flush_async()

    consume_async_flush_events(old)
    first, second = old.dead_letters.list()
    assert not first.malformed and first.cause == second.cause == "schema_lag"
    assert first.attempts > 1  # it waited out the limit...
    assert second.attempts == 1  # ...and the next batch with the same cause did not wait again
    assert "schema ahead: upgrade workers / run update_schema" in first.error

    new.update_schema()
    assert new.dead_letters.retry_all() == 2
    consume_async_flush_events(new)
    assert _rows(new) == {one.id: ("one", 0, "green"), two.id: ("two", 0, "gold")}


def test_a_worker_with_another_secret_is_loud_and_loses_nothing(harnesses: Any) -> None:
    options = {**FAST_RETRY, "signing_secret": "alpha"}
    h = harnesses(None, options)
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="signed", value=1)
    ctx.flush_async()
    wrong = h.start_worker(
        concurrency=1, queues=("counters",), async_options={**options, "signing_secret": "beta"}
    )
    wait_until(lambda: "differs from the producers'" in wrong.log(), timeout_s=30)
    wait_until(lambda: wrong.log().count("wrong signature") >= 2, timeout_s=30)
    assert "ERROR" in wrong.log()
    assert scalar(h.engine, "SELECT COUNT(*) FROM counter") == 0
    assert h.engine.dead_letters.count() == 0
    wrong.stop()

    # Fixed, and rotating: signs with "gamma", still accepts "alpha".
    rotating = {**options, "signing_secret": ["gamma", "alpha"]}
    h.start_worker(concurrency=1, queues=("counters",), async_options=rotating)
    wait_until(lambda: scalar(h.engine, "SELECT value FROM counter") == 1, timeout_s=30)
    new_producer = harnesses.producer((Counter,), rotating)
    new_ctx = new_producer.new_context()
    edited = new_ctx.edit(new_ctx.get_by_id(Counter, counter.id))
    edited.value = 2
    new_ctx.flush_async()
    wait_until(lambda: scalar(h.engine, "SELECT value FROM counter") == 2, timeout_s=30)
    assert h.engine.dead_letters.count() == 0


@pytest.fixture
def small_packet_mariadb() -> Iterator[PrivateMariaDB]:
    with private_mariadb("packets") as server:
        yield server


def test_a_backlog_of_large_rows_applies_under_max_allowed_packet(
    harnesses: Any, small_packet_mariadb: PrivateMariaDB
) -> None:
    server = small_packet_mariadb
    h = harnesses("releases.BULKY", FAST_RETRY, db_url=server.url)
    h.start_worker(concurrency=1, queues=("bulky",))
    ctx = h.engine.new_context()
    small = ctx.new_entity(Bulky, a="small")
    ctx.flush_async()

    def count() -> int:  # read_all: a pooled link the restart broke is replaced once
        return int(h.engine.mysql["default"].read_all("SELECT COUNT(*) FROM bulky")[0][0])

    wait_until(lambda: count() == 1, timeout_s=30)  # it read the 16 MB limit

    # The server comes back with a smaller limit than the worker read: the worker must split.
    server.shutdown()
    server.extra_args = ["--max-allowed-packet=128K"]
    text = "x" * 60_000
    for n in range(20):
        for _ in range(20):
            ctx.new_entity(Bulky, a=text, b=str(n))
        ctx.flush_async()
        if n == 10:  # one row of 180 KB: larger than the server takes, alone in its batch
            too_large = ctx.new_entity(Bulky, a=text, b=text, c=text)
            ctx.flush_async()
    assert h.engine.redis("default").xlen(h.engine.keys.log("bulky")) == 21  # MySQL is down
    server.start()

    started = time.monotonic()
    wait_until(lambda: count() == 401, timeout_s=120, message="the backlog never applied")
    assert time.monotonic() - started < 120
    [dead] = h.engine.dead_letters.list()
    assert "max_allowed_packet" in dead.error and dead.error_code == 1153
    assert str(too_large.id) in dead.error or any(str(too_large.id) in s for s in dead.sql)
    assert (
        small.id
        and scalar(h.engine, "SELECT COUNT(*) FROM bulky WHERE id = %s", (too_large.id,)) == 0
    )
