"""The Redis key layout, in one place.

Every key starts with the engine's prefix (``bo`` by default) and carries a hash tag so a
Redis Cluster keeps what one operation touches in one slot: ``{table}`` for entity caches,
``{g:group}`` for an async group's log and dead letters.

=====================================  ==========  ==========================================
key                                    type        holds
=====================================  ==========  ==========================================
``bo:{product}:e:<layout>:<id>``       string      entity row as JSON, or ``-`` (tombstone)
``bo:{product}:u:<index>:<digest>``    string      id having those unique values, or ``-``
``bo:{product}:r:<field>:<ref_id>``    hash        id -> 1 (refers) / 0 (no longer), _complete
``bo:{product}:all``                   hash        id -> 1 / 0 for cache_all, _complete
``bo:{product}:id``                    string      id counter (INCRBY)
``bo:invalidate``                      channel     local-cache invalidations (pub/sub)
``bo:{g:catalog}:log``                 stream      pending batches, oldest first
``bo:{g:catalog}:epoch``               string      identity of this log (detects a lost log)
``bo:{g:catalog}:trigger``             string      set while a task is on its way or running
``bo:{g:catalog}:dead``                hash        batch id -> dead letter (JSON)
``bo:{g:catalog}:dead:at``             zset        batch id scored by failure time
``bo:{g:catalog}:fail``                hash        head batch's failure record (attempts...)
=====================================  ==========  ==========================================

``<layout>`` is a hash of the table's columns: a schema change starts a fresh entity cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beeorm_celery.schema import EntitySchema

TOMBSTONE = b"-"
COMPLETE_FIELD = b"_complete"


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.invalidation_channel = f"{prefix}:invalidate"

    # --- entity caches

    def entity(self, schema: EntitySchema, entity_id: int) -> str:
        return f"{self.prefix}:{{{schema.table}}}:e:{schema.layout_hash}:{entity_id}"

    def unique(self, schema: EntitySchema, index: str, values: Sequence[Any]) -> str:
        digest = hashlib.sha1(
            json.dumps([_plain(v) for v in values], separators=(",", ":")).encode()
        ).hexdigest()[:24]
        return f"{self.prefix}:{{{schema.table}}}:u:{index}:{digest}"

    def reference(self, schema: EntitySchema, field: str, ref_id: int) -> str:
        return f"{self.prefix}:{{{schema.table}}}:r:{field}:{ref_id}"

    def all_ids(self, schema: EntitySchema) -> str:
        return f"{self.prefix}:{{{schema.table}}}:all"

    def id_counter(self, schema: EntitySchema) -> str:
        return f"{self.prefix}:{{{schema.table}}}:id"

    # --- async groups

    def group(self, group: str, part: str) -> str:
        return f"{self.prefix}:{{g:{group}}}:{part}"

    def log(self, group: str) -> str:
        return self.group(group, "log")

    def epoch(self, group: str) -> str:
        return self.group(group, "epoch")

    def trigger(self, group: str) -> str:
        return self.group(group, "trigger")

    def dead(self, group: str) -> str:
        return self.group(group, "dead")

    def dead_index(self, group: str) -> str:
        return self.group(group, "dead:at")

    def head_failure(self, group: str) -> str:
        return self.group(group, "fail")


def _plain(value: Any) -> Any:
    """A stable JSON form of a unique-index value (so the same values give the same key)."""
    from beeorm_celery.entity import Reference

    if isinstance(value, Reference):
        return value.id
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        # MySQL's default collations compare case-insensitively: so does the cache key
        return value.casefold().rstrip(" ")
    if value is None or isinstance(value, bool | int):
        return value
    return str(value)
