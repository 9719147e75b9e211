"""The query builder's cost over the same statement through ``engine.query_runner.select``.

One statement (20 rows of 3 columns from the uncached read table) three ways, in interleaved
blocks so that the machine's load hits them alike:

- ``select``: ``runner.select(sql).result()`` with the builder's own SQL (rows as tuples);
- ``prebuilt``: ``query.get_async().result()`` on a builder made once (compiled once);
- ``fresh``: the builder made from ``engine.query(...)`` on every call, then ``get()``.

The differences of the block medians are the end-to-end overheads (wall clock, and CPU time of
this process, worker threads included); they carry the noise of two thread hand-offs per query.
``build_compile_us`` and ``dicts_us`` time the builder's own Python alone (no I/O, many
repetitions): the stable part of the figure. The target is 20 us.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from beeorm_celery.querybuilder.terminals import _dicts
from bench import models
from bench.harness import BenchError, Harness

TARGET_US = 20.0
ROWS = 20


def measure(harness: Harness, quick: bool) -> dict[str, Any]:
    engine = harness.require_engine()
    entity = models.PlainItem
    _seed(harness, entity, 50)
    blocks, per_block = (10, 30) if quick else (30, 50)

    def build() -> Any:
        return (
            engine.query(entity)
            .select("id", "name", "price")
            .where("stock", ">=", 0)
            .where("active", True)
            .order_by("id")
            .limit(ROWS)
        )

    prebuilt = build()
    sql = prebuilt.sql
    runner = engine.query_runner
    rows = runner.select(sql).result()
    if len(rows) != ROWS or prebuilt.get() != [
        dict(zip(rows.columns, r, strict=True)) for r in rows
    ]:
        raise BenchError(f"the builder and select() disagree on {sql}")

    ways: dict[str, Callable[[], object]] = {
        "select": lambda: runner.select(sql).result(),
        "prebuilt": lambda: prebuilt.get_async().result(),
        "fresh": lambda: build().get(),
    }
    for way in ways.values():  # warm: connections, code paths
        for _ in range(20):
            way()
    wall: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    order = list(ways)
    for block in range(blocks):
        for name in order[block % 3 :] + order[: block % 3]:  # each goes first in turn
            way = ways[name]
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(per_block):
                way()
            wall[name].append((time.perf_counter() - started) / per_block * 1e6)
            cpu[name].append((time.process_time() - started_cpu) / per_block * 1e6)
    median = {name: statistics.median(s) for name, s in wall.items()}
    cpu_median = {name: statistics.median(s) for name, s in cpu.items()}

    build_us = _per_call_us(lambda: build()._compile(), 20_000)
    dicts_us = _per_call_us(lambda: _dicts(rows), 20_000)
    python_us = build_us + dicts_us
    return {
        "builder_select_us": round(median["select"], 1),
        "builder_prebuilt_us": round(median["prebuilt"], 1),
        "builder_fresh_us": round(median["fresh"], 1),
        "builder_overhead_prebuilt_us": round(median["prebuilt"] - median["select"], 1),
        "builder_overhead_fresh_us": round(median["fresh"] - median["select"], 1),
        "builder_select_cpu_us": round(cpu_median["select"], 1),
        "builder_overhead_prebuilt_cpu_us": round(cpu_median["prebuilt"] - cpu_median["select"], 1),
        "builder_overhead_fresh_cpu_us": round(cpu_median["fresh"] - cpu_median["select"], 1),
        "builder_build_compile_us": round(build_us, 2),
        "builder_dicts_us": round(dicts_us, 2),
        "builder_python_us": round(python_us, 2),
        "builder_python_pass": python_us <= TARGET_US,
        "builder_queries_per_way": blocks * per_block,
    }


def summary(found: dict[str, Any]) -> str:
    return (
        f"      builder: select() {found['builder_select_us']} us, prebuilt builder "
        f"{found['builder_prebuilt_us']} us, fresh builder {found['builder_fresh_us']} us "
        f"(medians of {found['builder_queries_per_way']} queries each, interleaved)\n"
        f"      CPU of this process per query: select() {found['builder_select_cpu_us']} us, "
        f"builder +{found['builder_overhead_prebuilt_cpu_us']} us prebuilt, "
        f"+{found['builder_overhead_fresh_cpu_us']} us fresh\n"
        f"      builder's own Python: build+compile {found['builder_build_compile_us']} us + "
        f"{ROWS} rows to dicts {found['builder_dicts_us']} us = {found['builder_python_us']} us "
        f"(target <= {TARGET_US:g} us: {'pass' if found['builder_python_pass'] else 'MISSED'})"
    )


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    """The best of 5 runs of ``n`` calls: the cost without the interruptions."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best


def _seed(harness: Harness, entity: type[models.RowFields], rows: int) -> None:
    engine = harness.require_engine()
    ctx = engine.new_context()
    for i in range(rows):
        ctx.new_entity(entity, **models.row_values(i))
    ctx.flush()
