"""A joint transaction locks only the groups it can apply (joint.py, ``_lock_enough``).

With a backlog in a few groups, a joint step that locked every due group applied the first
one's ``max_operations_per_transaction`` and kept the others locked until its COMMIT: a second
worker process found them all busy and waited, so two processes took turns. Here one joint step
is held inside its transaction (its INSERT waits on a row another session holds), and a second
one, on another connection, must still be able to apply the other group meanwhile.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from beeorm_celery import AsyncFlushSettings, consume_async_flush_events
from beeorm_celery.asyncflush.drain import Drain
from beeorm_celery.asyncflush.joint import Joint, joint_step
from beeorm_celery.asyncflush.report import DrainReport
from tests.support.models import Counter, Note
from tests.support.sql import scalar

pytestmark = pytest.mark.services

_OPS = 20  # max_operations_per_transaction: four batches of five


def _joint(engine: Any, drains: list[Drain], conn: Any) -> Joint:
    reports = {d.group: DrainReport(d.group) for d in drains}
    return joint_step(engine.async_parts, conn, drains, reports, {d.group for d in drains})


def test_a_group_another_process_is_applying_leaves_the_others_free(make_engine: Any) -> None:
    engine = make_engine(
        Counter, Note, async_flush=AsyncFlushSettings(max_operations_per_transaction=_OPS)
    )
    ctx = engine.new_context()  # both groups' rows in the position table first
    ctx.new_entity(Counter, name="first")
    ctx.new_entity(Note, text="first")
    ctx.flush_async()
    consume_async_flush_events(engine, False)
    batches: list[list[int]] = []
    for b in range(10):  # ten batches of five rows in each group
        ctx = engine.new_context()
        batches.append([ctx.new_entity(Counter, name=f"c{b}.{i}").id for i in range(5)])
        for i in range(5):
            ctx.new_entity(Note, text=f"n{b}.{i}")
        ctx.flush_async()

    parts = engine.async_parts
    first = [Drain(parts, "counters"), Drain(parts, "notes")]
    conn = first[0].connect()
    # Nothing known yet: both locked, the counters' first four batches fill the transaction.
    joint = _joint(engine, first, conn)
    assert set(joint.applied) == {"counters"}
    assert scalar(engine, "SELECT COUNT(*) FROM counter") == 1 + 20

    # Another session holds the id the counters' fifth batch inserts: the next joint step on
    # the counters waits inside its transaction.
    blocker = engine.mysql["default"].new_connection()
    blocker.begin()
    with blocker.cursor() as cursor:
        cursor.execute(
            "INSERT INTO counter (id, name, value) VALUES (%s, 'held', 0)", (batches[4][0],)
        )
    held: dict[str, Joint] = {}
    thread = threading.Thread(target=lambda: held.setdefault("j", _joint(engine, first, conn)))
    thread.start()
    try:
        _wait_for_lock_wait(engine)
        # A second process (its own drains, nothing known): the counters are busy, the notes
        # are not locked by the waiting transaction and are applied now.
        second = [Drain(parts, "counters"), Drain(parts, "notes")]
        other = second[0].connect()
        try:
            joint = _joint(engine, second, other)
        finally:
            second[0].pool.release(other)
        assert joint.busy == ["counters"]
        assert set(joint.applied) == {"notes"}
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(timeout=30)
        first[0].pool.release(conn)
    assert set(held["j"].applied) == {"counters"}
    consume_async_flush_events(engine, False)
    assert scalar(engine, "SELECT COUNT(*) FROM counter") == 51
    assert scalar(engine, "SELECT COUNT(*) FROM note") == 51


def _wait_for_lock_wait(engine: Any) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = scalar(
            engine,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE INFO LIKE 'INSERT INTO `counter`%%' AND STATE LIKE '%%update%%'",
        )
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the joint step's INSERT never waited on the held row")


def test_a_large_backlog_counts_for_what_one_transaction_takes_of_it(make_engine: Any) -> None:
    """At most ``max_batches_per_transaction`` of a group's batches go in one transaction: a
    backlog larger than that counts for that much, and the other groups are locked (and
    applied) with it. (A group stuck at its head, its batches waiting for a deploy, would
    otherwise be locked alone in every turn, and the other groups never tried.)"""
    engine = make_engine(
        Counter,
        Note,
        async_flush=AsyncFlushSettings(
            max_operations_per_transaction=_OPS, max_batches_per_transaction=2
        ),
    )
    ctx = engine.new_context()
    ctx.new_entity(Counter, name="first")
    ctx.new_entity(Note, text="first")
    ctx.flush_async()
    consume_async_flush_events(engine, False)
    for b in range(10):  # 50 counters in batches of five: far more than one transaction
        ctx = engine.new_context()
        for i in range(5):
            ctx.new_entity(Counter, name=f"c{b}.{i}")
        if b < 6:
            ctx.new_entity(Note, text=f"n{b}")
        ctx.flush_async()
    drains = [Drain(engine.async_parts, "counters"), Drain(engine.async_parts, "notes")]
    conn = drains[0].connect()
    try:
        for _ in range(3):  # two batches of each group per transaction
            joint = _joint(engine, drains, conn)
            assert set(joint.applied) == {"counters", "notes"}, joint
    finally:
        drains[0].pool.release(conn)
    assert scalar(engine, "SELECT COUNT(*) FROM note") == 1 + 6
