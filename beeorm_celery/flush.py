"""The synchronous flush: one MySQL transaction per pool, then the caches."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pymysql
import redis

from beeorm_celery import failures
from beeorm_celery.cache import CacheWrites, invalidate_operation
from beeorm_celery.errors import BeeormError, DuplicateKeyError, FlushError
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
    committed: list[str] = []
    for pool_name, pool_ops in by_pool.items():
        _run_transaction(engine, pool_name, pool_ops, committed)
        committed.append(pool_name)
    try:
        update_caches(engine, ops)
    except redis.RedisError as e:
        raise failures.redis_error(
            e,
            "updating the caches after a flush",
            True,
            f"MySQL committed the flush (pools {', '.join(committed)}) but the Redis caches "
            "were not updated: they may serve the old rows until these entities are flushed "
            "again or their cache is cleared (beeorm-celery cache clear)",
        ) from e


def _run_transaction(
    engine: Engine, pool_name: str, ops: list[Operation], committed: list[str]
) -> None:
    statement = ""
    stage = "connecting for a flush"
    try:
        with engine.mysql[pool_name].connection() as conn:
            try:
                stage = "running a flush"
                conn.begin()
                with conn.cursor() as cursor:
                    for statement, _ in statements(ops):
                        cursor.execute(statement)
                stage = "committing a flush"
                conn.commit()
            except pymysql.MySQLError:
                with contextlib.suppress(pymysql.MySQLError):
                    conn.rollback()
                raise
    except pymysql.MySQLError as e:
        raise _flush_error(e, pool_name, stage, statement, committed) from e


def _flush_error(
    e: pymysql.MySQLError, pool_name: str, stage: str, statement: str, committed: list[str]
) -> BeeormError:
    before = f"; pools {', '.join(committed)} committed before" if committed else ""
    if failures.mysql_code(e) == 1146:
        return failures.missing_table(e, pool_name)
    if failures.is_mysql_unavailable(e):
        if stage == "committing a flush":
            return failures.mysql_unavailable(
                e,
                pool_name,
                stage,
                None,
                "the connection broke during COMMIT: the flush may or may not be committed "
                "there (read the rows to know)" + before,
            )
        return failures.mysql_unavailable(
            e, pool_name, stage, bool(committed), "nothing was committed there" + before
        )
    code = failures.mysql_code(e)
    message = e.args[1] if len(e.args) > 1 else str(e)
    error = DuplicateKeyError if code in _DUPLICATE_KEY else FlushError
    return error(
        f"MySQL pool {pool_name!r} refused the flush ({code}: {message}); "
        f"nothing was committed there{before}. Statement: {statement[:300]}",
        code=code,
        statement=statement,
    )


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
        assert engine.invalidation_pool is not None  # a message means local caches exist
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
    if not engine.local_caches:
        return
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


def drop_cached(engine: Engine, ops: Sequence[Operation]) -> None:
    """Drop what the caches hold for ``ops``' rows (their Redis keys, other processes' local
    copies, this process's): a dead-lettered or replayed batch may be cached in a state MySQL
    never had, and reads must fall back to MySQL's truth."""
    by_pool = ops_by_cache_pool(ops)
    for pool, pool_ops in by_pool.items():
        pipe = engine.redis(pool).pipeline(transaction=False)
        for op in pool_ops:
            invalidate_operation(pipe, engine.keys, op)
        pipe.execute()
    message = engine.invalidation_message(ops)
    if message is not None:
        assert engine.invalidation_pool is not None  # a message means local caches exist
        engine.redis(engine.invalidation_pool).publish(engine.keys.invalidation_channel, message)
    for op in ops:
        local = engine.local_cache(op.schema)
        if local is not None:
            local.drop([op.id])
