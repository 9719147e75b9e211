"""Entity ids from a Redis counter per table, seeded from MySQL's MAX(id).

The counter is only ever moved by INCRBY, and seeding uses SET NX, so two processes that seed
at the same moment agree on the start and never hand out the same id. Where the counter is
lost (Redis restarted without persistence, key deleted) the next allocation seeds it again
from MAX(id) in MySQL and from inserts still queued in the async flush log.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

    from beeorm_celery.keys import Keys
    from beeorm_celery.schema import EntitySchema

# INCRBY only if the counter exists; nil tells the caller to seed it first.
_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


class IdAllocator:
    def __init__(
        self,
        keys: Keys,
        redis_for: Callable[[EntitySchema], redis.Redis],
        seed_for: Callable[[EntitySchema], int],
        block_size: int,
    ) -> None:
        self._keys = keys
        self._redis_for = redis_for
        self._seed_for = seed_for
        self._block_size = max(1, block_size)
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
            last = self._reserve(schema, self._block_size)
            first = last - self._block_size + 1
            self._blocks[schema.table] = (first + 1, last)
            return first

    def _reserve(self, schema: EntitySchema, count: int) -> int:
        client = self._redis_for(schema)
        key = self._keys.id_counter(schema)
        for _ in range(3):
            last = client.eval(_INCR_IF_EXISTS, 1, key, count)
            if last is not None:
                return int(last)
            client.set(key, self._seed_for(schema), nx=True)
        raise RuntimeError(f"could not seed the id counter {key}")  # pragma: no cover
