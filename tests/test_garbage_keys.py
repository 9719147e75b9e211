"""Garbage that once stopped workers: a broker queue key that is not a list."""

from __future__ import annotations

import redis

from tests.support.models import Counter
from tests.support.services import wait_until
from tests.support.sql import scalar


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
