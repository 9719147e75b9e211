"""The synchronous flush: one MySQL transaction per pool, then the caches."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pymysql

from beeorm_celery.cache import CacheWrites
from beeorm_celery.errors import DuplicateKeyError, FlushError
from beeorm_celery.operations import Operation, OpKind
from beeorm_celery.reads import make_entity
from beeorm_celery.sql import statements

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

_DUPLICATE_KEY = (1062, 1022, 1586)


def flush_sync(engine: Engine, ops: Sequence[Operation]) -> None:
    by_pool: dict[str, list[Operation]] = {}
    for op in ops:
        by_pool.setdefault(op.schema.options.mysql_pool, []).append(op)
    for pool_name, pool_ops in by_pool.items():
        _run_transaction(engine, pool_name, pool_ops)
    update_caches(engine, ops)


def _run_transaction(engine: Engine, pool_name: str, ops: list[Operation]) -> None:
    with engine.mysql[pool_name].connection() as conn:
        statement = ""
        try:
            conn.begin()
            with conn.cursor() as cursor:
                for statement, _ in statements(ops):
                    cursor.execute(statement)
            conn.commit()
        except pymysql.MySQLError as e:
            with contextlib.suppress(pymysql.MySQLError):
                conn.rollback()
            code = e.args[0] if e.args and isinstance(e.args[0], int) else None
            message = e.args[1] if len(e.args) > 1 else str(e)
            error = DuplicateKeyError if code in _DUPLICATE_KEY else FlushError
            raise error(
                f"MySQL pool {pool_name!r} refused the flush ({code}: {message}); "
                f"nothing was committed there. Statement: {statement[:300]}",
                code=code,
                statement=statement,
            ) from e


def update_caches(engine: Engine, ops: Sequence[Operation]) -> None:
    """Write every change to Redis (one pipeline per pool), the local caches and pub/sub."""
    write_redis_caches(engine, ops_by_cache_pool(ops), engine.invalidation_message(ops))
    update_local_caches(engine, ops)


def ops_by_cache_pool(ops: Sequence[Operation]) -> dict[str, list[Operation]]:
    """The operations of entities with a Redis cache, by the cache's pool."""
    by_pool: dict[str, list[Operation]] = {}
    for op in ops:
        if op.schema.options.redis_cache is not None:
            by_pool.setdefault(op.schema.options.redis_cache, []).append(op)
    return by_pool


def write_redis_caches(
    engine: Engine, by_pool: dict[str, list[Operation]], message: bytes | None
) -> None:
    """One MULTI/EXEC per Redis pool with its cache writes; ``message`` (the local-cache
    invalidation) goes out on the invalidation pool."""
    if message is not None:
        by_pool.setdefault(engine.invalidation_pool, [])
    for pool, pool_ops in by_pool.items():
        pipe = engine.redis(pool).pipeline(transaction=True)
        writes = CacheWrites(engine.keys, engine.tombstone_ttl_s)
        for op in pool_ops:
            writes.add(op)
        writes.emit(pipe)
        if message is not None and pool == engine.invalidation_pool:
            pipe.publish(engine.keys.invalidation_channel, message)
        pipe.execute()


def update_local_caches(engine: Engine, ops: Sequence[Operation]) -> None:
    for op in ops:
        local = engine.local_cache(op.schema)
        if local is None:
            continue
        local.drop([op.id])  # a read of this process running now must not store its old copy
        if op.kind is OpKind.DELETE:
            local.set(op.id, None)
        else:
            assert op.full is not None
            local.set(op.id, make_entity(op.schema, op.id, dict(op.full)))
