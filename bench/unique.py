"""``flush_async()`` of 100 new entities with a unique column, cold and warm cache (issue 8).

Cold: the cache knows none of the 100 values, so the flush asks MySQL once (one ``IN`` list)
and runs its script again with the answers. Warm: the cache already knows them (a read by
unique index cached each as free, untimed), so the claim travels in the flush's own script and
MySQL is not asked. Beside them, the same flush of an entity without a unique column.
"""

from __future__ import annotations

import time
from typing import Any

from bench import models
from bench.harness import Harness
from bench.stats import percentile

BATCH = 100
_WARMUP_ROUNDS = 3


def measure(harness: Harness, rounds: int) -> dict[str, Any]:
    engine = harness.require_engine()
    worker = harness.start_worker([models.UNIQUE_GROUP], 2, label="unique")
    samples: dict[str, list[float]] = {"cold": [], "warm": [], "plain": []}
    next_row = 0
    try:
        for n in range(_WARMUP_ROUNDS + rounds):
            for mode in ("cold", "warm", "plain"):
                names = [f"u{next_row + i}" for i in range(BATCH)]
                next_row += BATCH
                if mode == "warm":
                    reader = engine.new_context()
                    for name in names:  # untimed: the cache learns the values are free
                        reader.get_by_unique_index(models.UniqueRow, "name", name)
                ctx = engine.new_context()
                entity = models.UniqueRow if mode != "plain" else models.LatencyRow
                for i, name in enumerate(names):
                    ctx.new_entity(entity, **{**models.row_values(next_row + i), "name": name})
                start = time.perf_counter_ns()
                ctx.flush_async()
                elapsed_us = (time.perf_counter_ns() - start) / 1000
                if n >= _WARMUP_ROUNDS:
                    samples[mode].append(elapsed_us)
    finally:
        worker.stop()
    result: dict[str, Any] = {"rounds": rounds, "entities": BATCH}
    for mode, values in samples.items():
        result[f"unique_{mode}_p50_us"] = percentile(values, 50)
        result[f"unique_{mode}_p99_us"] = percentile(values, 99)
    return result
