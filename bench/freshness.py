"""How long a row takes to reach MySQL: from ``flush_async()`` returning to the row readable.

The figure a user of write-behind cares about: how stale MySQL is behind the caches. A probe
flushes one new entity of the latency group, and from the moment ``flush_async()`` returned,
polls MySQL (a primary-key SELECT on its own connection, about one round trip per look) until
the row is there. Probes are spaced by a random 10-100 ms, so some land while the group's task
is still lingering after the previous one and some wake the group with a new task.

Two conditions, one ``celery worker -c 2`` serving the latency group and four load groups:
idle (only the probes), and under load: another process offers 20,000 rows/s in flushes of 100
over the four load groups (one flush every 5 ms) while the probes run.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from typing import Any

from bench import models
from bench.harness import BenchError, Harness, stopped_after, wait_until
from bench.quiet import wait_for_quiet_mysql
from bench.settings import BenchSettings
from bench.stats import percentile

LOAD_GROUPS = 4
LOAD_FLUSH_SIZE = 100
_SPACING_S = (0.01, 0.1)
_POLL_TIMEOUT_S = 30.0


def measure(harness: Harness, probes: int, load_rows_per_s: int) -> dict[str, Any]:
    entities = models.ROWS[:LOAD_GROUPS]
    harness.reset_rows(entities)
    harness.refresh_lock()
    groups = [models.LATENCY_GROUP] + [models.group_name(n) for n in range(LOAD_GROUPS)]
    worker = harness.start_worker(groups, 2, label="freshness")
    result: dict[str, Any] = {"probes": probes, "load_groups": LOAD_GROUPS}
    with stopped_after(worker):
        wait_for_quiet_mysql()
        idle = _probe(harness, probes)
        result["idle_p50_ms"] = percentile(idle, 50)
        result["idle_p99_ms"] = percentile(idle, 99)
        base = harness.applied_operations()
        load = _Load(harness.settings, load_rows_per_s)
        with load:
            loaded = _probe(harness, probes)
        offered = load.offered_rows()
        result["loaded_p50_ms"] = percentile(loaded, 50)
        result["loaded_p99_ms"] = percentile(loaded, 99)
        result["load_offered_rows_per_s"] = offered / load.seconds if load.seconds else 0.0
        result["load_rows"] = offered
        # the load's batches are applied before the next phase (reset_rows checks)
        wait_until(
            lambda: harness.applied_operations() >= base + offered + probes,
            timeout_s=120,
            interval_s=0.05,
            what="the load's rows applied",
        )
    return result


def _probe(harness: Harness, probes: int) -> list[float]:
    """Milliseconds from flush_async() returning to the row being readable in MySQL."""
    engine = harness.require_engine()
    rng = random.Random(12)
    samples: list[float] = []
    with harness.db().cursor() as cursor:
        for n in range(probes):
            ctx = engine.new_context()
            entity = ctx.new_entity(models.LatencyRow, **models.row_values(n))
            ctx.flush_async()
            returned = time.perf_counter()
            deadline = returned + _POLL_TIMEOUT_S
            while True:
                cursor.execute(
                    f"SELECT 1 FROM `{models.LatencyRow.__beeorm_options__.table}` WHERE id = %s",
                    (entity.id,),
                )
                if cursor.fetchone() is not None:
                    break
                if time.perf_counter() > deadline:
                    raise BenchError(f"probe row {entity.id} not in MySQL after {_POLL_TIMEOUT_S}s")
            samples.append((time.perf_counter() - returned) * 1000)
            time.sleep(rng.uniform(*_SPACING_S))
    return samples


class _Load:
    """Another process flushing ``rows_per_s`` over the load groups, until stopped."""

    def __init__(self, settings: BenchSettings, rows_per_s: int) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh process: no inherited sockets
        self._stop = context.Event()
        self._offered = context.Value("q", 0)
        self._process = context.Process(
            target=_offer_load,
            args=(settings, rows_per_s, self._stop, self._offered),
            name="bench-load",
            daemon=True,
        )
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> _Load:
        self._process.start()
        # the load runs a moment before the first probe, so the probes see it established
        time.sleep(0.5)
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._started + 0.5
        self._stop.set()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        if self._process.exitcode not in (0, None) and exc == (None, None, None):
            raise BenchError(f"the load process exited with {self._process.exitcode}")

    def offered_rows(self) -> int:
        return int(self._offered.value)


def _offer_load(settings: BenchSettings, rows_per_s: int, stop: Any, offered: Any) -> None:
    from beeorm_celery.celery import install
    from bench.celery_app import build_app, build_engine

    engine = build_engine(settings.mysql_url, settings.redis_url, settings.prefix, 100_000)
    app = build_app(settings.broker_url, settings.prefix)
    install(app, engine, sweep=False)
    entities = models.ROWS[:LOAD_GROUPS]
    interval = LOAD_FLUSH_SIZE / rows_per_s
    next_at = time.monotonic()
    n = 0
    try:
        while not stop.is_set():
            ctx = engine.new_context()
            for i in range(LOAD_FLUSH_SIZE):
                ctx.new_entity(entities[n % LOAD_GROUPS], **models.row_values(i))
            ctx.flush_async()
            n += 1
            offered.value = n * LOAD_FLUSH_SIZE
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    finally:
        engine.close()
