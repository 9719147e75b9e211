"""The Dramatiq row: applied throughput, drain rate and the naive baseline with Dramatiq workers.

Measured in the same run as Celery's, by the same code (``throughput.measure``,
``memory.measure``): for the length of the phase the run's engine wakes groups through a
Dramatiq RedisBroker, and the harness starts ``dramatiq bench.dramatiq_worker_app`` workers
instead of ``celery worker``. Celery's ``-c N`` (N processes) becomes ``--processes N
--threads 1``: the same number of messages in progress at once. The naive baseline sends one
actor message per row, as the Celery one sends one task per row.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq import Message

from beeorm_celery.dramatiq import broker_from_url, install
from bench import memory, throughput
from bench.baselines import naive_run
from bench.celery_app import NAIVE_QUEUE, NAIVE_TASK
from bench.dramatiq_worker_app import namespace
from bench.harness import CountingWaker, Harness
from bench.settings import Sizes
from bench.workers import WorkerLauncher


@dataclass
class DramatiqLauncher(WorkerLauncher):
    """``WorkerLauncher`` starting ``dramatiq`` workers."""

    name_prefix = "dramatiq-"
    extra_env: dict[str, str] = field(default_factory=lambda: {"BENCH_DRAMATIQ_WORKER": "1"})

    def command(
        self, name: str, queues: list[str], concurrency: int, prefetch: int | None
    ) -> list[str]:
        # prefetch: Dramatiq's default (twice the threads) for the apply and the naive actor
        return [
            sys.executable, "-m", "dramatiq", "bench.dramatiq_worker_app",
            "--processes", str(concurrency), "--threads", "1", "--queues", *queues,
        ]  # fmt: skip


@contextmanager
def dramatiq_backend(harness: Harness) -> Iterator[dramatiq.Broker]:
    """For the length of the block: flushes wake through Dramatiq, workers are Dramatiq's."""
    engine = harness.require_engine()
    wakers = engine.async_parts.wakers
    celery_publisher, celery_launcher = harness.publisher, harness.launcher
    broker = broker_from_url(
        harness.settings.broker_url, namespace=namespace(harness.settings.prefix)
    )
    launcher = DramatiqLauncher(celery_launcher.env, harness.scratch)
    wakers.detach(celery_publisher)
    try:
        install(broker, engine, sweep=False)
        dramatiq_waker = wakers.waker
        assert dramatiq_waker is not None
        wakers.detach(dramatiq_waker)
        harness.publisher = CountingWaker(dramatiq_waker)
        wakers.attach(harness.publisher)
        harness.launcher = launcher
        yield broker
    finally:
        launcher.stop_all()
        harness.launcher = celery_launcher
        if wakers.waker is not None:
            wakers.detach(wakers.waker)
        harness.publisher = celery_publisher
        wakers.attach(celery_publisher)
        broker.close()


def measure(harness: Harness, sizes: Sizes, details: dict[str, Any]) -> dict[str, Any]:
    """Applied throughput (as the ``applied`` phase), the drain of the smaller ``memory``
    backlog (the larger one would add minutes), and the naive baseline. ``details``: what
    the run measured so far; Celery's drain of the same backlog is copied next to ours."""
    celery_drains = details.get("memory") or []
    with dramatiq_backend(harness) as broker:
        applied = throughput.measure(
            harness,
            workers=sizes.workers,
            groups=sizes.groups,
            rows=sizes.applied_rows,
            flush_size=sizes.flush_size,
        ).as_dict()
        drain = memory.measure(harness, sizes.memory_backlogs[0]).as_dict()
        naive = naive_dramatiq(harness, broker, sizes.naive_rows)
    return {
        "applied": applied,
        "drain": drain,
        "naive": naive,
        "results": {
            "dramatiq_applied_rows_per_s": applied["rows_per_s"],
            "dramatiq_applied_worker_cpu_us_per_row": applied["worker_cpu_us_per_row"],
            "dramatiq_drain_rows_per_s": drain["drain_rows_per_s"],
            "celery_drain_small_rows_per_s": celery_drains[0]["drain_rows_per_s"]
            if celery_drains
            else None,
            "dramatiq_drain_worker_cpu_us_per_row": drain["worker_cpu_us_per_row"],
            "naive_dramatiq_rows_per_s": naive["rows_per_s"],
            "naive_dramatiq_worker_cpu_us_per_row": naive["worker_cpu_us_per_row"],
        },
    }


def naive_dramatiq(
    harness: Harness, broker: dramatiq.Broker, rows: int, concurrency: int = 2
) -> dict[str, Any]:
    """One actor message per row, one autocommit INSERT each: ``naive_celery``'s twin."""
    return naive_run(
        harness,
        rows,
        concurrency,
        lambda row: broker.enqueue(Message(NAIVE_QUEUE, NAIVE_TASK, (row,), {}, {})),
        what="naive rows through Dramatiq",
    )
