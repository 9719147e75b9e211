"""``AsyncParts``: everything the async core uses, handed in once by the engine that owns them.

The core (producer, drain, dead letters, stats, ``GroupWorker``) reads only these: never the
``Engine``. The engine builds one ``AsyncParts`` when it is built (``engine.async_parts``); an
adapter receives it through ``install(app, engine)`` and attaches its waker to ``wakers``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from beeorm_celery.asyncflush.log_loss import ColumnsCheck, PendingMemory
from beeorm_celery.asyncflush.settings import AsyncFlushSettings
from beeorm_celery.asyncflush.transport import WakerSlot
from beeorm_celery.keys import Keys

if TYPE_CHECKING:
    import redis

    from beeorm_celery.asyncflush.log_redis import LogRedisGuard
    from beeorm_celery.mysql import MySQLPool
    from beeorm_celery.operations import Operation
    from beeorm_celery.redis_call import OnceCaller
    from beeorm_celery.schema import EntitySchema


@dataclass
class Healed:
    """What ``CacheHooks.heal_pending`` did: ``found`` markers of applied batches (released
    unless marked again meanwhile); ``deferred`` groups, whose marker hashes were too large to
    read while they have a backlog (``pending_heal.py``): to be tried again later."""

    found: int = 0
    deferred: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class CacheHooks:
    """The engine's caches, as the async core touches them.

    The producer writes the caches in the log pool inside its Lua script (``CacheWrites``
    with ``tombstone_ttl_s``) and the invalidation message too when it goes out on that pool;
    ``write_other_pools`` (pools, message, batch id per group; returns the patched rows of
    locally cached entities) and ``update_local`` (with those rows) do the rest after the log is
    written. The drain calls ``drop`` for operations whose cached state MySQL never had (dead
    letters, replays), ``release_pending`` with (operations, id of the last batch applied of
    their group) pairs once batches are applied or dead-lettered (``cache_patch``: readers may
    fill those rows from MySQL again), and ``mark_stale`` for operations another release's
    producer cached under its own layout (``invalidate.py``).
    """

    tombstone_ttl_s: int
    missing_ttl_s: int
    invalidation_pool: str | None
    invalidation_message: Callable[[Iterable[Operation]], bytes | None]
    write_other_pools: Callable[
        [dict[str, list[Operation]], bytes | None, dict[str, str]], dict[str, bytes]
    ]
    update_local: Callable[[Sequence[Operation], dict[str, bytes]], None]
    drop: Callable[[Sequence[Operation]], None]
    release_pending: Callable[[Sequence[tuple[Sequence[Operation], str]]], None]
    # applied operations another release's producer cached: this release's entries go stale
    mark_stale: Callable[[Sequence[Operation]], None]
    # markers applied batches left behind in these groups, released (``pending_heal.py``)
    heal_pending: Callable[[Collection[str]], Healed]
    # unique claims in Redis pools other than the log's (before the log append; given back
    # if it fails): (ops by pool, all ops, the log's pool) -> claimed (key, id) by pool
    claim_other_pools: Callable[
        [dict[str, list[Operation]], Sequence[Operation], str], dict[str, list[tuple[str, str]]]
    ]
    undo_claims: Callable[[dict[str, list[tuple[str, str]]]], None]


@dataclass(frozen=True)
class AsyncParts:
    """The narrow parts of an engine the async flush core works with.

    ``async_groups`` maps each group to its MySQL pool; ``schema_for_table(pool, table)`` finds
    the registered schema a batch's operation names (None: unknown); ``log_redis()`` returns the
    client of the Redis pool holding the logs (connected lazily, safe after ``fork()``),
    ``log_caller()`` that server's ``OnceCaller`` (the flush script's lean path), and
    ``log_redis_guard`` checks that server never evicts (None: no such pool registered);
    ``wakers`` is where an adapter attaches its ``Waker``. ``pending_memory`` and
    ``applied_columns`` are this process's part of noticing a lost log (``log_loss.py``).
    """

    keys: Keys
    settings: AsyncFlushSettings
    log_pool: str
    log_redis: Callable[[], redis.Redis]
    log_caller: Callable[[], OnceCaller]
    log_redis_guard: LogRedisGuard | None
    async_groups: Mapping[str, str]
    schema_for_table: Callable[[str, str], EntitySchema | None]
    mysql: Mapping[str, MySQLPool]
    caches: CacheHooks
    wakers: WakerSlot
    pending_memory: PendingMemory = field(default_factory=PendingMemory)
    applied_columns: ColumnsCheck = field(default_factory=ColumnsCheck)
