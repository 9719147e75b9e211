"""The two baselines the applied throughput is compared with, measured in the same run.

physical: raw PyMySQL ``executemany`` of the same rows into a table of the same layout, 100
rows per transaction, one connection: about as fast as this machine writes such rows from
Python, with no ORM, no Redis and no Celery. The median of three runs.

naive: the write-behind one writes first: one Celery task per row, each doing one autocommit
INSERT, ``celery worker -c 2`` on the same broker. Timed from the first ``apply_async`` to the
last row in MySQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import models
from bench.celery_app import NAIVE_QUEUE
from bench.harness import BenchError, Harness, frozen_heap, stopped_after, wait_until
from bench.quiet import wait_for_quiet_mysql
from bench.stats import per_s

_INSERT = (
    f"INSERT INTO `{{table}}` ({', '.join(f'`{c}`' for c in models.COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(models.COLUMNS))})"
)
# Ids far above anything the ORM hands out in the same run, so no row can collide.
_FIRST_ID = 10**12


def raw_insert_sql(table: str) -> str:
    """The baselines' INSERT of one row of ``models.COLUMNS`` into ``table``, for executemany."""
    return _INSERT.format(table=table)


def raw_executemany(
    harness: Harness, rows: int, per_transaction: int = 100, repeats: int = 3
) -> dict[str, Any]:
    """The median of ``repeats`` runs: one short run is at the mercy of a burst of load."""
    runs = [_raw_once(harness, rows, per_transaction) for _ in range(repeats)]
    runs.sort(key=lambda r: r["rows_per_s"])
    median = runs[len(runs) // 2]
    return {
        **median,
        "repeats": repeats,
        "rows_per_s_min": runs[0]["rows_per_s"],
        "rows_per_s_max": runs[-1]["rows_per_s"],
    }


def _raw_once(harness: Harness, rows: int, per_transaction: int) -> dict[str, Any]:
    conn = harness.connect(autocommit=False)
    sql = raw_insert_sql(models.RAW_TABLE)
    data = [models.sql_row(_FIRST_ID + i, i) for i in range(rows)]
    chunks = [data[i : i + per_transaction] for i in range(0, rows, per_transaction)]
    try:
        with conn.cursor() as cursor, frozen_heap():
            cursor.execute(f"TRUNCATE TABLE `{models.RAW_TABLE}`")
            conn.commit()
            wait_for_quiet_mysql()
            cpu = time.process_time()
            start = time.perf_counter()
            for chunk in chunks:
                cursor.executemany(sql, chunk)
                conn.commit()
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
    finally:
        conn.close()
    if harness.count(models.RAW_TABLE) != rows:
        raise BenchError(f"raw executemany: expected {rows} rows in {models.RAW_TABLE}")
    return {
        "rows": rows,
        "per_transaction": per_transaction,
        "elapsed_s": elapsed,
        "rows_per_s": per_s(rows, elapsed),
        "client_cpu_us_per_row": cpu * 1e6 / rows,
    }


def naive_celery(harness: Harness, rows: int, concurrency: int = 2) -> dict[str, Any]:
    """One Celery task per row, one autocommit INSERT each."""
    task = harness.naive_task
    return naive_run(
        harness,
        rows,
        concurrency,
        lambda row: task.apply_async(args=(row,), queue=NAIVE_QUEUE),
        what="naive rows",
        prefetch=4,
    )


def naive_run(
    harness: Harness,
    rows: int,
    concurrency: int,
    publish: Callable[[list[Any]], object],
    *,
    what: str,
    prefetch: int | None = None,
) -> dict[str, Any]:
    """A naive baseline: ``publish(row)`` sends one message per row to a worker on the naive
    queue; timed from the first publish to the last row in MySQL."""
    with harness.db().cursor() as cursor:
        cursor.execute(f"TRUNCATE TABLE `{models.NAIVE_TABLE}`")
    harness.refresh_lock()
    worker = harness.launcher.start([NAIVE_QUEUE], concurrency, prefetch=prefetch, label="naive")
    # JSON-friendly arguments, made before the clock starts
    args = [
        [str(v) if not isinstance(v, int | str) else v for v in models.sql_row(_FIRST_ID + i, i)]
        for i in range(rows)
    ]
    with stopped_after(worker):
        wait_for_quiet_mysql()
        with frozen_heap():
            worker_cpu = worker.cpu_seconds()
            start = time.perf_counter()
            for row in args:
                publish(row)
            published = time.perf_counter()
            wait_until(
                lambda: harness.count(models.NAIVE_TABLE) >= rows,
                timeout_s=60 + rows / 50,
                interval_s=0.02,
                what=f"{rows} {what}",
            )
            elapsed = time.perf_counter() - start
            worker_cpu = worker.cpu_seconds() - worker_cpu
    return {
        "rows": rows,
        "workers": concurrency,
        "elapsed_s": elapsed,
        "publish_s": published - start,
        "rows_per_s": per_s(rows, elapsed),
        "worker_cpu_us_per_row": worker_cpu * 1e6 / rows,
    }
