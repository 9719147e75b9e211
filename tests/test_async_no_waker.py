"""A producer without an adapter installed never stalls a group: the sweep applies its batch."""

from __future__ import annotations

import time

from beeorm_celery import consume_async_flush_events
from beeorm_celery.asyncflush.settings import DEFAULT_SWEEP_INTERVAL_S
from beeorm_celery.asyncflush.stats import WAKE_IDLE, WAKE_ON_ITS_WAY, WAKE_SWEEP
from tests.support.models import ALL, Category, Counter
from tests.support.services import wait_until
from tests.support.sql import execute, scalar
from tests.support.worker_app import build_engine

# A loaded 2-core machine: the sweep thread and the task need a moment beyond the interval.
_SLACK_S = 4.0


def _value(engine, counter_id):
    return scalar(engine, "SELECT value FROM counter WHERE id = %s", (counter_id,))


def test_a_producer_without_install_is_applied_within_the_sweep_interval(celery_harness):
    h = celery_harness()  # h.engine has the Celery adapter installed; the worker too
    producer = build_engine(h.db_url, h.redis_url, h.prefix, {})  # a script that forgot install()
    try:
        ctx = producer.new_context()
        first = ctx.new_entity(Counter, name="no-waker", value=1)
        ctx.flush_async()
        stats = producer.async_stats()["counters"]
        assert (stats.pending, stats.trigger_set, stats.wake) == (1, False, WAKE_SWEEP)

        h.start_worker(concurrency=1)
        wait_until(lambda: _value(h.engine, first.id) == 1, timeout_s=30)  # the start sweep

        # With the worker running and idle: the periodic sweep, not a flag that makes it look
        # away, picks the next batch up.
        wait_until(lambda: producer.async_stats()["counters"].wake == WAKE_IDLE, timeout_s=10)
        ctx = producer.new_context()
        second = ctx.new_entity(Counter, name="no-waker-2", value=2)
        started = time.monotonic()
        ctx.flush_async()
        wait_until(
            lambda: _value(h.engine, second.id) == 2,
            timeout_s=DEFAULT_SWEEP_INTERVAL_S + _SLACK_S,
            message="the batch of a producer without a waker waited past the sweep interval",
        )
        assert time.monotonic() - started <= DEFAULT_SWEEP_INTERVAL_S + _SLACK_S
        wait_until(lambda: producer.async_stats()["counters"].wake == WAKE_IDLE, timeout_s=10)
    finally:
        producer.close()


def test_stats_tell_a_wake_up_on_its_way_from_one_waiting_for_a_sweep(celery_harness):
    h = celery_harness()  # no worker: nothing changes the flags behind the test's back
    ctx = h.engine.new_context()
    ctx.new_entity(Counter, name="woken", value=1)
    ctx.flush_async()
    stats = h.engine.async_stats()["counters"]
    assert (stats.pending, stats.trigger_set, stats.wake) == (1, True, WAKE_ON_ITS_WAY)


class _BrokerDown:
    """A waker whose broker is unreachable."""

    def __init__(self) -> None:
        self.attempts = 0

    def wake(self, wake):
        self.attempts += 1
        raise ConnectionError("broker unreachable")


def test_a_failed_wake_up_leaves_the_group_to_the_sweep_for_flush_and_replay(make_engine):
    engine = make_engine(*ALL)
    waker = _BrokerDown()
    engine.async_parts.wakers.attach(waker)
    ctx = engine.new_context()
    ctx.new_entity(Category, name="Taken")
    ctx.flush_async()  # the wake-up fails; the flush does not
    # behind the ORM's back, after flush_async() claimed the name: MySQL refuses the batch
    execute(engine, "INSERT INTO category (id, name) VALUES (9000, 'Taken')")
    assert waker.attempts == 1
    assert engine.async_stats()["catalog"].wake == WAKE_SWEEP  # not "on its way": nobody is
    consume_async_flush_events(engine)
    (dead,) = engine.dead_letters.list()
    execute(engine, "DELETE FROM category WHERE id = 9000")  # fix the cause

    new_id = engine.dead_letters.retry(dead.id)  # the replay's wake-up fails the same way

    assert waker.attempts == 2
    stats = engine.async_stats()["catalog"]
    assert (stats.pending, stats.dead_letters, stats.wake) == (1, 0, WAKE_SWEEP)
    consume_async_flush_events(engine)
    assert scalar(engine, "SELECT COUNT(*) FROM category WHERE name = 'Taken'") == 1
    assert new_id > dead.batch_id
