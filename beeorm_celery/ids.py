"""Entity ids from a Redis counter per table, under a ceiling recorded in MySQL.

The counter is only ever moved by INCRBY, and seeding uses SET NX, so two processes that seed
at the same moment agree on the start and never hand out the same id. The counter never passes
its ceiling (a second key); raising the ceiling records it in MySQL first (``id_reserve``), so
MySQL always knows the highest id that may have been handed out. Where the counter is lost
(Redis restarted without persistence, key evicted or deleted) the next allocation seeds it again
above that mark, MAX(id) in MySQL and inserts still queued in the async flush log: an id that may
still land (a block a process holds, a batch being committed) is never handed out again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from beeorm_celery.failures import reading

if TYPE_CHECKING:
    import redis

    from beeorm_celery.keys import Keys
    from beeorm_celery.schema import EntitySchema

# KEYS: counter, ceiling; ARGV: count. Returns {1, last id reserved}, {0, 0} when the counter
# must be seeded first, or {2, counter} when the ceiling must be raised first.
_RESERVE = """
local current = redis.call('GET', KEYS[1])
if not current then return {0, 0} end
local last = tonumber(current) + tonumber(ARGV[1])
if last > tonumber(redis.call('GET', KEYS[2]) or '0') then return {2, current} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[1])}
"""
# KEYS: ceiling; ARGV: a ceiling MySQL has recorded. Only ever raises it.
_RAISE_CEILING = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""
_SEED = 0
_RESERVED = 1
_AT_CEILING = 2


class IdAllocator:
    def __init__(
        self,
        keys: Keys,
        redis_for: Callable[[EntitySchema], redis.Redis],
        seed_for: Callable[[EntitySchema], int],
        block_size: int,
        record_ceiling: Callable[[EntitySchema, int], None],
        leap: int,
    ) -> None:
        self._keys = keys
        self._redis_for = redis_for
        self._seed_for = seed_for
        self._record_ceiling = record_ceiling
        self._block_size = max(1, block_size)
        self._leap = max(leap, self._block_size)
        self._blocks: dict[str, tuple[int, int]] = {}  # table -> (next id, last id of block)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def next_id(self, schema: EntitySchema) -> int:
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not reuse the parent's block
                self._blocks.clear()
                self._pid = os.getpid()
            block = self._blocks.get(schema.table)
            if block is not None and block[0] <= block[1]:
                self._blocks[schema.table] = (block[0] + 1, block[1])
                return block[0]
            # Redis and MySQL failures become BeeormError here, for every caller of next_id
            # (new_entity, and code that reserves ids itself): nothing was written.
            with reading(f"reserving an id for a new {schema.name}", schema.options.mysql_pool):
                last = self._reserve(schema, self._block_size)
            first = last - self._block_size + 1
            self._blocks[schema.table] = (first + 1, last)
            return first

    def _reserve(self, schema: EntitySchema, count: int) -> int:
        client = self._redis_for(schema)
        key = self._keys.id_counter(schema)
        ceiling = self._keys.id_ceiling(schema)
        for _ in range(5):
            status, value = client.eval(_RESERVE, 2, key, ceiling, count)
            if int(status) == _RESERVED:
                return int(value)
            if int(status) == _SEED:
                client.set(key, self._seed_for(schema), nx=True)
                continue
            # At the ceiling: MySQL records the new one before any id under it is handed out.
            target = int(value) + count + self._leap
            self._record_ceiling(schema, target)
            client.eval(_RAISE_CEILING, 1, ceiling, target)
        raise RuntimeError(f"could not reserve ids from the counter {key}")  # pragma: no cover
