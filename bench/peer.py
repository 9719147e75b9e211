"""The honest peer: a hand-written write-behind, as a competent team would write it instead.

One Celery task per flush carrying the flush's rows, applied by ``executemany`` in one
transaction; ``acks_late`` (a killed worker's task runs again); Celery's default prefetch (4)
on ``celery worker -c 2``. It has no order between flushes, no exactly-once (a redelivered task
inserts its rows again), no Redis cache and no validation: every guarantee ours gives, it
leaves out, which makes it faster per row than anything that keeps them.

Measured like ours, in the same run and on the same rows: the producer turns each flush's rows
into the task's arguments and calls ``apply_async`` (timed per flush: the peer's producer
latency, as ``throughput.py`` times each of our ``flush_async()`` calls in its loop), and the
clock runs from the first ``apply_async`` until the last row is in MySQL.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import models, throughput
from bench.celery_app import PEER_QUEUE
from bench.harness import Harness, frozen_heap, stopped_after, wait_until
from bench.quiet import wait_for_quiet_mysql
from bench.stats import per_s, percentile

# Ids far above the ORM's and the raw baseline's, so no row can collide.
_FIRST_ID = 2 * 10**12
_PREFETCH = 4  # Celery's default; the peer's tasks are short, so it may fetch ahead
_POLL_S = 0.02  # COUNT(*) on the peer's table: every 20 ms, not to load MySQL much


@dataclass(frozen=True)
class Peer:
    rows: int
    flush_size: int
    workers: int
    elapsed_s: float  # first apply_async -> last row in MySQL
    produce_s: float
    rows_per_s: float
    apply_async_p50_us: float  # per flush: arguments made from the rows, then apply_async
    apply_async_p99_us: float
    worker_cpu_us_per_row: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    harness: Harness, *, rows: int, groups: int, workers: int, rounds: int
) -> dict[str, Any]:
    """Ours (the applied run, ``groups`` groups) and the peer at flushes of 100 and of 10 rows,
    ``rounds`` times, who goes first alternating: a burst of load from elsewhere then hits
    both sides alike. Per size: every run, the medians, and each round's ratio (ours/peer)."""
    found: dict[str, Any] = {}
    for size in (100, 10):
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for n in range(rounds):
            for side in ("ours", "peer") if n % 2 == 0 else ("peer", "ours"):
                if side == "ours":
                    ours.append(
                        throughput.measure(
                            harness, workers=workers, groups=groups, rows=rows, flush_size=size
                        ).as_dict()
                    )
                else:
                    theirs.append(measure(harness, rows=rows, flush_size=size).as_dict())
        found[str(size)] = {
            "ours": ours,
            "peer": theirs,
            "ours_rows_per_s": statistics.median(r["rows_per_s"] for r in ours),
            # the producer latency per flush of both, timed alike in the same kind of loop
            "ours_flush_async_p50_us": statistics.median(r["flush_async_p50_us"] for r in ours),
            "ours_flush_async_p99_us": statistics.median(r["flush_async_p99_us"] for r in ours),
            "peer_rows_per_s": statistics.median(r["rows_per_s"] for r in theirs),
            "peer_apply_async_p50_us": statistics.median(r["apply_async_p50_us"] for r in theirs),
            "peer_apply_async_p99_us": statistics.median(r["apply_async_p99_us"] for r in theirs),
            "peer_worker_cpu_us_per_row": statistics.median(
                r["worker_cpu_us_per_row"] for r in theirs
            ),
            "round_ratios": [
                round(o["rows_per_s"] / p["rows_per_s"], 3)
                for o, p in zip(ours, theirs, strict=True)
            ],
        }
    return found


def _arguments(rows: list[dict[str, Any]], first_id: int) -> list[list[Any]]:
    """What the peer's producer sends: each row as a JSON-friendly list, in column order."""
    return [
        [
            first_id + n,
            r["name"],
            str(r["price"]),
            r["stock"],
            int(r["active"]),
            r["created_at"].isoformat() if r["created_at"] is not None else None,
        ]
        for n, r in enumerate(rows)
    ]


def measure(harness: Harness, *, rows: int, flush_size: int, workers: int = 2) -> Peer:
    with harness.db().cursor() as cursor:
        cursor.execute(f"TRUNCATE TABLE `{models.PEER_TABLE}`")
    harness.refresh_lock()
    worker = harness.launcher.start(
        [PEER_QUEUE], workers, prefetch=_PREFETCH, label=f"peer-{flush_size}"
    )
    # the rows as the application holds them before a flush (made before the clock starts)
    flushes = [
        [models.row_values(i) for i in range(start, min(start + flush_size, rows))]
        for start in range(0, rows, flush_size)
    ]
    task = harness.peer_task
    latencies: list[float] = []
    with stopped_after(worker):
        _warm_up(harness, task)
        wait_for_quiet_mysql()
        with frozen_heap():
            worker_cpu = worker.cpu_seconds()
            start = time.perf_counter()
            for n, flush in enumerate(flushes):
                began = time.perf_counter_ns()
                task.apply_async(
                    args=(_arguments(flush, _FIRST_ID + n * flush_size),), queue=PEER_QUEUE
                )
                latencies.append((time.perf_counter_ns() - began) / 1000)
            produced = time.perf_counter()
            wait_until(
                lambda: harness.count(models.PEER_TABLE) >= rows + 1,
                timeout_s=60 + rows / 200,
                interval_s=_POLL_S,
                what=f"{rows} peer rows in flushes of {flush_size}",
            )
            done = time.perf_counter()
            worker_cpu = worker.cpu_seconds() - worker_cpu
    return Peer(
        rows=rows,
        flush_size=flush_size,
        workers=workers,
        elapsed_s=done - start,
        produce_s=produced - start,
        rows_per_s=per_s(rows, done - start),
        apply_async_p50_us=percentile(latencies, 50),
        apply_async_p99_us=percentile(latencies, 99),
        worker_cpu_us_per_row=worker_cpu * 1e6 / rows,
    )


def _warm_up(harness: Harness, task: Any) -> None:
    """One row applied first, so the worker's connection and imports are not timed."""
    task.apply_async(args=(_arguments([models.row_values(0)], 1),), queue=PEER_QUEUE)
    wait_until(
        lambda: harness.count(models.PEER_TABLE) >= 1,
        timeout_s=60,
        interval_s=_POLL_S,
        what="the peer's warm-up row",
    )
