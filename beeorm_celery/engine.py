"""``Engine``: the validated registry at run time: pools, schemas, caches, contexts."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import redis
from redis import Redis  # in the class body `redis` is the method below

from beeorm_celery import cache_patch, ddl, failures, flush, id_reserve, pending_heal
from beeorm_celery.asyncflush import position
from beeorm_celery.asyncflush.deadletters import DeadLetters
from beeorm_celery.asyncflush.log import max_queued_insert_id
from beeorm_celery.asyncflush.log_redis import LogRedisGuard
from beeorm_celery.asyncflush.parts import AsyncParts, CacheHooks
from beeorm_celery.asyncflush.stats import GroupStats, async_stats
from beeorm_celery.asyncflush.transport import WakerSlot
from beeorm_celery.defaults import DEFAULT_ID_CEILING_LEAP
from beeorm_celery.entity import Entity
from beeorm_celery.errors import ConfigError
from beeorm_celery.ids import IdAllocator
from beeorm_celery.keys import Keys
from beeorm_celery.local_cache import InvalidationListener, LocalCache
from beeorm_celery.mysql import MySQLConfig, MySQLPool
from beeorm_celery.querybuilder import Query
from beeorm_celery.redis_call import OnceCaller

if TYPE_CHECKING:
    from beeorm_celery.async_reads import QueryRunner, QueryStats
    from beeorm_celery.asyncflush.settings import AsyncFlushSettings
    from beeorm_celery.context import Context
    from beeorm_celery.operations import Operation
    from beeorm_celery.schema import EntitySchema

E = TypeVar("E", bound=Entity)


class Engine:
    """Built by ``Registry.validate()``; thread-safe; one per process is the usual setup.

    Connections open lazily, so an engine can be built at import time (a Celery app module)
    and used after ``fork()``.
    """

    def __init__(
        self,
        *,
        schemas: dict[type[Entity], EntitySchema],
        mysql: dict[str, MySQLConfig],
        redis_urls: dict[str, str],
        key_prefix: str,
        id_block_size: int,
        tombstone_ttl_s: int,
        async_settings: AsyncFlushSettings,
        async_redis_pool: str,
        query_workers: int,
        missing_ttl_s: int = 60,
    ) -> None:
        self._schemas = schemas
        self._by_table = {(s.options.mysql_pool, s.table): s for s in schemas.values()}
        # Read for every batch a worker decodes: made once (validate() checked one pool a group).
        self._async_groups = MappingProxyType(
            {s.options.async_group: s.options.mysql_pool for s in schemas.values()}
        )
        self.keys = Keys(key_prefix)
        self.mysql = {name: MySQLPool(config) for name, config in mysql.items()}
        self._redis_urls = redis_urls
        self._redis: dict[str, redis.Redis] = {}
        self._redis_lock = threading.Lock()
        self._log_once: OnceCaller | None = None  # made with the log's client
        self.tombstone_ttl_s = tombstone_ttl_s
        self.missing_ttl_s = missing_ttl_s
        self.async_settings = async_settings
        self.async_redis_pool = async_redis_pool
        self.query_workers = query_workers
        self.local_caches: dict[str, LocalCache] = {
            s.table: LocalCache(s.options.local_cache)
            for s in schemas.values()
            if s.options.local_cache is not None
        }
        self._listener: InvalidationListener | None = None
        # The Redis pool local-cache invalidations go out on (None: no local cache, none sent).
        self.invalidation_pool: str | None = None
        if self.local_caches:
            pool = "default" if "default" in redis_urls else next(iter(redis_urls))
            self.invalidation_pool = pool
            self._listener = InvalidationListener(
                self.redis(pool),
                self.keys.invalidation_channel,
                on_message=self._drop_local,
                on_reset=self._clear_local,
            )
        self.log_redis_guard: LogRedisGuard | None = None
        if async_redis_pool in redis_urls:
            self.log_redis_guard = LogRedisGuard(async_redis_pool, redis_urls[async_redis_pool])
        self.ids = IdAllocator(
            self.keys,
            self._id_redis,
            self._seed_id,
            id_block_size,
            self._record_id_ceiling,
            DEFAULT_ID_CEILING_LEAP,
        )
        # The async core's view of this engine, made once: the core never sees the Engine.
        self.async_parts = AsyncParts(
            keys=self.keys,
            settings=async_settings,
            log_pool=async_redis_pool,
            log_redis=self._log_redis,
            log_caller=self._log_caller,
            log_redis_guard=self.log_redis_guard,
            async_groups=self._async_groups,
            schema_for_table=self.schema_for_table,
            mysql=MappingProxyType(self.mysql),
            caches=CacheHooks(
                tombstone_ttl_s=tombstone_ttl_s,
                missing_ttl_s=missing_ttl_s,
                invalidation_pool=self.invalidation_pool,
                invalidation_message=self.invalidation_message,
                write_other_pools=functools.partial(flush.write_redis_caches, self),
                update_local=functools.partial(flush.update_local_caches, self),
                drop=functools.partial(flush.drop_cached, self),
                release_pending=functools.partial(cache_patch.release_pending, self),
                mark_stale=functools.partial(cache_patch.mark_stale, self),
                heal_pending=functools.partial(pending_heal.heal_pending, self),
                claim_other_pools=functools.partial(flush.claim_before, self),
                undo_claims=functools.partial(flush.undo_claims, self),
            ),
            wakers=WakerSlot(),
        )
        self._query_runner: QueryRunner | None = None
        self._query_runner_lock = threading.Lock()

    # --- lookups

    def schema(self, entity: type[Entity]) -> EntitySchema:
        schema = self._schemas.get(entity)
        if schema is None:
            raise ConfigError(
                f"{getattr(entity, '__name__', entity)} is not registered with this engine; "
                "add it with registry.register_entity(...)"
            )
        return schema

    @property
    def schemas(self) -> list[EntitySchema]:
        return list(self._schemas.values())

    def schema_for_table(self, mysql_pool: str, table: str) -> EntitySchema | None:
        return self._by_table.get((mysql_pool, table))

    def redis(self, pool: str) -> redis.Redis:
        client = self._redis.get(pool)
        if client is not None:
            return client
        url = self._redis_urls.get(pool)
        if url is None:
            raise ConfigError(
                f"Redis pool {pool!r} is not registered; call register_redis(url, pool={pool!r})"
            )
        with self._redis_lock:
            client = self._redis.get(pool)
            if client is None:
                # redis-py's connection pool notices fork() and reconnects in the child
                client = redis.Redis.from_url(
                    url, socket_connect_timeout=5, health_check_interval=30
                )
                self._redis[pool] = client
        return client

    def redis_for(self, schema: EntitySchema) -> Redis:
        assert schema.options.redis_cache is not None
        return self.redis(schema.options.redis_cache)

    def _log_redis(self) -> Redis:
        try:
            return self.redis(self.async_redis_pool)
        except ConfigError:
            raise ConfigError(
                f"the async flush keeps its logs in Redis pool {self.async_redis_pool!r}: "
                "register it (registry.register_redis(url)) or pass Registry(async_redis_pool=...)"
            ) from None

    def _log_caller(self) -> OnceCaller:
        caller = self._log_once
        if caller is None:
            client = self._log_redis()
            with self._redis_lock:
                caller = self._log_once
                if caller is None:
                    caller = self._log_once = OnceCaller(
                        client, spin_us=self.async_settings.reply_spin_us
                    )
        return caller

    def _id_redis(self, schema: EntitySchema) -> Redis:
        pool = schema.options.redis_cache or self.async_redis_pool
        if pool not in self._redis_urls:
            if not self._redis_urls:
                raise ConfigError("new ids come from a Redis counter: call register_redis(url)")
            pool = next(iter(self._redis_urls))
        return self.redis(pool)

    def _seed_id(self, schema: EntitySchema) -> int:
        """Where a lost id counter starts again: above every id that may still land."""
        highest = 0
        if self.async_redis_pool in self._redis_urls:
            # The log before MAX(id): a batch committed and trimmed meanwhile is in MAX(id).
            highest = max_queued_insert_id(self._log_redis(), self.keys, schema)
        pool = self.mysql[schema.options.mysql_pool]
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT COALESCE(MAX(`id`), 0) FROM `{schema.table}`")
            row = cur.fetchone()
        highest = max(highest, int(row[0]) if row else 0)
        return max(highest, id_reserve.recorded_ceiling(pool, schema.table))

    def _record_id_ceiling(self, schema: EntitySchema, upto: int) -> None:
        id_reserve.record_ceiling(self.mysql[schema.options.mysql_pool], schema.table, upto)

    # --- local caches

    def local_cache(self, schema: EntitySchema) -> LocalCache | None:
        """The entity's local cache, or None when off or not trustworthy right now."""
        cache = self.local_caches.get(schema.table)
        if cache is None or self._listener is None:
            return None
        self._listener.ensure_started()
        return cache if self._listener.healthy else None

    def _drop_local(self, changes: dict[str, list[int]]) -> None:
        for table, ids in changes.items():
            cache = self.local_caches.get(table)
            if cache is not None:
                cache.drop(ids)

    def _clear_local(self) -> None:
        for cache in self.local_caches.values():
            cache.clear()

    def invalidation_message(self, ops: Iterable[Operation]) -> bytes | None:
        """The pub/sub message telling other processes which locally cached rows changed."""
        if self._listener is None:
            return None
        changes: dict[str, list[int]] = {}
        for op in ops:
            if op.schema.table in self.local_caches:
                changes.setdefault(op.schema.table, []).append(op.id)
        return self._listener.encode(changes) if changes else None

    def drop_local_everywhere(self, schema: EntitySchema, ids: list[int]) -> None:
        """Drop rows from this process's local cache and, through pub/sub, every other's."""
        cache = self.local_caches.get(schema.table)
        if cache is None or self._listener is None or not ids:
            return
        cache.drop(ids)
        message = self._listener.encode({schema.table: ids})
        assert self.invalidation_pool is not None  # a listener means local caches exist
        self.redis(self.invalidation_pool).publish(self.keys.invalidation_channel, message)

    # --- cache control (beeorm_celery/cache_control.py)

    def clear_cache(self, entity: type[Entity], *ids: int) -> None:
        """Drop rows from Redis (entity, unique-index and reference entries) and from every
        process's local cache: the next read loads MySQL. For changes made behind the ORM's
        back (SQL); a batch still queued for a row keeps its pending marker."""
        from beeorm_celery.cache_control import clear_cache

        schema = self.schema(entity)
        doing = f"clear_cache({schema.name})"
        with failures.changing(doing, schema.options.mysql_pool, failures.SAFE_TO_REPEAT):
            clear_cache(self, schema, ids)

    def verify_cache(self, entity: type[Entity], ids: Iterable[int] | None = None) -> list[Any]:
        """The rows (``CacheMismatch``) whose cached state differs from MySQL; all rows when
        ``ids`` is None. Rows with a batch still queued are skipped."""
        from beeorm_celery.cache_control import verify_cache

        schema = self.schema(entity)
        with failures.reading(f"verify_cache({schema.name})", schema.options.mysql_pool):
            return list(verify_cache(self, schema, ids))

    # --- contexts and schema

    def new_context(self) -> Context:
        from beeorm_celery.context import Context

        return Context(self)

    def schema_alters(self) -> list[str]:
        """The SQL ``update_schema()`` would run, in order (empty: everything matches)."""
        statements: list[str] = []
        for pool_name, pool in self.mysql.items():
            with pool.connection() as conn:
                statements.extend(position.table_alters(conn))
                statements.extend(id_reserve.table_alters(conn))
                for schema in self._schemas.values():
                    if schema.options.mysql_pool == pool_name:
                        statements.extend(ddl.alters_for(conn, schema))
        return statements

    def update_schema(self) -> list[str]:
        """Create and alter tables to match the entities; returns what it ran."""
        ran: list[str] = []
        for pool_name, pool in self.mysql.items():
            with pool.connection() as conn:
                pending = list(position.table_alters(conn))
                pending.extend(id_reserve.table_alters(conn))
                for schema in self._schemas.values():
                    if schema.options.mysql_pool == pool_name:
                        pending.extend(ddl.alters_for(conn, schema))
                with conn.cursor() as cursor:
                    for statement in pending:
                        cursor.execute(statement)
                        ran.append(statement)
        return ran

    # --- async flush

    @property
    def async_groups(self) -> Mapping[str, str]:
        """Every async group and the MySQL pool it is applied to."""
        return self._async_groups

    @property
    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.async_parts)

    def async_stats(self) -> dict[str, GroupStats]:
        """Per async group: pending, oldest_pending_seconds, dead_letters, applied, and
        ``wake``: whether a worker is on its way or the group waits for a sweep."""
        pools = ", ".join(sorted(set(self._async_groups.values())))
        with failures.reading("async_stats()", pools):
            return async_stats(self.async_parts)

    # --- async reads

    @property
    def query_runner(self) -> QueryRunner:
        from beeorm_celery.async_reads import QueryRunner

        runner = self._query_runner
        if runner is not None:  # every async read passes here: skip the lock once it exists
            return runner
        with self._query_runner_lock:
            if self._query_runner is None:
                self._query_runner = QueryRunner(self, self.query_workers)
            return self._query_runner

    @overload
    def query(self, source: str, pool: str | None = None) -> Query[Entity]: ...
    @overload
    def query(self, source: type[E], pool: str | None = None) -> Query[E]: ...
    def query(self, source: str | type[Entity], pool: str | None = None) -> Query[Any]:
        """A query builder on a table (pool "default") or an entity's table and pool."""
        return Query.start(self, source, pool)

    def query_stats(self) -> dict[str, QueryStats]:
        """Per MySQL pool: queries, errors, timeouts, cancellations, total and average seconds."""
        return self.query_runner.stats()

    # --- lifetime

    def close(self) -> None:
        """Stop background threads and close every connection. The engine is unusable after."""
        if self._query_runner is not None:
            self._query_runner.close()
        if self._listener is not None:
            self._listener.stop()
        for pool in self.mysql.values():
            pool.close()
        if self._log_once is not None:
            self._log_once.close()
        for client in self._redis.values():
            client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
