"""A worker's turn takes on the other groups it serves that have batches waiting (rotation.py).

Real worker processes. A group whose message is missing (its trigger flag already set for a
minute, as when a message was lost) is the probe: no sweep wakes a group whose flag is set, so
only a turn that takes it on applies it.
"""

from __future__ import annotations

import time

from tests.support.models import Counter, Note
from tests.support.services import wait_until

_NO_SWEEP_YET_S = 3.0


def _flush_without_message(h, group: str, entity_type, **values):  # type: ignore[no-untyped-def]
    """Queue one entity with the group's flag already set: no message is sent for it."""
    parts = h.engine.async_parts
    parts.log_redis().set(parts.keys.trigger(group), b"1", px=60_000)
    ctx = h.engine.new_context()
    entity = ctx.new_entity(entity_type, **values)
    ctx.flush_async()
    return entity


def _in_mysql(h, table: str, entity_id: int) -> bool:  # type: ignore[no-untyped-def]
    with h.engine.mysql["default"].connection() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT 1 FROM `{table}` WHERE id = %s", (entity_id,))
        return cur.fetchone() is not None


def test_a_turn_takes_on_a_served_group_without_a_message(celery_harness):
    h = celery_harness()
    h.start_worker(concurrency=1, queues=("counters", "notes"))
    note = _flush_without_message(h, "notes", Note, text="no message for me")
    time.sleep(0.05)  # older than adopt_after_s
    ctx = h.engine.new_context()
    counters = [ctx.new_entity(Counter, name=f"c{i}", value=i) for i in range(5)]
    ctx.flush_async()  # a message for "counters" only
    wait_until(
        lambda: _in_mysql(h, "note", note.id),
        timeout_s=_NO_SWEEP_YET_S,
        message="the turn for 'counters' did not take on 'notes'",
    )
    wait_until(lambda: all(_in_mysql(h, "counter", c.id) for c in counters), timeout_s=10)
    wait_until(lambda: all(s.pending == 0 for s in h.engine.async_stats().values()), timeout_s=5)
    stats = h.engine.async_stats()
    assert stats["notes"].applied == 1 and stats["counters"].applied == 1


def test_a_turn_leaves_groups_whose_queues_it_does_not_consume(celery_harness):
    h = celery_harness()
    h.start_worker(concurrency=1, queues=("counters",))
    note = _flush_without_message(h, "notes", Note, text="not this worker's")
    time.sleep(0.05)
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="c", value=1)
    ctx.flush_async()
    wait_until(lambda: _in_mysql(h, "counter", counter.id), timeout_s=10)
    time.sleep(1.0)  # a turn that took on "notes" would have applied it by now
    assert not _in_mysql(h, "note", note.id)
    assert h.engine.async_stats()["notes"].pending == 1


def test_groups_applied_together_keep_order_and_a_bad_batch_stays_alone(celery_harness):
    """Backlogs in two groups of one pool, then one worker: the turn applies them in joint
    transactions (joint.py). A batch MySQL refuses (its row's id planted in the table first)
    rolls its joint transaction back; each group then goes alone, the bad batch is
    dead-lettered and everything else lands once, in order."""
    # five batches a transaction: several joint transactions first, then the bad one
    h = celery_harness(max_batches_per_transaction=5)
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="edited", value=0)
    notes = [ctx.new_entity(Note, text="note 0")]
    ctx.flush_async()
    first = h.start_worker(concurrency=1, queues=("counters", "notes"))
    # both groups have their row in the position table: the backlog below is applied jointly
    wait_until(lambda: all(s.pending == 0 for s in h.engine.async_stats().values()), timeout_s=20)
    first.stop()
    for i in range(1, 31):
        counter = ctx.edit(counter)
        counter.value = i
        note = ctx.new_entity(Note, text=f"note {i}")
        if i == 21:  # the same primary key already in MySQL: this INSERT will fail (1062)
            clash = note
            with h.engine.mysql["default"].connection() as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO note (id, text) VALUES (%s, 'planted')", (note.id,))
                conn.commit()
        else:
            notes.append(note)
        ctx.flush_async()  # one batch per group per flush
    h.start_worker(concurrency=1, queues=("counters", "notes"))
    wait_until(
        lambda: all(s.pending == 0 for s in h.engine.async_stats().values()),
        timeout_s=30,
        message="backlogs not drained",
    )
    with h.engine.mysql["default"].connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM counter WHERE id = %s", (counter.id,))
        assert cur.fetchone() == (30,)
        cur.execute("SELECT COUNT(*) FROM note WHERE text LIKE 'note %%'")
        assert cur.fetchone() == (len(notes),)
        cur.execute("SELECT text FROM note WHERE id = %s", (clash.id,))
        assert cur.fetchone() == ("planted",)
    stats = h.engine.async_stats()
    assert stats["counters"].applied == 31
    assert stats["notes"].applied == 30  # 30 good batches; the bad one is a dead letter
    dead = h.engine.dead_letters.list()
    assert len(dead) == 1 and dead[0].error_code == 1062
