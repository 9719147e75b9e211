"""Real faults against real workers: nothing lost, nothing doubled, the workers keep going."""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from urllib.parse import urlparse

import psutil
import redis

from beeorm_celery.asyncflush.log import GroupLog
from tests.support.models import Counter, Note
from tests.support.services import wait_until
from tests.support.sql import query, scalar


def _drained(engine, group):
    stats = engine.async_stats()[group]
    return stats.pending == 0


def _edit_counters(ctx, counters, rounds, flush_every=1):
    """Every round adds 1 to every counter, one flush_async per counter edit."""
    expected = {c.id: c.value for c in counters}
    current = list(counters)
    for _ in range(rounds):
        for n, counter in enumerate(current):
            counter = ctx.edit(counter)
            counter.value += 1
            expected[counter.id] = counter.value
            current[n] = counter
            ctx.flush_async()
    return current, expected


def test_sigkilled_workers_lose_and_double_nothing(harness):
    h = harness(max_batches_per_transaction=20)
    ctx = h.engine.new_context()
    counters = [ctx.new_entity(Counter, name=f"k{n}", value=0) for n in range(20)]
    ctx.flush_async()
    notes = []
    victim = h.start_worker(concurrency=2)
    kills = 0
    deadline = time.monotonic() + 60
    for round_no in range(6):
        for n in range(100):  # inserts: a double would be a duplicate key, a loss a missing row
            notes.append(ctx.new_entity(Note, text=f"r{round_no}n{n}").id)
            ctx.flush_async()
        counters, expected = _edit_counters(ctx, counters, rounds=5)
        wait_until(
            lambda: h.engine.async_stats()["notes"].applied > 0 or time.monotonic() > deadline
        )
        if victim.alive():
            victim.kill()  # SIGKILL: parent and pool processes, mid-whatever
            kills += 1
        victim = h.start_worker(concurrency=2)
    wait_until(lambda: _drained(h.engine, "notes") and _drained(h.engine, "counters"), timeout_s=90)
    assert kills >= 5
    assert scalar(h.engine, "SELECT COUNT(*) FROM note") == len(notes)
    assert scalar(h.engine, "SELECT COUNT(DISTINCT id) FROM note") == len(notes)
    assert dict(query(h.engine, "SELECT id, value FROM counter")) == expected
    assert h.engine.dead_letters.count() == 0


def test_killed_mysql_connections_lose_and_double_nothing(celery_harness):
    """KILL the workers' MySQL connections at random, also while they COMMIT (ambiguous)."""
    h = celery_harness(retry_backoff_s=1, retry_backoff_max_s=2, max_batches_per_transaction=5)
    ctx = h.engine.new_context()
    counters = [ctx.new_entity(Counter, name=f"k{n}", value=0) for n in range(10)]
    ctx.flush_async()
    worker = h.start_worker(concurrency=2)
    mysql_port = urlparse(h.db_url).port or 3306  # BEEORM_TEST_MYSQL_URL may name another
    own = h.engine.mysql["default"].new_connection()
    stop = threading.Event()
    killed = []

    def worker_ports():
        ports = set()
        for process in [psutil.Process(worker.pid), *worker.children()]:
            with contextlib.suppress(psutil.NoSuchProcess):
                ports.update(
                    c.laddr.port
                    for c in process.net_connections("tcp")
                    if c.raddr and c.raddr.port == mysql_port
                )
        return ports

    def killer():
        rng = random.Random(7)
        while not stop.wait(rng.uniform(0.005, 0.05)) and len(killed) < 80:
            ports = worker_ports()
            with own.cursor() as cursor:
                cursor.execute(
                    "SELECT ID, HOST FROM information_schema.PROCESSLIST WHERE DB = DATABASE()"
                )
                targets = [
                    i for i, host in cursor.fetchall() if int(host.rsplit(":", 1)[-1]) in ports
                ]
                if targets:
                    target = rng.choice(targets)
                    try:
                        cursor.execute(f"KILL CONNECTION {int(target)}")
                        killed.append(target)
                    except Exception:
                        pass  # it ended by itself meanwhile

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        counters, expected = _edit_counters(ctx, counters, rounds=30)
        notes = []
        for n in range(300):
            notes.append(ctx.new_entity(Note, text=f"n{n}").id)
            ctx.flush_async()
        wait_until(lambda: len(killed) >= 20 or _drained(h.engine, "notes"), timeout_s=120)
    finally:
        stop.set()
        thread.join(timeout=10)
        own.close()
    # Each kill costs the group a retry backoff of up to 2 s, more on a loaded machine: the
    # deadline is for a stuck group, not for a slow one.
    wait_until(
        lambda: _drained(h.engine, "notes") and _drained(h.engine, "counters"), timeout_s=300
    )
    assert dict(query(h.engine, "SELECT id, value FROM counter")) == expected
    assert scalar(h.engine, "SELECT COUNT(*) FROM note") == len(notes)
    assert h.engine.dead_letters.count() == 0
    assert killed, "the fault never happened: no connection was killed"


