"""Garbage in a Dramatiq queue, and RabbitMQ as the broker of each backend, with real workers."""

from __future__ import annotations

import json
import os
import uuid

import pika
import pytest
import redis
from dramatiq import Message

from tests.support.models import Counter, Note
from tests.support.services import wait_until
from tests.support.sql import scalar


def _drained(engine, *groups):
    stats = engine.async_stats()
    return all(stats[g].pending == 0 for g in groups)


def _applies_after_garbage(h, worker, value):
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name=f"after-garbage-{value}", value=value)
    ctx.flush_async()
    wait_until(
        lambda: scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == value,
        timeout_s=20,
        message="the worker stopped applying after the garbage",
    )
    assert worker.alive()
    assert h.engine.dead_letters.count() == 0


def _bogus_messages(h):
    """Well-formed Dramatiq messages that make no sense to the library."""
    from beeorm_celery.dramatiq import ACTOR_NAME

    queue = f"{h.queue_prefix}counters"
    for actor, args, kwargs in [
        (ACTOR_NAME, ("no-such-group", "1-0"), {}),
        (ACTOR_NAME, (12345,), {}),
        (ACTOR_NAME, ("counters",), {"unexpected": "x"}),
        ("beeorm_celery.not_an_actor", (1,), {}),
    ]:
        h.broker.enqueue(Message(queue, actor, args, kwargs, {}))


def test_garbage_in_a_dramatiq_redis_queue_leaves_the_worker_applying(dramatiq_harness):
    h = dramatiq_harness()
    worker = h.start_worker(concurrency=2)
    client = redis.Redis.from_url(h.broker_url)
    queue = h.queue_key("counters")
    client.rpush(queue, os.urandom(16))  # an id with no message behind it
    for n, body in enumerate(
        [os.urandom(64), b"{not json", json.dumps({"body": "???"}).encode(), b"[1, 2, 3]"]
    ):
        client.hset(f"{queue}.msgs", f"garbage-{n}", body)  # an id whose message is garbage
        client.rpush(queue, f"garbage-{n}")
    _bogus_messages(h)
    _applies_after_garbage(h, worker, 7)
    log = worker.log()
    assert log.count("held an item that is not a message") == 4
    assert "Consumer encountered an unexpected error" not in log  # no 3 s consumer restart
    assert "ignoring beeorm_celery.apply" in log
    # kept for an operator: the four undecodable items and the message for an unknown actor
    assert client.zcard(f"{queue}.XQ") == 5
    assert worker.log().count("is not a message") == 4


@pytest.fixture
def rabbit_prefix(rabbitmq_url):
    """Queue names unique to this test on the shared RabbitMQ (deleted by the harness)."""
    return f"t{uuid.uuid4().hex[:10]}.beeorm."


def test_garbage_in_a_dramatiq_rabbitmq_queue_leaves_the_worker_applying(
    dramatiq_harness, rabbitmq_url, rabbit_prefix
):
    h = dramatiq_harness(broker=rabbitmq_url, queue_prefix=rabbit_prefix)
    worker = h.start_worker(concurrency=2)
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        for body in [os.urandom(64), b"{not json", b'{"body": "???"}', b"[1, 2, 3]"]:
            channel.basic_publish("", f"{rabbit_prefix}counters", body)
    finally:
        connection.close()
    _bogus_messages(h)
    _applies_after_garbage(h, worker, 8)
    log = worker.log()
    assert "ignoring beeorm_celery.apply" in log
    # Dramatiq's RabbitMQ consumer logs an undecodable body and rejects it to the .XQ itself
    assert log.count("Failed to decode message using encoder") == 4
    wait_until(lambda: _message_count(rabbitmq_url, f"{rabbit_prefix}counters.XQ") == 5)


def _message_count(url, queue):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def test_rabbitmq_as_the_broker_keeps_order_and_retries_temporary_errors(
    harness, rabbitmq_url, rabbit_prefix
):
    h = harness(
        broker=rabbitmq_url,
        queue_prefix=rabbit_prefix,
        lock_wait_timeout_s=1,
        retry_backoff_s=1,
        retry_backoff_max_s=2,
    )
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="locked", value=0)
    ctx.flush()
    h.start_worker(concurrency=2)
    h.start_worker(concurrency=2)
    notes = []
    for n in range(60):
        notes.append(ctx.new_entity(Note, text=f"n{n}").id)
        ctx.flush_async()
    locker = h.engine.mysql["default"].new_connection()
    try:
        locker.begin()
        with locker.cursor() as cursor:
            cursor.execute("SELECT * FROM counter WHERE id = %s FOR UPDATE", (counter.id,))
        for value in range(1, 31):
            counter = ctx.edit(counter)
            counter.value = value
            ctx.flush_async()
        wait_until(
            lambda: _head_failed(h.engine), timeout_s=30, message="the worker never hit the lock"
        )
        assert h.engine.async_stats()["counters"].pending == 30  # the group waits
    finally:
        locker.rollback()
        locker.close()
    wait_until(lambda: _drained(h.engine, "notes", "counters"), timeout_s=60)
    assert scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 30
    assert scalar(h.engine, "SELECT COUNT(DISTINCT id) FROM note") == len(notes)
    assert h.engine.dead_letters.count() == 0


def _head_failed(engine):
    from beeorm_celery.asyncflush.log import GroupLog

    failure = GroupLog(engine.async_parts, "counters").failure()
    return failure is not None and failure.error_code == 1205


def test_the_example_dramatiq_app_runs_as_the_docs_say(
    mysql_url, redis_url, broker_url, key_prefix, tmp_path
):
    """``dramatiq worker_dramatiq --processes 2 --threads 4 --queues ...`` from the repository
    root, with a producer that installs the adapter the same way."""
    import subprocess
    import sys
    from pathlib import Path

    from beeorm_celery import Registry
    from beeorm_celery.dramatiq import broker_from_url, install
    from shop.models import ENTITIES, Category, Order
    from tests.support.workers import WorkerProcess

    repo = Path(__file__).resolve().parents[1]
    namespace = f"{key_prefix}-dq"
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(*ENTITIES)
    engine = registry.validate()
    engine.update_schema()
    broker = broker_from_url(broker_url, namespace=namespace)
    install(broker, engine, sweep=False)
    env = {
        **os.environ,
        "BEEORM_MYSQL_URL": mysql_url,
        "BEEORM_REDIS_URL": redis_url,
        "BEEORM_KEY_PREFIX": key_prefix,
        "BEEORM_DRAMATIQ_BROKER_URL": broker_url,
        "BEEORM_DRAMATIQ_NAMESPACE": namespace,
    }
    command = "--processes 2 --threads 4 --queues beeorm.default beeorm.catalog beeorm.orders"
    log_path = tmp_path / "worker_dramatiq.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "worker_dramatiq", *command.split()],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, log_path, "example", "ready for action.", 2)
    try:
        worker.wait_ready()
        ctx = engine.new_context()
        category = ctx.new_entity(Category, name="Example")
        order = ctx.new_entity(Order, customer="Ada")
        ctx.flush_async()
        wait_until(lambda: _drained(engine, "catalog", "orders"), timeout_s=20)
        assert scalar(engine, "SELECT name FROM category WHERE id = %s", (category.id,)) == (
            "Example"
        )
        assert scalar(engine, "SELECT COUNT(*) FROM `order` WHERE id = %s", (order.id,)) == 1
        assert "consumes no async flush queue" not in worker.log()
    finally:
        worker.stop()
        broker.close()
        engine.close()
