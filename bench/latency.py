"""Producer latency: ``flush()`` against ``flush_async()``, beside one Redis PING.

Each round builds a context of 1 or 10 new entities (not timed), then times the flush alone.
The two modes and a PING take turns in every round, so a burst of load from elsewhere hits
them alike. A worker is applying the async batches the whole time, as in production.
"""

from __future__ import annotations

import time
from typing import Any

from bench import models
from bench.harness import Harness
from bench.stats import percentile

SIZES = (1, 10)
_WARMUP_ROUNDS = 30


def measure(harness: Harness, rounds: int) -> dict[str, Any]:
    engine = harness.require_engine()
    client = engine.redis("default")
    worker = harness.start_worker([models.LATENCY_GROUP], 2, label="latency")
    samples: dict[str, list[float]] = {}
    try:
        next_row = 0
        for size in SIZES:
            flush: list[float] = []
            flush_async: list[float] = []
            for n in range(_WARMUP_ROUNDS + rounds):
                timed = n >= _WARMUP_ROUNDS
                # alternate which mode goes first, so neither always follows the other
                order = ("sync", "async") if n % 2 else ("async", "sync")
                for mode in order:
                    ctx = engine.new_context()
                    for _ in range(size):
                        ctx.new_entity(models.LatencyRow, **models.row_values(next_row))
                        next_row += 1
                    start = time.perf_counter_ns()
                    if mode == "sync":
                        ctx.flush()
                    else:
                        ctx.flush_async()
                    elapsed_us = (time.perf_counter_ns() - start) / 1000
                    if timed:
                        (flush if mode == "sync" else flush_async).append(elapsed_us)
                start = time.perf_counter_ns()
                client.ping()
                if timed:
                    samples.setdefault("ping", []).append((time.perf_counter_ns() - start) / 1000)
            samples[f"flush_{size}"] = flush
            samples[f"flush_async_{size}"] = flush_async
    finally:
        worker.stop()
    result: dict[str, Any] = {"rounds": rounds}
    for size in SIZES:
        for mode in ("flush", "flush_async"):
            values = samples[f"{mode}_{size}"]
            result[f"{mode}_{size}_p50_us"] = percentile(values, 50)
            result[f"{mode}_{size}_p99_us"] = percentile(values, 99)
    result["redis_rtt_us"] = percentile(samples["ping"], 50)
    result["redis_rtt_p99_us"] = percentile(samples["ping"], 99)
    return result
