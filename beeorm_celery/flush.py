"""The synchronous flush: claim unique values, one MySQL transaction per pool, then the caches.

Before MySQL, one script per Redis pool checks what the cache knows (rows deleted, unique
values held by others: ``unique_claims``) and claims the new unique values, so ``flush()`` and
``flush_async()`` keep one index consistent; a MySQL refusal gives the claims back. After the
COMMIT the cache is patched like an async flush patches it (``cache_patch``). If that write
fails, the keys are dropped (DEL works even when Redis is out of memory) and
the error (``CacheUnavailableError``, ``written=True``) says the data IS committed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pymysql
import redis

from beeorm_celery import failures
from beeorm_celery.cache import CacheWrites, decode_row, invalidate_operation, ops_by_cache_pool
from beeorm_celery.cache_patch import (
    CACHE_SCRIPT,
    UNDO_CLAIMS_SCRIPT,
    CachePlan,
    patched_rows,
    plan_for,
)
from beeorm_celery.entity import Entity, field_values
from beeorm_celery.errors import BeeormError, CacheUnavailableError, DuplicateKeyError, FlushError
from beeorm_celery.operations import DELETE, INSERT, Operation
from beeorm_celery.reads import make_entity
from beeorm_celery.sql import statements
from beeorm_celery.unique_claims import add_claims, reference_checks, run_checked

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

logger = logging.getLogger(__name__)

_DUPLICATE_KEY = (1062, 1022, 1586)


def flush_sync(engine: Engine, ops: Sequence[Operation]) -> None:
    by_cache_pool = ops_by_cache_pool(ops)
    # Before the transaction: a Redis or MySQL failure here has written nothing.
    with failures.reading(
        "checking unique values before a flush", ops[0].schema.options.mysql_pool
    ):
        claimed = claim_before(engine, by_cache_pool, ops)
    by_pool: dict[str, list[Operation]] = {}
    for op in ops:
        by_pool.setdefault(op.schema.options.mysql_pool, []).append(op)
    committed: list[str] = []
    try:
        for pool_name, pool_ops in by_pool.items():
            _run_transaction(engine, pool_name, pool_ops, committed)
            committed.append(pool_name)
    except BeeormError as e:
        if not committed and getattr(e, "written", False) is not None:
            undo_claims(engine, claimed)
        raise
    patched: dict[str, bytes] = {}
    try:
        patched = write_redis_caches(engine, by_cache_pool, engine.invalidation_message(ops), {})
    except redis.RedisError as e:
        raise _cache_write_failed(engine, by_cache_pool, committed, e) from e
    finally:
        update_local_caches(engine, ops, patched)


def claim_before(
    engine: Engine,
    by_cache_pool: dict[str, list[Operation]],
    ops: Sequence[Operation],
    skip_pool: str | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """Check and claim in each Redis pool (but ``skip_pool``) before the flush is carried out;
    returns the claimed (key, id) pairs, to give back if it is not."""
    claimed: dict[str, list[tuple[str, str]]] = {}
    pools = set(by_cache_pool) | {
        s.options.redis_cache for s in engine.schemas if s.options.redis_cache is not None
    }
    for pool in sorted(pools - {skip_pool}):
        plan = plan_for(engine)
        for op in by_cache_pool.get(pool, []):
            add_claims(plan, op)
            if op.kind is not INSERT:
                plan.add_entity(op, 0)
        plan.add_reference_checks(reference_checks(engine.keys, ops, pool))
        if not plan:
            continue  # nothing the cache could refuse: no extra round trip
        client = engine.redis(pool)

        def check(plan_args: list[Any], client: redis.Redis = client) -> Any:
            return CACHE_SCRIPT(client, args=[0, *plan_args])

        try:
            run_checked(engine.mysql, plan, check)
        except Exception:
            undo_claims(engine, claimed)
            raise
        claimed[pool] = [(c[1], c[2]) for c in plan.claims if c[0] == "c"]
    return claimed


def undo_claims(engine: Engine, claimed: dict[str, list[tuple[str, str]]]) -> None:
    for pool, pairs in claimed.items():
        if not pairs:
            continue
        try:
            UNDO_CLAIMS_SCRIPT(
                engine.redis(pool), keys=[k for k, _ in pairs], args=[i for _, i in pairs]
            )
        except redis.RedisError:
            logger.exception("could not give back unique claims in Redis pool %r", pool)


def _run_transaction(
    engine: Engine, pool_name: str, ops: list[Operation], committed: list[str]
) -> None:
    statement = ""
    stage = "connecting for a flush"
    try:
        pool = engine.mysql[pool_name]
        with pool.connection() as conn:
            try:
                stage = "running a flush"
                limit = pool.statement_limit(conn)
                conn.begin()
                with conn.cursor() as cursor:
                    for statement, carried in statements(ops, limit):
                        matched = cursor.execute(statement)
                        first = carried[0]
                        if first.kind is not INSERT and matched == 0:
                            # The pool connects with CLIENT_FOUND_ROWS: 0 means no such row,
                            # not "nothing changed".
                            conn.rollback()
                            _drop_entity(engine, first)
                            before = f"; pools {', '.join(committed)} committed before"
                            raise FlushError(
                                f"row {first.id} of {first.table} no longer exists; nothing was "
                                f"committed in MySQL pool {pool_name!r}"
                                f"{before if committed else ''}. Statement: {statement[:300]}",
                                statement=statement,
                            )
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


def _drop_entity(engine: Engine, op: Operation) -> None:
    if op.schema.options.redis_cache is None:
        return
    with contextlib.suppress(redis.RedisError):
        engine.redis_for(op.schema).delete(engine.keys.entity(op.schema, op.id))


def cache_plan(
    engine: Engine, ops: Sequence[Operation], group_no: dict[str, int] | None
) -> CachePlan:
    """The entity-row and unique-key writes of ``ops`` (one Redis pool), claims forced: they
    were checked before (flush(): before MySQL; flush_async(): before the log append)."""
    plan = plan_for(engine)
    plan.force = True
    for op in ops:
        plan.add_entity(op, group_no[op.schema.options.async_group] if group_no else 0)
        add_claims(plan, op)
    return plan


def write_redis_caches(
    engine: Engine,
    by_pool: dict[str, list[Operation]],
    message: bytes | None,
    batch_ids: dict[str, str],
) -> dict[str, bytes]:
    """Per Redis pool one script call: row patches, unique keys, list hashes and (on the
    invalidation pool) the local-cache invalidation ``message``. ``batch_ids``: group -> id of
    the queued batch (flush_async), so the rows get their pending markers. Returns the patched
    rows of locally cached entities by key."""
    patched: dict[str, bytes] = {}
    if message is not None:
        assert engine.invalidation_pool is not None  # a message means local caches exist
        by_pool.setdefault(engine.invalidation_pool, [])
    groups = list(batch_ids)
    group_no = {g: n + 1 for n, g in enumerate(groups)} if groups else None
    for pool, pool_ops in by_pool.items():
        plan = cache_plan(engine, pool_ops, group_no)
        writes = CacheWrites()
        for op in pool_ops:
            writes.add(engine.keys, op)
        for key, fields in writes.hashes.items():
            plan.hashes.append([key, [x for pair in fields.items() for x in pair]])
        if message is not None and pool == engine.invalidation_pool:
            plan.publish = [engine.keys.invalidation_channel, message.decode()]
        args: list[Any] = [1, *(batch_ids[g] for g in groups), *plan.args()]
        result = CACHE_SCRIPT(engine.redis(pool), args=args)
        patched.update(patched_rows(result[1:]))
    return patched


def _cache_write_failed(
    engine: Engine,
    by_pool: dict[str, list[Operation]],
    committed: list[str],
    error: redis.RedisError,
) -> CacheUnavailableError:
    dropped = True
    for pool, pool_ops in by_pool.items():
        keys: set[str] = set()
        plan = cache_plan(engine, pool_ops, None)
        keys.update(plan.entity_keys())
        keys.update(c[1] for c in plan.claims)
        writes = CacheWrites()
        for op in pool_ops:
            writes.add(engine.keys, op)
        keys.update(writes.hashes)
        try:
            if keys:
                engine.redis(pool).delete(*keys)
        except redis.RedisError:
            dropped = False
            logger.exception("could not drop the cache keys of a committed flush (pool %r)", pool)
    what = (
        "their cache keys were dropped (reads load MySQL)"
        if dropped
        else "their cache keys could NOT be dropped either: clear them with "
        "engine.clear_cache() (beeorm-celery cache clear)"
    )
    return failures.redis_error(
        error,
        "updating the caches after a flush",
        True,
        f"the flush IS committed to MySQL (pools {', '.join(committed)}); {what}. "
        "Do not flush it again",
    )


def update_local_caches(
    engine: Engine, ops: Sequence[Operation], patched: dict[str, bytes]
) -> None:
    """This process's local caches after a flush; ``patched``: the rows the Redis patch made
    (by entity key) for updates. Other processes drop theirs on the invalidation message."""
    if not engine.local_caches:
        return
    for op in ops:
        if op.schema.options.local_cache is None:
            continue
        local = engine.local_cache(op.schema)
        if local is None:
            continue
        current = local.get(op.id)
        local.drop([op.id])  # a read of this process running now must not store its old copy
        if op.kind is DELETE:
            local.set(op.id, None)
        elif op.kind is INSERT:
            assert op.full is not None
            local.set(op.id, make_entity(op.schema, op.id, dict(op.full)))
        elif op.schema.options.redis_cache is not None:
            # not the caller's copy (maybe stale beside its changed columns): the patched row
            row = patched.get(engine.keys.entity(op.schema, op.id))
            if row is not None:
                local.set(op.id, make_entity(op.schema, op.id, decode_row(op.schema, row)))
            elif isinstance(current, Entity):  # Redis had no row to patch: patch ours
                values = {**field_values(current), **op.values}
                values.pop("id", None)
                local.set(op.id, make_entity(op.schema, op.id, values))
        else:
            assert op.full is not None  # no shared cache: the local cache is the only one
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
