"""Producer processes for cache tests: real OS processes, started together at a barrier.

Each child builds its own engine on the test's database and key prefix (as a web process
would), waits at the barrier so the producers hit Redis in the same time slots, runs one job,
and sends back what happened.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any

from beeorm_celery import DuplicateKeyError, Engine, Registry, ValidationError
from tests.support.models import ALL, Category, Product

_TIMEOUT_S = 60


def engine_for(
    mysql_url: str, redis_url: str, key_prefix: str, broker_url: str | None = None
) -> Engine:
    """With ``broker_url``, flush_async() wakes the test's Celery workers, as a web process's
    engine would."""
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(*ALL)
    engine = registry.validate()
    if broker_url is not None:
        from beeorm_celery.celery import install
        from tests.support.worker_app import build_app

        install(build_app(broker_url, key_prefix), engine, sweep=False)
    return engine


def edit_rounds(engine: Engine, ids: list[int], field: str, tag: str, rounds: int) -> Any:
    """Read each row, change ``field`` from this (soon stale) copy, flush_async; ``rounds``."""
    for n in range(rounds):
        ctx = engine.new_context()
        copies = ctx.get_by_ids(Product, ids)
        for copy in copies:
            assert copy is not None
            editable = ctx.edit(copy)
            setattr(editable, field, f"{tag}{n}" if field == "name" else n * 10 + len(tag))
        ctx.flush_async()
    return "ok"


def claim_name(engine: Engine, name: str) -> Any:
    """flush_async a new Category called ``name``: ("won", id) or ("duplicate", holder id)."""
    ctx = engine.new_context()
    category = ctx.new_entity(Category, name=name)
    try:
        ctx.flush_async()
    except DuplicateKeyError as e:
        return ("duplicate", e.holder_id, e.entity, e.index, e.value)
    return ("won", category.id)


def _child(
    job: Callable[..., Any],
    urls: tuple[str, ...],
    args: tuple[Any, ...],
    barrier: Any,
    results: Any,
    n: int,
) -> None:
    engine = engine_for(*urls)
    try:
        engine.new_context().get_by_id(Product, 1)  # connections up before the barrier
        barrier.wait(timeout=_TIMEOUT_S)
        results.put((n, "result", job(engine, *args)))
    except (DuplicateKeyError, ValidationError) as e:
        results.put((n, "error", f"{type(e).__name__}: {e}"))
    except BaseException:
        results.put((n, "crash", traceback.format_exc()))
    finally:
        engine.close()


def run_together(
    urls: tuple[str, ...], jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> list[Any]:
    """Run each (job, args) in its own process, released together; their results in order."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs))
    results = context.Queue()
    processes = [
        context.Process(target=_child, args=(job, urls, args, barrier, results, n))
        for n, (job, args) in enumerate(jobs)
    ]
    for process in processes:
        process.start()
    found: dict[int, Any] = {}
    try:
        for _ in jobs:
            n, kind, value = results.get(timeout=_TIMEOUT_S * 2)
            if kind == "crash":
                raise AssertionError(f"producer {n} crashed:\n{value}")
            found[n] = value if kind == "result" else ("error", value)
    finally:
        for process in processes:
            process.join(timeout=_TIMEOUT_S)
            if process.is_alive():
                process.kill()
    return [found[n] for n in range(len(jobs))]
