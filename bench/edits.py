"""Edits: a queued backlog of UPDATEs drained by ``celery worker -c 2``, against raw PyMySQL.

Inserts merge into multi-row INSERTs; an edit is one UPDATE by primary key per row, so what an
edit costs is mostly the round trip that carries it. The rows exist first (``flush()``, not
timed). Flushes of 100 edits over 4 groups are queued with no worker running; then a worker
starts and drains them (``edits_drain_per_s``, and its CPU per edit). The baseline sends the
same kind of UPDATE by primary key from one PyMySQL connection, 100 per transaction, one
statement per round trip, as ``executemany`` does for an UPDATE (``raw_updates_per_s``).
"""

from __future__ import annotations

import time
from typing import Any

from bench import models
from bench.baselines import raw_insert_sql
from bench.harness import Harness, frozen_heap, stopped_after, timed_drain
from bench.quiet import wait_for_quiet_mysql
from bench.stats import per_s

_GROUPS = 4
_FLUSH_SIZE = 100
_WORKERS = 2
_PER_TRANSACTION = 100
_NEW_STOCK = 1_000_000  # above every stock the rows are made with (models.row_values)


def drain(harness: Harness, rows: int, edits: int) -> dict[str, Any]:
    """``edits`` edits of ``rows`` rows (spread over the groups), queued, then drained."""
    engine = harness.require_engine()
    entities = models.ROWS[:_GROUPS]
    harness.reset_rows(entities)
    harness.refresh_lock()
    made: list[list[Any]] = []
    per_group = rows // _GROUPS
    for n, entity in enumerate(entities):
        ctx = engine.new_context()
        made.append(
            [
                ctx.new_entity(entity, **models.row_values(n * per_group + i))
                for i in range(per_group)
            ]
        )
        ctx.flush()
    base = harness.applied_operations()
    for n, first in enumerate(range(0, edits, _FLUSH_SIZE)):
        group_rows = made[n % _GROUPS]
        ctx = engine.new_context()
        for i in range(first, min(first + _FLUSH_SIZE, edits)):
            ctx.edit(group_rows[i % per_group]).stock = _NEW_STOCK + i  # always a change
        ctx.flush_async()
    wait_for_quiet_mysql()
    harness.refresh_lock()
    groups = [models.group_name(n) for n in range(_GROUPS)]
    worker = harness.start_worker(groups, _WORKERS, label=f"edits-{edits}", wait=False)
    with stopped_after(worker):
        worker.wait_ready()
        drain_s, drain_cpu = timed_drain(
            harness,
            worker,
            base + edits,
            timeout_s=120 + edits / 200,
            what=f"a backlog of {edits} edits to drain",
        )
    return {
        "rows": rows,
        "edits": edits,
        "drain_s": drain_s,
        "edits_per_s": per_s(edits, drain_s),
        "worker_cpu_us_per_edit": drain_cpu * 1e6 / edits,
    }


def raw_updates(harness: Harness, rows: int, edits: int) -> dict[str, Any]:
    """The baseline: UPDATE by primary key, ``executemany`` of 100 per transaction."""
    conn = harness.connect(autocommit=False)
    insert = raw_insert_sql(models.RAW_TABLE)
    update = f"UPDATE `{models.RAW_TABLE}` SET `stock` = %s WHERE `id` = %s"
    first_id = 10**12
    changes = [(_NEW_STOCK + i, first_id + i % rows) for i in range(edits)]
    try:
        with conn.cursor() as cursor, frozen_heap():
            cursor.execute(f"TRUNCATE TABLE `{models.RAW_TABLE}`")
            for start in range(0, rows, 1000):
                cursor.executemany(
                    insert, [models.sql_row(first_id + i, i) for i in range(start, start + 1000)]
                )
            conn.commit()
            wait_for_quiet_mysql()
            cpu = time.process_time()
            started = time.perf_counter()
            for start in range(0, edits, _PER_TRANSACTION):
                cursor.executemany(update, changes[start : start + _PER_TRANSACTION])
                conn.commit()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            cursor.execute(f"TRUNCATE TABLE `{models.RAW_TABLE}`")
            conn.commit()
    finally:
        conn.close()
    return {
        "edits": edits,
        "seconds": elapsed,
        "edits_per_s": per_s(edits, elapsed),
        "client_cpu_us_per_edit": cpu * 1e6 / edits,
    }
