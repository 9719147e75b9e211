"""The producer side of ``flush_async``: queue batches, write caches, wake a worker.

Steady state is one Redis command (``enqueue.py``): the batches, every cache entry in the log's
Redis pool and the local-cache invalidation, in one atomic script (refused whole when a group's
backlog is full). Caches in other Redis pools follow in one MULTI/EXEC each, after the log is
written; then a wake-up goes out for each group whose trigger flag this flush created.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis

from beeorm_celery.asyncflush import failure
from beeorm_celery.asyncflush.batch import Batch
from beeorm_celery.asyncflush.enqueue import enqueue_and_wake
from beeorm_celery.cache import CacheWrites
from beeorm_celery.flush import ops_by_cache_pool

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.parts import AsyncParts
    from beeorm_celery.operations import Operation


def batches_of(ops: Sequence[Operation], created_at_ms: int) -> list[Batch]:
    by_group: dict[str, list[Operation]] = {}
    for op in ops:
        by_group.setdefault(op.schema.options.async_group, []).append(op)
    return [Batch(group, group_ops, created_at_ms) for group, group_ops in by_group.items()]


def flush_async(parts: AsyncParts, ops: Sequence[Operation]) -> list[Batch]:
    """Queue ``ops`` (already validated); returns the queued batches with their ids."""
    guard = parts.log_redis_guard
    if guard is not None and not guard.checked:
        guard.require_safe()  # Redis was unreachable at validate(): ask now, once
    caches = parts.caches
    log_pool = parts.log_pool
    other_pools = ops_by_cache_pool(ops)
    log_writes = CacheWrites(parts.keys, caches.tombstone_ttl_s)
    for op in other_pools.pop(log_pool, []):
        log_writes.add(op)
    message = caches.invalidation_message(ops)
    # The invalidation travels in the script when it goes out on the log's pool.
    in_script = message is not None and caches.invalidation_pool == log_pool

    def other_caches() -> None:
        # The log is written: from here on the SQL will land. Other pools' caches follow.
        try:
            caches.write_other_pools(other_pools, None if in_script else message)
        except redis.RedisError as e:
            raise failure.cache_write_failed(e, list(other_pools)) from e
        caches.update_local(ops)

    return enqueue_and_wake(
        parts,
        batches_of(ops, int(time.time() * 1000)),
        uuid.uuid4().hex,
        cache_writes=log_writes,
        message=message if in_script else None,
        after_enqueue=other_caches,
    )