def _queue_key(h, group):
    return f"{h.prefix}:q:beeorm.{group}"


def test_garbage_in_the_queue_and_bogus_arguments_leave_the_worker_applying(celery_harness):
    h = celery_harness()
    worker = h.start_worker(concurrency=2)
    broker = redis.Redis.from_url(h.broker_url)
    queue = _queue_key(h, "counters")
    broker.lpush(queue, os.urandom(64))
    broker.lpush(queue, b"{not json")
    broker.lpush(queue, json.dumps({"body": "???", "headers": {}, "properties": {}}))
    broker.lpush(queue, json.dumps([1, 2, 3]))
    # well-formed Celery messages with arguments that make no sense
    h.task.apply_async(args=("no-such-group", "1-0"), queue="beeorm.counters")
    h.task.apply_async(args=(12345,), queue="beeorm.counters")
    h.task.apply_async(args=(), kwargs={"unexpected": object.__name__}, queue="beeorm.counters")
    h.app.send_task("beeorm_celery.not_a_task", args=(1,), queue="beeorm.counters")
    time.sleep(1)
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="after-garbage", value=7)
    ctx.flush_async()
    wait_until(
        lambda: scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 7,
        timeout_s=30,
        message="the worker stopped applying after the garbage",
    )
    assert worker.alive()
    assert h.engine.dead_letters.count() == 0
    # nothing is thrown away: the undeliverable items are kept for an operator
    assert broker.llen(f"{h.prefix}:q:beeorm.poison") == 4


def test_garbage_log_entries_are_dead_lettered_and_the_group_goes_on(celery_harness):
    # schema lag (an unknown table or column) waits for the upgrade; here not at all
    h = celery_harness(schema_lag_dead_letter_after_s=0)
    ctx = h.engine.new_context()
    first = ctx.new_entity(Counter, name="before", value=1)
    ctx.flush_async()
    log = GroupLog(h.engine.async_parts, "counters")
    log.client.xadd(log.log_key, {b"d": os.urandom(40)})
    log.client.xadd(log.log_key, {b"x": b"no payload"})
    unknown_table = {"v": 1, "g": "counters", "t": 1, "ops": [["i", "users", 5, {"a": 1}, {}]]}
    log.client.xadd(log.log_key, {b"d": json.dumps(unknown_table).encode()})
    unknown_column = {
        "v": 1,
        "g": "counters",
        "t": 1,
        "ops": [["u", "counter", first.id, {"value": 5, "is_admin": 1}, {}]],
    }
    log.client.xadd(log.log_key, {b"d": json.dumps(unknown_column).encode()})
    last = ctx.new_entity(Counter, name="after", value=2)
    ctx.flush_async()
    h.start_worker(concurrency=1)
    wait_until(lambda: _drained(h.engine, "counters"), timeout_s=30)
    assert dict(query(h.engine, "SELECT id, value FROM counter")) == {first.id: 1, last.id: 2}
    dead = h.engine.dead_letters.list()
    assert len(dead) == 4
    assert all(d.error_code is None for d in dead)
    unreadable = [d for d in dead if d.malformed]
    lagging = [d for d in dead if d.cause == "schema_lag"]
    assert len(unreadable) == 2 and len(lagging) == 2  # only the bytes are remove-only
    assert any("is_admin" in d.error for d in lagging)
    assert any("users" in d.error for d in lagging)
    assert all("schema ahead: upgrade workers / run update_schema" in d.error for d in lagging)


