"""Cached reads: ``ctx.get_by_id`` served by the local cache, by Redis, and by MySQL.

Three entities with the same columns, differing only in their caches, each holding the same
rows (written by ``flush()`` before the clock starts). Every read asks for another id, round
robin, one call at a time from one thread, for a fixed time.
"""

from __future__ import annotations

import time
from typing import Any

from bench import models
from bench.harness import BenchError, Harness
from bench.stats import per_s

KINDS: dict[str, type[models.RowFields]] = {
    "local": models.LocalItem,
    "redis": models.RedisItem,
    "mysql": models.PlainItem,
}
_MAX_READS = 5_000_000  # a bound on the loop; the time limit ends it long before
_CHECK_EVERY = 64


def measure(harness: Harness, seconds: float, rows: int) -> dict[str, Any]:
    engine = harness.require_engine()
    result: dict[str, Any] = {}
    for kind, entity in KINDS.items():
        ids = _seed(harness, entity, rows)
        ctx = engine.new_context()
        for entity_id in ids:  # fills the local cache; the others need no warming
            if ctx.get_by_id(entity, entity_id) is None:
                raise BenchError(f"{entity.__name__} {entity_id} is missing after flush()")
        if kind == "local" and engine.local_cache(engine.schema(entity)) is None:
            raise BenchError("the local cache is not active (no invalidation subscription?)")
        reads = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        for reads in range(1, _MAX_READS + 1):
            ctx.get_by_id(entity, ids[reads % len(ids)])
            if reads % _CHECK_EVERY == 0 and time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
        result[f"get_by_id_{kind}_ops_per_s"] = per_s(reads, elapsed)
    return result


def _seed(harness: Harness, entity: type[models.RowFields], rows: int) -> list[int]:
    engine = harness.require_engine()
    ids: list[int] = []
    for start in range(0, rows, 100):
        ctx = engine.new_context()
        for i in range(start, min(start + 100, rows)):
            ids.append(ctx.new_entity(entity, **models.row_values(i)).id)
        ctx.flush()
    return ids
