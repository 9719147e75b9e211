"""Worker memory: the peak RSS of ``celery worker -c 2`` while it drains a backlog.

The backlog is queued with no worker running (flushes of 100 over 4 groups), then a worker
starts and drains it while its RSS (main process plus pool processes, summed) is sampled every
100 ms. Run at two backlog sizes: a worker that reads the log a bounded chunk at a time has the
same peak at both.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import models
from bench.harness import Harness, stopped_after, timed_drain
from bench.quiet import wait_for_quiet_mysql
from bench.stats import per_s
from bench.workers import RssSampler

_MB = 1024 * 1024
_GROUPS = 4
_FLUSH_SIZE = 100
_WORKERS = 2


@dataclass(frozen=True)
class Drain:
    backlog_rows: int
    peak_rss_mb: float
    ready_rss_mb: float  # when the worker reported ready, as it starts on the backlog
    drain_s: float  # worker ready -> last row in MySQL
    drain_rows_per_s: float
    worker_cpu_us_per_row: float  # while draining, no producer running
    produce_s: float  # queuing the backlog (no worker running)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(harness: Harness, backlog_rows: int) -> Drain:
    engine = harness.require_engine()
    entities = models.ROWS[:_GROUPS]
    harness.reset_rows(entities)
    harness.refresh_lock()
    base = harness.applied_operations()
    start = time.perf_counter()
    # Made and flushed one context at a time: a million entities held at once would cost the
    # bench gigabytes for nothing (this part is not timed as throughput).
    for n, first in enumerate(range(0, backlog_rows, _FLUSH_SIZE)):
        ctx = engine.new_context()
        entity = entities[n % _GROUPS]
        for i in range(first, min(first + _FLUSH_SIZE, backlog_rows)):
            ctx.new_entity(entity, **models.row_values(i))
        ctx.flush_async()
    produce_s = time.perf_counter() - start
    wait_for_quiet_mysql()
    harness.refresh_lock()
    groups = [models.group_name(n) for n in range(_GROUPS)]
    worker = harness.start_worker(groups, _WORKERS, label=f"memory-{backlog_rows}", wait=False)
    with stopped_after(worker), RssSampler(worker) as sampler:
        worker.wait_ready()
        ready_rss = worker.rss_bytes()
        drain_s, drain_cpu = timed_drain(
            harness,
            worker,
            base + backlog_rows,
            timeout_s=120 + backlog_rows / 500,
            what=f"a backlog of {backlog_rows} rows to drain",
        )
    return Drain(
        backlog_rows=backlog_rows,
        peak_rss_mb=sampler.peak_bytes / _MB,
        ready_rss_mb=ready_rss / _MB,
        drain_s=drain_s,
        drain_rows_per_s=per_s(backlog_rows, drain_s),
        worker_cpu_us_per_row=drain_cpu * 1e6 / backlog_rows,
        produce_s=produce_s,
    )