def test_unsigned_batches_are_refused_when_signing_is_on(celery_harness):
    h = celery_harness(signing_secret="s3cret", bad_signature_dead_letter_after_s=0)
    ctx = h.engine.new_context()
    signed = ctx.new_entity(Counter, name="signed", value=1)
    ctx.flush_async()
    log = GroupLog(h.engine.async_parts, "counters")
    forged = {
        "v": 1,
        "g": "counters",
        "t": 1,
        "ops": [["u", "counter", signed.id, {"value": 666}, {}]],
    }
    log.client.xadd(log.log_key, {b"d": json.dumps(forged).encode()})
    log.client.xadd(log.log_key, {b"d": json.dumps(forged).encode(), b"s": b"0" * 64})
    h.start_worker(concurrency=1)
    wait_until(lambda: _drained(h.engine, "counters"), timeout_s=30)
    assert scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (signed.id,)) == 1
    errors = sorted(d.error for d in h.engine.dead_letters.list())
    assert len(errors) == 2
    assert "not signed" in errors[0] or "not signed" in errors[1]
    assert any("wrong signature" in e for e in errors)


def test_a_lost_message_is_swept_up_when_a_worker_starts(harness):
    h = harness()
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="lost", value=3)
    ctx.flush_async()
    broker = redis.Redis.from_url(h.broker_url)
    assert broker.delete(h.queue_key("counters")) == 1  # the task message is gone
    h.start_worker(concurrency=1)
    wait_until(
        lambda: scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 3,
        timeout_s=30,
        message="the startup sweep did not pick up the batch",
    )


def test_a_stale_trigger_flag_heals_through_the_periodic_sweep(harness):
    h = harness(trigger_ttl_s=2, sweep_interval_s=1, sweep_min_age_s=0.5)
    h.start_worker(concurrency=1)
    log = GroupLog(h.engine.async_parts, "counters")
    log.hold_trigger(2)  # as if a worker died holding the group: flushes publish nothing
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="stale", value=4)
    ctx.flush_async()
    assert h.engine.async_stats()["counters"].pending == 1
    wait_until(
        lambda: scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 4,
        timeout_s=30,
        message="the periodic sweep never woke the group",
    )


def test_a_redelivered_batch_is_recognised_and_skipped(harness):
    """After COMMIT, a worker dies before trimming the log: the applied entries come back."""
    h = harness()
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="once", value=0)
    ctx.flush_async()
    for value in (1, 2, 3):
        counter = ctx.edit(counter)
        counter.value = value
        ctx.flush_async()
    log = GroupLog(h.engine.async_parts, "counters")
    entries = log.client.xrange(log.log_key)
    assert len(entries) == 4
    h.start_worker(concurrency=1)
    wait_until(lambda: _drained(h.engine, "counters"), timeout_s=30)
    applied = h.engine.async_stats()["counters"].applied
    # the state a crash between COMMIT and trim leaves: the applied entries still in the log
    log.client.delete(log.log_key)
    for entry_id, fields in entries[1:3]:
        log.client.xadd(log.log_key, fields, id=entry_id)
    h.wake("counters", "redelivery")
    wait_until(lambda: _drained(h.engine, "counters"), timeout_s=30)
    assert scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 3
    assert h.engine.async_stats()["counters"].applied == applied
    assert h.engine.dead_letters.count() == 0
