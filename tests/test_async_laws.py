"""The laws of the async flush (docs/architecture.md), each checked with real workers: Celery,
and for the tests taking the ``harness`` fixture Dramatiq too."""

from __future__ import annotations

from decimal import Decimal

import pytest

from beeorm_celery import ValidationError
from tests.support.models import Category, Counter, Product
from tests.support.services import wait_until
from tests.support.sql import execute, query, scalar


def _drained(engine, group):
    stats = engine.async_stats()[group]
    return stats.pending == 0 and not stats.trigger_set


def test_invalid_flush_async_queues_and_caches_nothing(celery_harness):
    h = celery_harness()
    ctx = h.engine.new_context()
    good = ctx.new_entity(Category, name="Fine")
    ctx.new_entity(Product, name="x" * 201)  # over max_length
    with pytest.raises(ValidationError, match=r"Product.*name.*max_length"):
        ctx.flush_async()
    assert h.engine.async_stats()["catalog"].pending == 0
    assert h.engine.new_context().get_by_id(Category, good.id) is None


def test_three_hundred_edits_of_one_row_end_with_the_last_value(harness):
    h = harness()
    h.start_worker(concurrency=4)
    h.start_worker(concurrency=2)
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="c", value=0)
    ctx.flush_async()
    for value in range(1, 301):
        counter = ctx.edit(counter)
        counter.value = value
        ctx.flush_async()
    wait_until(lambda: _drained(h.engine, "counters"), timeout_s=60, message="backlog not drained")
    assert scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 300
    assert h.engine.async_stats()["counters"].applied == 301
    assert h.engine.dead_letters.count() == 0


def test_insert_update_delete_cycles_in_separate_flushes_leave_nothing(celery_harness):
    h = celery_harness()
    h.start_worker(concurrency=4)
    ctx = h.engine.new_context()
    ids = []
    for n in range(40):
        product = ctx.new_entity(Product, name=f"p{n}", price=Decimal("1.00"))
        ctx.flush_async()
        product = ctx.edit(product)
        product.stock = n + 1  # a real change: an unchanged edit queues nothing
        ctx.flush_async()
        ctx.delete(product)
        ctx.flush_async()
        ids.append(product.id)
    wait_until(lambda: _drained(h.engine, "catalog"), timeout_s=60, message="backlog not drained")
    assert scalar(h.engine, "SELECT COUNT(*) FROM product") == 0
    assert h.engine.async_stats()["catalog"].applied == 120
    assert h.engine.new_context().get_by_ids(Product, ids) == [None] * 40
    assert h.engine.dead_letters.count() == 0


def test_reads_see_the_new_state_before_any_worker_ran(celery_harness):
    h = celery_harness()  # no worker started
    ctx = h.engine.new_context()
    category = ctx.new_entity(Category, name="Bikes")
    product = ctx.new_entity(Product, name="Roadster", category=category)
    ctx.flush_async()
    fresh = h.engine.new_context()
    assert fresh.get_by_id(Product, product.id).name == "Roadster"
    assert fresh.get_by_unique_index(Category, "name", "Bikes").id == category.id
    assert [p.id for p in fresh.get_by_reference(Product, "category", category.id)] == [product.id]
    assert scalar(h.engine, "SELECT COUNT(*) FROM product") == 0  # the SQL has not run
    h.start_worker(concurrency=1)
    wait_until(lambda: scalar(h.engine, "SELECT COUNT(*) FROM product") == 1, timeout_s=30)


def test_duplicate_key_dead_letters_the_batch_and_the_group_goes_on(harness):
    h = harness()
    ctx = h.engine.new_context()
    clash = ctx.new_entity(Category, name="Taken")
    ctx.flush_async()
    # behind the ORM's back, after flush_async() claimed the name: only MySQL can refuse now
    execute(h.engine, "INSERT INTO category (id, name) VALUES (%s, %s)", (10_000, "Taken"))
    later = ctx.new_entity(Category, name="Free")
    ctx.flush_async()
    assert h.engine.new_context().get_by_id(Category, clash.id) is not None  # cached, queued
    h.start_worker(concurrency=2)
    wait_until(lambda: _drained(h.engine, "catalog"), timeout_s=30, message="group stopped")
    assert scalar(h.engine, "SELECT name FROM category WHERE id = %s", (later.id,)) == "Free"
    (dead,) = h.engine.dead_letters.list()
    assert dead.error_code == 1062
    assert dead.group == "catalog"
    assert "Taken" in dead.error
    assert dead.failing_statement is not None and "INSERT INTO `category`" in dead.failing_statement
    assert dead.sql == [dead.failing_statement]
    assert dead.attempts >= 1
    assert dead.first_failed_at <= dead.failed_at
    # the cache no longer claims a row MySQL refused
    fresh = h.engine.new_context()
    assert fresh.get_by_id(Category, clash.id) is None
    assert fresh.get_by_unique_index(Category, "name", "Taken").id == 10_000


