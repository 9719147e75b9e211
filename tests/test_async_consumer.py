"""consume_async_flush_events (no Celery), unknown MySQL errors, and dead-letter limits."""

from __future__ import annotations

import threading
import time

import pytest

from beeorm_celery import TemporaryApplyError, consume_async_flush_events
from tests.support.models import ALL, Category, Counter, Note
from tests.support.services import wait_until
from tests.support.sql import execute, query, scalar


def test_non_blocking_consume_applies_everything_pending_and_returns(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    counter = ctx.new_entity(Counter, name="c", value=0)
    ctx.flush_async()
    for value in range(1, 21):
        counter = ctx.edit(counter)
        counter.value = value
        ctx.flush_async()
    notes = [ctx.new_entity(Note, text=f"n{n}") for n in range(5)]
    ctx.flush_async()
    report = consume_async_flush_events(engine)
    assert report["counters"].applied_batches == 21
    assert report["notes"].applied_batches == 1 and report["notes"].applied_operations == 5
    assert scalar(engine, "SELECT value FROM counter") == 20
    assert scalar(engine, "SELECT COUNT(*) FROM note") == len(notes)
    assert all(s.pending == 0 for s in engine.async_stats().values())


def test_blocking_consume_applies_new_batches_until_stopped(make_engine):
    engine = make_engine(*ALL)
    stop = threading.Event()
    result = {}
    consumer = threading.Thread(
        target=lambda: result.update(consume_async_flush_events(engine, block=True, stop=stop))
    )
    consumer.start()
    try:
        ctx = engine.new_context()
        for n in range(10):
            ctx.new_entity(Note, text=f"late {n}")
            ctx.flush_async()
            time.sleep(0.02)
        wait_until(lambda: scalar(engine, "SELECT COUNT(*) FROM note") == 10, timeout_s=20)
    finally:
        stop.set()
        consumer.join(timeout=10)
    assert not consumer.is_alive()
    assert result["notes"].applied_batches == 10


def test_blocking_consume_needs_a_stop_event(make_engine):
    engine = make_engine(*ALL)
    with pytest.raises(ValueError, match="stop event"):
        consume_async_flush_events(engine, block=True)


def test_an_unknown_mysql_error_is_retried_then_dead_lettered_after_its_age(make_engine):
    """A CHECK constraint added behind the ORM's back fails with 4025, in neither list."""
    from beeorm_celery import AsyncFlushSettings

    engine = make_engine(
        *ALL,
        async_flush=AsyncFlushSettings(
            unknown_error_dead_letter_after_s=1.5, retry_backoff_s=0.1, retry_backoff_max_s=0.3
        ),
    )
    execute(engine, "ALTER TABLE counter ADD CONSTRAINT small CHECK (value < 1000)")
    ctx = engine.new_context()
    big = ctx.new_entity(Counter, name="big", value=5000)
    ctx.flush_async()
    ok = ctx.new_entity(Counter, name="ok", value=1)
    ctx.flush_async()
    with pytest.raises(TemporaryApplyError, match="4025"):
        consume_async_flush_events(engine, retry_for_s=0.2)  # first: treated as temporary
    assert engine.dead_letters.count() == 0
    assert scalar(engine, "SELECT COUNT(*) FROM counter") == 0  # the group waits behind it
    started = time.monotonic()
    consume_async_flush_events(engine, retry_for_s=10)  # past the age: dead-lettered, goes on
    assert time.monotonic() - started >= 1.0
    (dead,) = engine.dead_letters.list()
    assert dead.error_code == 4025 and dead.attempts >= 2
    assert dead.batch_id and f"{big.id}" in dead.failing_statement
    assert dict(query(engine, "SELECT name, value FROM counter")) == {"ok": 1}
    assert ok.id


def _make_dead_letter(engine, name, planted_id):
    """Queue a Category, then give MySQL a row with the same unique name behind the ORM's back
    (flush_async() claimed the name, only MySQL can refuse it now)."""
    ctx = engine.new_context()
    ctx.new_entity(Category, name=name)
    ctx.flush_async()
    execute(engine, "INSERT INTO category (id, name) VALUES (%s, %s)", (planted_id, name))


def test_dead_letters_beyond_the_cap_drop_the_oldest(make_engine):
    from beeorm_celery import AsyncFlushSettings

    engine = make_engine(*ALL, async_flush=AsyncFlushSettings(dead_letter_max_per_group=2))
    for n, name in enumerate(("A", "B", "C")):
        _make_dead_letter(engine, name, 9000 + n)
        consume_async_flush_events(engine)
        time.sleep(0.01)  # distinct failure times
    dead = engine.dead_letters.list()
    assert [d.error.split("'")[1] for d in dead] == ["B", "C"]


def test_storing_the_same_failure_twice_keeps_one_entry(make_engine):
    engine = make_engine(*ALL)
    _make_dead_letter(engine, "Dup", 9000)
    consume_async_flush_events(engine)
    (dead,) = engine.dead_letters.list()
    # a worker that dies after storing and before moving on stores the same record again
    engine.dead_letters.store(dead)
    assert engine.dead_letters.count() == 1
    assert engine.dead_letters.get(dead.id) == dead


def test_retry_all_replays_what_it_can_and_keeps_the_rest(make_engine):
    engine = make_engine(*ALL)
    for n, name in enumerate(("X", "Y")):
        _make_dead_letter(engine, name, 9000 + n)
    consume_async_flush_events(engine)
    assert engine.dead_letters.count() == 2
    execute(engine, "DELETE FROM category WHERE name = 'X'")  # fix one of the two causes
    assert engine.dead_letters.retry_all() == 2
    consume_async_flush_events(engine)
    assert engine.dead_letters.count() == 1  # Y failed again: one new dead letter, not a loop
    assert scalar(engine, "SELECT COUNT(*) FROM category WHERE name = 'X'") == 1


def test_dead_letters_older_than_the_age_limit_are_dropped(make_engine):
    from beeorm_celery import AsyncFlushSettings

    engine = make_engine(*ALL, async_flush=AsyncFlushSettings(dead_letter_max_age_s=1.0))
    _make_dead_letter(engine, "Old", 9000)
    consume_async_flush_events(engine)
    assert engine.dead_letters.count() == 1
    time.sleep(1.2)
    _make_dead_letter(engine, "New", 9001)
    consume_async_flush_events(engine)  # storing the new one drops what is past the age
    (dead,) = engine.dead_letters.list()
    assert "New" in dead.error
