"""Applied throughput: rows per second from the first ``flush_async()`` to the last row in MySQL.

The entities are created before the clock starts (their ids come from a reserved block); the
clock covers the flushes (validation, encoding, the Redis round trip, publishing the trigger)
and the workers applying them. "In MySQL" means the groups' applied counters, which move in
the same transaction as the rows, reached the total; a COUNT(*) afterwards checks it.

Beside the rate, the CPU time the producer (this process), the worker processes, the Redis
server and the MySQL server used per row: on a machine shared with other work the rate moves
with the load, the CPU cost much less; and on a machine of two cores all four share the cores,
so their sum is what a rate costs.
Each ``flush_async()`` of the loop is timed too: the producer latency of flushes back to back,
which the peer comparison (``peer.py``) sets beside the peer's ``apply_async``, timed alike.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import models
from bench.harness import BenchError, Harness, frozen_heap, stopped_after, wait_until
from bench.quiet import wait_for_quiet_mysql
from bench.stats import per_s, percentile

_POLL_S = 0.01
# The CPU per row of the four parties of a run, which share the machine's cores.
CPU_KEYS = (
    "producer_cpu_us_per_row",
    "worker_cpu_us_per_row",
    "redis_cpu_us_per_row",
    "mysql_cpu_us_per_row",
)
_MIN_RATE_ROWS_PER_S = 500  # slower than this is a failure, not a measurement


@dataclass(frozen=True)
class Throughput:
    workers: int
    groups: int
    rows: int
    flush_size: int
    elapsed_s: float  # first flush_async -> last row in MySQL
    produce_s: float  # first flush_async -> last flush_async returned
    rows_per_s: float
    producer_rows_per_s: float
    producer_cpu_us_per_row: float
    worker_cpu_us_per_row: float
    redis_cpu_us_per_row: float
    mysql_cpu_us_per_row: float | None  # None: the server's process is not readable here
    tasks_published: int  # apply tasks the flushes published (a group found no task waiting)
    # per flush, in the timed loop: the producer latency, measured as the peer's apply_async is
    flush_async_p50_us: float
    flush_async_p99_us: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    harness: Harness, *, workers: int, groups: int, rows: int, flush_size: int
) -> Throughput:
    entities = models.ROWS[:groups]
    group_names = [models.group_name(n) for n in range(groups)]
    harness.reset_rows(entities)
    harness.refresh_lock()
    worker = harness.start_worker(group_names, workers, label=f"applied-c{workers}-g{groups}")
    with stopped_after(worker):
        warmed = _warm_up(harness, entities)
        contexts = harness.new_contexts(entities, rows, flush_size)
        target = harness.applied_operations() + rows
        wait_for_quiet_mysql()
        with frozen_heap():
            published = harness.publisher.count
            redis_cpu, mysql_cpu = harness.server_cpu_seconds()
            worker_cpu = worker.cpu_seconds()
            producer_cpu = time.process_time()
            latencies: list[float] = []
            start = time.perf_counter()
            for ctx in contexts:
                began = time.perf_counter_ns()
                ctx.flush_async()
                latencies.append((time.perf_counter_ns() - began) / 1000)
            produced_at = time.perf_counter()
            producer_cpu = time.process_time() - producer_cpu
            published = harness.publisher.count - published
            contexts.clear()
            wait_until(
                lambda: harness.applied_operations() >= target,
                timeout_s=60 + rows / _MIN_RATE_ROWS_PER_S,
                interval_s=_POLL_S,
                what=f"{rows} rows applied by {workers} worker process(es) over {groups} group(s)",
            )
            done = time.perf_counter()
            worker_cpu = worker.cpu_seconds() - worker_cpu
            redis_after, mysql_after = harness.server_cpu_seconds()
    landed = sum(harness.count(e.__beeorm_options__.table) for e in entities) - warmed
    if landed != rows:
        raise BenchError(f"expected {rows} rows in MySQL, found {landed}")
    return Throughput(
        workers=workers,
        groups=groups,
        rows=rows,
        flush_size=flush_size,
        elapsed_s=done - start,
        produce_s=produced_at - start,
        rows_per_s=per_s(rows, done - start),
        producer_rows_per_s=per_s(rows, produced_at - start),
        producer_cpu_us_per_row=producer_cpu * 1e6 / rows,
        worker_cpu_us_per_row=worker_cpu * 1e6 / rows,
        redis_cpu_us_per_row=(redis_after - redis_cpu) * 1e6 / rows,
        mysql_cpu_us_per_row=None
        if mysql_cpu is None or mysql_after is None
        else (mysql_after - mysql_cpu) * 1e6 / rows,
        tasks_published=published,
        flush_async_p50_us=percentile(latencies, 50),
        flush_async_p99_us=percentile(latencies, 99),
    )


def _warm_up(harness: Harness, entities: tuple[type[models.RowFields], ...]) -> int:
    """One small flush per group, applied, so connections and imports are not timed."""
    base = harness.applied_operations()
    for ctx in harness.new_contexts(entities, len(entities), 1):
        ctx.flush_async()
    wait_until(
        lambda: harness.applied_operations() >= base + len(entities),
        timeout_s=60,
        interval_s=_POLL_S,
        what="the warm-up batches",
    )
    return len(entities)