def test_a_batch_applies_whole_or_not_at_all(celery_harness):
    h = celery_harness()
    ctx = h.engine.new_context()
    product = ctx.new_entity(Product, name="In the same flush")
    ctx.new_entity(Category, name="Taken")
    ctx.flush_async()  # one batch for group catalog: the product INSERT, then the failing one
    execute(h.engine, "INSERT INTO category (id, name) VALUES (%s, %s)", (10_000, "Taken"))
    h.start_worker(concurrency=1)
    wait_until(lambda: h.engine.dead_letters.count() == 1, timeout_s=30)
    assert scalar(h.engine, "SELECT COUNT(*) FROM product WHERE id = %s", (product.id,)) == 0
    (dead,) = h.engine.dead_letters.list()
    assert len(dead.sql) == 2 and dead.sql[0].startswith("INSERT INTO `product`")


def test_fixed_dead_letter_replays_at_the_end_of_its_group(celery_harness):
    h = celery_harness()
    ctx = h.engine.new_context()
    clash = ctx.new_entity(Category, name="Taken")
    ctx.flush_async()
    execute(h.engine, "INSERT INTO category (id, name) VALUES (%s, %s)", (10_000, "Taken"))
    h.start_worker(concurrency=2)
    wait_until(lambda: h.engine.dead_letters.count() == 1, timeout_s=30)
    (dead,) = h.engine.dead_letters.list()
    execute(h.engine, "DELETE FROM category WHERE id = 10000")  # the operator fixes the cause
    h.engine.dead_letters.retry(dead.id)
    wait_until(
        lambda: scalar(h.engine, "SELECT name FROM category WHERE id = %s", (clash.id,)) == "Taken",
        timeout_s=30,
        message="the replayed batch never landed",
    )
    assert h.engine.dead_letters.count() == 0
    # the replay also refreshed the cache that the dead letter had dropped
    wait_until(
        lambda: h.engine.new_context().get_by_id(Category, clash.id) is not None, timeout_s=5
    )


def test_lock_wait_timeout_is_retried_and_both_edits_land_in_order(harness):
    h = harness(lock_wait_timeout_s=1, retry_backoff_s=1, retry_backoff_max_s=2)
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="locked", value=0)
    ctx.flush()  # the row exists in MySQL
    locker = h.engine.mysql["default"].new_connection()
    try:
        locker.begin()
        with locker.cursor() as cursor:
            cursor.execute("SELECT * FROM counter WHERE id = %s FOR UPDATE", (counter.id,))
        h.start_worker(concurrency=2)
        counter = ctx.edit(counter)
        counter.value = 1  # blocked by the lock
        ctx.flush_async()
        counter = ctx.edit(counter)
        counter.value = 2  # must wait behind it
        ctx.flush_async()
        wait_until(
            lambda: (
                (f := h.engine.async_stats())
                and f["counters"].pending == 2
                and _head_failed(h.engine)
            ),
            timeout_s=30,
            message="the worker never hit the lock",
        )
        assert scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 0
    finally:
        locker.rollback()
        locker.close()
    wait_until(
        lambda: _drained(h.engine, "counters"), timeout_s=60, message="not applied after unlock"
    )
    assert scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 2
    assert h.engine.dead_letters.count() == 0


def _head_failed(engine):
    from beeorm_celery.asyncflush.log import GroupLog

    failure = GroupLog(engine.async_parts, "counters").failure()
    return failure is not None and failure.error_code == 1205


def test_deadlock_is_retried_and_the_batch_lands_once(celery_harness):
    """A worker and a second connection lock two rows in opposite order: InnoDB rolls back the
    smaller transaction, and the second connection has written many rows, so that's the worker."""
    h = celery_harness(lock_wait_timeout_s=20, retry_backoff_s=1, retry_backoff_max_s=2)
    ctx = h.engine.new_context()
    a = ctx.new_entity(Counter, name="a", value=0)
    b = ctx.new_entity(Counter, name="b", value=0)
    ctx.flush()
    locker = h.engine.mysql["default"].new_connection()
    try:
        locker.begin()
        with locker.cursor() as cursor:
            cursor.execute("UPDATE counter SET value = 100 WHERE id = %s", (b.id,))
            cursor.executemany(  # weight: InnoDB picks the transaction with fewer changes
                "INSERT INTO note (id, text) VALUES (%s, 'weight')", [(i,) for i in range(1, 201)]
            )
        worker = h.start_worker(concurrency=1)
        a, b = ctx.edit(a), ctx.edit(b)
        a.value, b.value = 1, 1  # the worker updates a, then waits for b
        ctx.flush_async()
        wait_until(
            lambda: query(
                h.engine,
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
                "AND INFO LIKE %s",
                (f"UPDATE `counter` SET `value` = 1 WHERE `id` = {b.id}%",),
            ),
            timeout_s=30,
            message="the worker never waited for the row lock",
        )
        with locker.cursor() as cursor:  # closes the cycle
            cursor.execute("UPDATE counter SET value = 100 WHERE id = %s", (a.id,))
        locker.rollback()
    finally:
        locker.close()
    wait_until(lambda: _drained(h.engine, "counters"), timeout_s=60, message="not applied")
    values = dict(query(h.engine, "SELECT name, value FROM counter"))
    assert values == {"a": 1, "b": 1}
    assert "1213" in worker.log(), "the worker was not the deadlock victim"
    assert h.engine.dead_letters.count() == 0
