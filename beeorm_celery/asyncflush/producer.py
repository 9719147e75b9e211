"""The producer side of ``flush_async``: queue batches, write caches, wake a worker.

Steady state is one Redis command (``enqueue.py``): the batches, every cache entry in the log's
Redis pool and the local-cache invalidation, in one atomic script (refused whole when a group's
backlog is full, or when the cache refuses the flush: a unique value held by another entity, a
row or a referenced row known deleted; see ``cache_patch`` / ``unique_claims``). Caches in
other Redis pools are claimed in one script each before, and written in one each after the log
is written; then a wake-up goes out for each group whose trigger flag this flush created.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis

from beeorm_celery.asyncflush import failure
from beeorm_celery.asyncflush.batch import Batch
from beeorm_celery.asyncflush.enqueue import enqueue_and_wake
from beeorm_celery.cache import CacheWrites, ops_by_cache_pool
from beeorm_celery.cache_patch import CachePlan
from beeorm_celery.unique_claims import add_claims, reference_checks

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.parts import AsyncParts
    from beeorm_celery.operations import Operation


def batches_of(ops: Sequence[Operation], created_at_ms: int) -> list[Batch]:
    by_group: dict[str, list[Operation]] = {}
    # A flush's operations come in runs of one entity type: its group is looked up once a run.
    schema = None
    group_ops: list[Operation] = []
    for op in ops:
        if op.schema is not schema:
            schema = op.schema
            group = schema.options.async_group
            found = by_group.get(group)
            group_ops = by_group[group] = [] if found is None else found
        group_ops.append(op)
    return [Batch(group, group_ops, created_at_ms) for group, group_ops in by_group.items()]


def flush_async(parts: AsyncParts, ops: Sequence[Operation]) -> list[Batch]:
    """Queue ``ops`` (already validated); returns the queued batches with their ids.

    Raises ``DuplicateKeyError`` / ``ValidationError`` when the cache refuses the flush; then
    nothing is queued or cached.
    """
    guard = parts.log_redis_guard
    if guard is not None and not guard.checked:
        guard.require_safe()  # Redis was unreachable at validate(): ask now, once
    caches = parts.caches
    log_pool = parts.log_pool
    batches = batches_of(ops, int(time.time() * 1000))
    group_no = {batch.group: n + 1 for n, batch in enumerate(batches)}
    other_pools = ops_by_cache_pool(ops)
    plan = CachePlan(parts.keys, caches.tombstone_ttl_s, caches.missing_ttl_s)
    log_writes = CacheWrites()
    schema = None
    number, claims, lists = 0, False, False
    for op in other_pools.pop(log_pool, ()):
        if op.schema is not schema:  # once per run of one entity type
            schema = op.schema
            number = group_no[schema.options.async_group]
            claims = bool(schema.unique_indexes)
            lists = bool(schema.cached_references or schema.options.cache_all)
        plan.add_entity(op, number)
        if claims:
            add_claims(plan, op)
        if lists:
            log_writes.add(parts.keys, op)
    plan.add_reference_checks(reference_checks(parts.keys, ops, log_pool))
    message = caches.invalidation_message(ops)
    # The invalidation travels in the script when it goes out on the log's pool.
    in_script = message is not None and caches.invalidation_pool == log_pool
    # Caches in other pools cannot be claimed in the log's script: claimed just before it.
    claimed = caches.claim_other_pools(other_pools, ops, log_pool) if other_pools else {}

    written = False

    def other_caches(batch_ids: dict[str, str]) -> None:
        # The log is written: from here on the SQL will land. Other pools' caches follow.
        nonlocal written
        written = True
        if other_pools or (message is not None and not in_script):
            try:
                plan.patched.update(
                    caches.write_other_pools(other_pools, None if in_script else message, batch_ids)
                )
            except redis.RedisError as e:
                raise failure.cache_write_failed(e, list(other_pools)) from e
        caches.update_local(ops, plan.patched)

    try:
        return enqueue_and_wake(
            parts,
            batches,
            os.urandom(16).hex(),  # the epoch of a log this flush creates (log_loss.py)
            cache_writes=log_writes,
            cache_plan=plan if plan else None,
            message=message if in_script else None,
            after_enqueue=other_caches,
        )
    except Exception:
        if claimed and not written:
            caches.undo_claims(claimed)
        raise
