"""Garbage that once stopped workers or sweeps: a broker queue key that is not a list, a log
entry whose id is in the future."""

from __future__ import annotations

import time

import redis

from beeorm_celery import consume_async_flush_events
from beeorm_celery.asyncflush.transport import WakeUp
from beeorm_celery.asyncflush.worker import GroupWorker
from tests.support.models import Counter
from tests.support.services import wait_until
from tests.support.sql import query, scalar


def test_a_queue_key_of_the_wrong_type_is_moved_aside_and_the_worker_goes_on(celery_harness):
    h = celery_harness()
    worker = h.start_worker(concurrency=1)
    broker = redis.Redis.from_url(h.broker_url)
    queue = f"{h.prefix}:q:beeorm.counters"
    broker.set(queue, b"x")  # every BRPOP naming this key now fails with WRONGTYPE

    def moved_aside() -> list[bytes]:
        return list(broker.scan_iter(f"{queue}.garbage.*"))

    wait_until(lambda: moved_aside(), timeout_s=20, message="the garbage key was not moved aside")
    assert broker.get(moved_aside()[0]) == b"x"  # kept for an operator to read
    assert worker.alive()
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="after-wrongtype", value=3)
    ctx.flush_async()
    wait_until(
        lambda: scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 3,
        timeout_s=30,
        message="the worker stopped applying after a queue key of the wrong type",
    )
    assert worker.alive()
    assert "moved aside" in worker.log()


def test_a_log_entry_from_the_future_is_dead_lettered_and_the_group_goes_on(make_engine):
    engine = make_engine(Counter)
    ctx = engine.new_context()
    ctx.new_entity(Counter, name="a", value=1)
    ctx.flush_async()
    client = engine.redis("default")
    key = engine.keys.log("counters")
    ((_, fields),) = client.xrange(key)
    # The fields of a real batch under an id ten years ahead: only the id is wrong.
    future = f"{int(time.time() * 1000) + 10 * 365 * 24 * 3600 * 1000}-0"
    client.xadd(key, fields, id=future)
    ctx.new_entity(Counter, name="b", value=2)
    ctx.flush_async()  # queued after it: Redis gives it an id just above the future one
    consume_async_flush_events(engine)
    assert dict(query(engine, "SELECT name, value FROM counter")) == {"a": 1, "b": 2}
    (dead,) = engine.dead_letters.list()
    assert dead.batch_id == future and "future" in dead.error
    assert engine.async_stats()["counters"].pending == 0

    # Later batches still carry ids from that time: the sweep still wakes the group.
    ctx.new_entity(Counter, name="c", value=3)
    ctx.flush_async()
    woken: list[str] = []

    class Recorder:
        def wake(self, wake: WakeUp) -> None:
            woken.append(wake.group)

    GroupWorker(engine.async_parts, Recorder()).sweep(at_start=False)
    assert woken == ["counters"]
