"""The producer side of ``flush_async``: queue batches, write caches, wake a worker.

Steady state is one Redis round trip: one MULTI/EXEC per Redis pool carrying, for every group
of the flush, the log append, the epoch and the trigger flag, plus every cache write and the
local-cache invalidation that live in that pool. A Celery task is published only for a group
whose trigger flag this flush created.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from beeorm_celery.asyncflush.batch import Batch, encode_entry
from beeorm_celery.asyncflush.log import log_client
from beeorm_celery.cache import CacheWrites
from beeorm_celery.flush import update_local_caches
from beeorm_celery.operations import Operation

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

logger = logging.getLogger(__name__)


class TriggerPublisher(Protocol):
    """Wakes a worker for a group (the Celery adapter publishes a task)."""

    def publish(self, group: str, batch_id: str, summary: str) -> None: ...


def batches_of(ops: Sequence[Operation], created_at_ms: int) -> list[Batch]:
    by_group: dict[str, list[Operation]] = {}
    for op in ops:
        by_group.setdefault(op.schema.options.async_group, []).append(op)
    return [Batch(group, group_ops, created_at_ms) for group, group_ops in by_group.items()]


def flush_async(engine: Engine, ops: Sequence[Operation]) -> list[Batch]:
    """Queue ``ops`` (already validated); returns the queued batches with their ids."""
    log_pool = engine.async_redis_pool
    client = log_client(engine)
    keys = engine.keys
    settings = engine.async_settings
    secret = settings.secret_bytes
    trigger_ttl_ms = int(settings.trigger_ttl_s * 1000)
    batches = batches_of(ops, int(time.time() * 1000))

    pipe = client.pipeline(transaction=True)
    for batch in batches:
        pipe.xadd(keys.log(batch.group), encode_entry(batch, secret))  # type: ignore[arg-type]
        pipe.set(keys.epoch(batch.group), uuid.uuid4().hex, nx=True)
        pipe.set(keys.trigger(batch.group), b"1", nx=True, px=trigger_ttl_ms)
    other_pools: dict[str, list[Operation]] = {}
    local_writes = CacheWrites(keys, engine.tombstone_ttl_s)
    for op in ops:
        pool = op.schema.options.redis_cache
        if pool == log_pool:
            local_writes.add(op)
        elif pool is not None:
            other_pools.setdefault(pool, []).append(op)
    local_writes.emit(pipe)
    message = engine.invalidation_message(ops)
    if message is not None:
        if engine.invalidation_pool == log_pool:
            pipe.publish(keys.invalidation_channel, message)
        else:
            other_pools.setdefault(engine.invalidation_pool, [])
    results = pipe.execute()

    # The log is written: from here on the SQL will land. Other pools' caches follow.
    for pool, pool_ops in other_pools.items():
        other = engine.redis(pool).pipeline(transaction=True)
        writes = CacheWrites(keys, engine.tombstone_ttl_s)
        for op in pool_ops:
            writes.add(op)
        writes.emit(other)
        if message is not None and pool == engine.invalidation_pool:
            other.publish(keys.invalidation_channel, message)
        other.execute()
    update_local_caches(engine, ops)

    queued: list[Batch] = []
    for n, batch in enumerate(batches):
        raw_id = results[n * 3]
        batch_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        queued_batch = Batch(batch.group, batch.operations, batch.created_at_ms, None, batch_id)
        queued.append(queued_batch)
        trigger_created = bool(results[n * 3 + 2])
        if trigger_created and engine.trigger_publisher is not None:
            _publish(engine, queued_batch)
    return queued


def _publish(engine: Engine, batch: Batch) -> None:
    assert engine.trigger_publisher is not None and batch.id is not None
    try:
        engine.trigger_publisher.publish(batch.group, batch.id, batch.summary())
    except Exception:
        # The batch is safe in the log. Drop the flag so the next flush publishes again; the
        # periodic sweep of a running worker picks the batch up in any case.
        logger.exception("could not publish the apply task for group %r", batch.group)
        try:
            log_client(engine).delete(engine.keys.trigger(batch.group))
        except Exception:
            logger.exception("could not reset the trigger flag of group %r", batch.group)
