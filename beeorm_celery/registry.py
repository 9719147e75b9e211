"""``Registry``: collects pools and entities, and ``validate()`` turns them into an ``Engine``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from beeorm_celery.asyncflush.settings import AsyncFlushSettings
from beeorm_celery.defaults import (
    DEFAULT_ID_BLOCK_SIZE,
    DEFAULT_KEY_PREFIX,
    DEFAULT_MISSING_TTL_S,
    DEFAULT_MYSQL_POOL_SIZE,
    DEFAULT_POOL,
    DEFAULT_QUERY_WORKERS,
    DEFAULT_TOMBSTONE_TTL_S,
)
from beeorm_celery.entity import Entity
from beeorm_celery.errors import ConfigError
from beeorm_celery.mysql import MySQLConfig
from beeorm_celery.schema import EntitySchema, build_schema

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine


class Registry:
    """Where an application declares its MySQL and Redis pools and its entities.

    ``key_prefix`` starts every Redis key (several apps or test runs can share one Redis).
    ``id_block_size`` ids are reserved per Redis round trip (1 = strictly in creation order).
    ``async_flush`` tunes queuing and applying (see ``AsyncFlushSettings``); ``async_redis_pool``
    names the Redis pool that holds the async flush logs and dead letters.
    ``tombstone_ttl_s`` is how long the cache remembers a delete; ``missing_ttl_s`` how long it
    remembers that a read found no row (short: a row inserted by SQL shows up after it).
    """

    def __init__(
        self,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        id_block_size: int = DEFAULT_ID_BLOCK_SIZE,
        tombstone_ttl_s: int = DEFAULT_TOMBSTONE_TTL_S,
        missing_ttl_s: int = DEFAULT_MISSING_TTL_S,
        async_flush: AsyncFlushSettings | None = None,
        async_redis_pool: str = DEFAULT_POOL,
        query_workers: int = DEFAULT_QUERY_WORKERS,
    ) -> None:
        if not key_prefix or any(c in key_prefix for c in "{} "):
            raise ConfigError(f"key_prefix {key_prefix!r} must be non-empty, without braces/spaces")
        self.key_prefix = key_prefix
        self.id_block_size = id_block_size
        self.tombstone_ttl_s = tombstone_ttl_s
        if missing_ttl_s < 1:
            raise ConfigError(f"missing_ttl_s={missing_ttl_s!r}: give at least 1 second")
        self.missing_ttl_s = missing_ttl_s
        self.async_flush = async_flush or AsyncFlushSettings()
        self.async_redis_pool = async_redis_pool
        self.query_workers = query_workers
        self._mysql: dict[str, MySQLConfig] = {}
        self._redis: dict[str, str] = {}
        self._entities: list[type[Entity]] = []

    def register_mysql(
        self, url: str, pool: str = DEFAULT_POOL, *, pool_size: int = DEFAULT_MYSQL_POOL_SIZE
    ) -> None:
        """A MySQL / MariaDB server by URL: ``mysql://user:password@host:3306/database``."""
        self._mysql[pool] = MySQLConfig.from_url(url, pool, pool_size)

    def register_redis(self, url: str, pool: str = DEFAULT_POOL) -> None:
        """A Redis server by URL: ``redis://host:6379/0`` (``rediss://`` for TLS)."""
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"Redis pool {pool!r}: URL {url!r} must look like redis://host:6379/0"
            )
        self._redis[pool] = url

    def register_entity(self, *entities: type[Entity]) -> None:
        for entity in entities:
            if not (isinstance(entity, type) and issubclass(entity, Entity)) or entity is Entity:
                raise ConfigError(f"register_entity takes Entity subclasses, got {entity!r}")
            if entity not in self._entities:
                self._entities.append(entity)

    def validate(self) -> Engine:
        """Check everything fits together and build the Engine; ConfigError says what to fix."""
        from beeorm_celery.engine import Engine

        if not self._mysql:
            raise ConfigError("no MySQL pool: call registry.register_mysql('mysql://...') first")
        namespace = {e.__name__: e for e in self._entities}
        schemas = {entity: build_schema(entity, namespace) for entity in self._entities}
        self._check(schemas)
        for entity, schema in schemas.items():
            entity.__beeorm_schema__ = schema  # lets instances check field names on assignment
        engine = Engine(
            schemas=schemas,
            mysql=dict(self._mysql),
            redis_urls=dict(self._redis),
            key_prefix=self.key_prefix,
            id_block_size=self.id_block_size,
            tombstone_ttl_s=self.tombstone_ttl_s,
            missing_ttl_s=self.missing_ttl_s,
            async_settings=self.async_flush,
            async_redis_pool=self.async_redis_pool,
            query_workers=self.query_workers,
        )
        if engine.log_redis_guard is not None:
            try:
                # Unreachable now: asked again at the first flush_async() and at worker start.
                engine.log_redis_guard.require_safe()
            except ConfigError:
                engine.close()
                raise
        return engine

    def _check(self, schemas: dict[type[Entity], EntitySchema]) -> None:
        tables: dict[tuple[str, str], str] = {}
        group_pools: dict[str, tuple[str, str]] = {}
        for entity, schema in schemas.items():
            name, opts = entity.__name__, schema.options
            if opts.mysql_pool not in self._mysql:
                raise ConfigError(
                    f"{name}: mysql_pool {opts.mysql_pool!r} is not registered; call "
                    f"registry.register_mysql(url, pool={opts.mysql_pool!r})"
                )
            if opts.redis_cache is not None and opts.redis_cache not in self._redis:
                raise ConfigError(
                    f"{name}: redis_cache pool {opts.redis_cache!r} is not registered; call "
                    f"registry.register_redis(url, pool={opts.redis_cache!r})"
                )
            if opts.local_cache is not None and not self._redis:
                raise ConfigError(
                    f"{name}: local_cache needs a Redis pool to tell other processes what "
                    "changed; call registry.register_redis(url)"
                )
            if opts.cache_all and opts.redis_cache is None:
                raise ConfigError(f"{name}: cache_all=True needs redis_cache=True")
            for column in schema.cached_references:
                if opts.redis_cache is None:
                    raise ConfigError(
                        f"{name}.{column.name}: Field(cached=True) needs redis_cache=True on {name}"
                    )
            for column in schema.references:
                target = column.type.target  # type: ignore[attr-defined]
                if target not in schemas:
                    raise ConfigError(
                        f"{name}.{column.name} refers to {target.__name__}, which is not "
                        f"registered; add registry.register_entity({target.__name__})"
                    )
            key = (opts.mysql_pool, opts.table)
            if key in tables:
                raise ConfigError(
                    f"{name} and {tables[key]} both use table {opts.table!r} in pool "
                    f"{opts.mysql_pool!r}; give one of them table='...'"
                )
            tables[key] = name
            seen = group_pools.setdefault(opts.async_group, (opts.mysql_pool, name))
            if seen[0] != opts.mysql_pool:
                raise ConfigError(
                    f"async group {opts.async_group!r} spans MySQL pools {seen[0]!r} ({seen[1]}) "
                    f"and {opts.mysql_pool!r} ({name}); a group is applied in one transaction "
                    "on one pool: give one of them another async_group"
                )
