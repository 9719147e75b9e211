"""Pending markers that applied batches left behind are released (``pending_heal.py``).

A worker killed between its COMMIT and its marker release left the markers set: the row was
never cached again (every read went to MySQL) and ``verify_cache`` skipped it. Here the marker
is put back by hand as such a worker would have left it, beside a marker of a batch that is
still queued, which must stay.
"""

from __future__ import annotations

import time

import pytest
import redis

from beeorm_celery import Engine, consume_async_flush_events, pending_heal
from beeorm_celery.asyncflush.transport import WakeUp
from beeorm_celery.asyncflush.worker import GroupWorker
from tests.support.models import Counter
from tests.support.services import wait_until
from tests.support.sql import scalar

pytestmark = pytest.mark.services


class _NoWakes:
    def wake(self, wake: WakeUp) -> None:
        raise AssertionError(f"nothing should be woken here: {wake}")


class _Wakes:
    """Takes the sweeps' wake-ups and does nothing with them (the test applies the backlog)."""

    def wake(self, wake: WakeUp) -> None:
        pass


def _applied(engine: Engine, *names: str) -> tuple[list[Counter], str]:
    """New counters, applied by a worker; and the id of the last batch applied."""
    ctx = engine.new_context()
    rows = [ctx.new_entity(Counter, name=name, value=n + 1) for n, name in enumerate(names)]
    ctx.flush_async()
    consume_async_flush_events(engine)
    sql = "SELECT last_batch_id FROM _beeorm_async_applied WHERE async_group = %s"
    return rows, str(scalar(engine, sql, ("counters",)))


def test_markers_of_applied_batches_left_behind_are_released(make_engine):
    engine = make_engine(Counter)
    (kept, lost), applied = _applied(engine, "kept", "lost")
    client = engine.redis("default")
    schema = engine.schema(Counter)
    pending = engine.keys.pending(schema)
    lost_key = engine.keys.entity(schema, lost.id)

    # As a worker killed after its COMMIT leaves it; then the entry is evicted.
    client.hset(pending, str(lost.id), applied)
    client.delete(lost_key)
    assert engine.new_context().get_by_id(Counter, lost.id).value == 2  # from MySQL
    assert not client.exists(lost_key)  # and not cached: the marker forbids it

    # A batch still queued: its marker must stay (MySQL is behind the cache for that row).
    ctx = engine.new_context()
    edited = ctx.edit(engine.new_context().get_by_id(Counter, kept.id))
    edited.value = 5
    ctx.flush_async()
    queued_mark = client.hget(pending, str(kept.id))
    assert queued_mark is not None

    assert GroupWorker(engine.async_parts, _NoWakes()).heal_pending().found == 1
    assert client.hget(pending, str(lost.id)) is None
    assert client.hget(pending, str(kept.id)) == queued_mark
    # released as a worker releases: a short stale mark, then reads may cache the row again
    assert client.get(lost_key) == b"?" and 0 < client.ttl(lost_key) <= 10
    client.delete(lost_key)
    assert engine.new_context().get_by_id(Counter, lost.id).value == 2
    assert client.exists(lost_key)

    consume_async_flush_events(engine)  # the queued edit applies as usual
    assert engine.new_context().get_by_id(Counter, kept.id).value == 5
    assert engine.verify_cache(Counter) == []


def _one_left_behind(engine: Engine) -> tuple[redis.Redis, str, str, str]:
    """One applied row whose marker a killed worker left: (client, marker hash, id, marker)."""
    (row,), applied = _applied(engine, "row")
    client = engine.redis("default")
    pending = engine.keys.pending(engine.schema(Counter))
    client.hset(pending, str(row.id), applied)
    return client, pending, str(row.id), applied


def test_a_starting_worker_releases_them_in_its_sweeping_thread(make_engine):
    engine = make_engine(Counter)
    client, pending, row_id, _ = _one_left_behind(engine)
    sweeping = GroupWorker(engine.async_parts, _NoWakes()).start_sweeping(interval_s=3600)
    try:
        wait_until(lambda: client.hget(pending, row_id) is None, timeout_s=10)
    finally:
        sweeping.stop()


def test_a_log_recreated_since_the_position_releases_nothing(make_engine):
    # After a log loss the new log numbers its batches afresh: the old position says nothing.
    engine = make_engine(Counter)
    client, pending, row_id, marker = _one_left_behind(engine)
    client.set(engine.keys.epoch("counters"), "a-log-created-since")
    assert GroupWorker(engine.async_parts, _NoWakes()).heal_pending().found == 0
    assert client.hget(pending, row_id) == marker.encode()


def _backlog(engine: Engine, rows: int) -> None:
    """``rows`` new counters queued (no worker runs): a pending marker each."""
    for first in range(0, rows, 500):
        ctx = engine.new_context()
        for n in range(first, min(first + 500, rows)):
            ctx.new_entity(Counter, name=f"backlog {n}", value=n)
        ctx.flush_async()


def test_a_large_marker_hash_is_not_read_while_its_group_has_a_backlog(make_engine):
    # Reading a million markers of batches still queued would slow the drain of that backlog.
    engine = make_engine(Counter)
    client, pending, row_id, marker = _one_left_behind(engine)
    _backlog(engine, 40)
    healed = pending_heal.heal_pending(engine, ["counters"], scan_limit=20)
    assert healed.found == 0 and healed.deferred == {"counters"}
    assert client.hget(pending, row_id) == marker.encode()
    # a small hash is read, backlog or not
    assert pending_heal.heal_pending(engine, ["counters"], scan_limit=100).found == 1
    assert client.hget(pending, row_id) is None

    client.hset(pending, row_id, marker)  # left behind again
    consume_async_flush_events(engine)  # the backlog drains: the log is empty
    # with no backlog a hash is read whatever its size (here: larger than the limit)
    healed = pending_heal.heal_pending(engine, ["counters"], scan_limit=0)
    assert healed.found == 1 and not healed.deferred
    assert client.hget(pending, row_id) is None


def test_the_sweeping_thread_asks_again_for_a_deferred_group(make_engine):
    engine = make_engine(Counter)
    client, pending, row_id, _ = _one_left_behind(engine)
    _backlog(engine, pending_heal.SCAN_LIMIT + 10)  # more markers than a heal reads
    assert client.hlen(pending) > pending_heal.SCAN_LIMIT
    sweeping = GroupWorker(engine.async_parts, _Wakes()).start_sweeping(interval_s=0.1)
    try:
        time.sleep(0.5)  # the heal at start and a few sweeps go by
        assert client.hget(pending, row_id) is not None  # deferred: the backlog is queued
        consume_async_flush_events(engine)
        wait_until(lambda: client.hget(pending, row_id) is None, timeout_s=10)
    finally:
        sweeping.stop()
