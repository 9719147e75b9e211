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
``bo:{product}:p``                     hash        id -> last queued batch id touching the row
``bo:{product}:id``                    string      id counter (INCRBY)
``bo:invalidate``                      channel     local-cache invalidations (pub/sub)
``bo:{g:catalog}:log``                 stream      pending batches, oldest first
``bo:{g:catalog}:epoch``               string      identity of this log (detects a lost log)
``bo:{g:catalog}:trigger``             string      set while a task is on its way or running
``bo:{g:catalog}:dead``                hash        batch id -> dead letter (JSON)
``bo:{g:catalog}:dead:at``             zset        batch id scored by failure time
``bo:{g:catalog}:dead:replayed:<id>``  string      a replayed dead letter, for its history
``bo:{g:catalog}:fail``                hash        head batch's failure record (attempts...)
``bo:{g:catalog}:holds``               hash        cause -> time its wait ran out (schema lag...)
``bo:{g:catalog}:counters``            hash        running totals for metrics (retries)
=====================================  ==========  ==========================================

``<layout>`` is a hash of the table's columns: a schema change starts a fresh entity cache.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beeorm_celery.schema import EntitySchema

TOMBSTONE = b"-"
# Left where the applier dropped a key (dead letter, replay): reads treat it as a miss and go to
# MySQL, and their SET NX cannot replace it, so a reader whose SELECT ran before the COMMIT cannot
# put the old state back. It expires after STALE_TTL_S, long after any such reader finished.
STALE = b"?"
STALE_TTL_S = 10
COMPLETE_FIELD = b"_complete"


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.invalidation_channel = f"{prefix}:invalidate"

    # --- entity caches

    def entity(self, schema: EntitySchema, entity_id: int) -> str:
        return self.entity_prefix(schema) + str(entity_id)

    def entity_prefix(self, schema: EntitySchema) -> str:
        """An entity key without its id: Lua scripts append the ids themselves."""
        return f"{self.prefix}:{{{schema.table}}}:e:{schema.layout_hash}:"

    def unique(self, schema: EntitySchema, index: str, values: Sequence[Any]) -> str:
        digest = hashlib.sha1(
            json.dumps([_plain(v) for v in values], separators=(",", ":")).encode()
        ).hexdigest()[:24]
        return f"{self.prefix}:{{{schema.table}}}:u:{index}:{digest}"

    def reference(self, schema: EntitySchema, field: str, ref_id: int) -> str:
        return f"{self.prefix}:{{{schema.table}}}:r:{field}:{ref_id}"

    def pending(self, schema: EntitySchema) -> str:
        """The table's pending markers: row id -> the batch id that last touched the row, set
        by flush_async, dropped by the worker once that batch is applied. While a row has one a
        reader may not fill it from MySQL (MySQL lags the cache), see ``cache_patch``."""
        return f"{self.prefix}:{{{schema.table}}}:p"

    def all_ids(self, schema: EntitySchema) -> str:
        return f"{self.prefix}:{{{schema.table}}}:all"

    def id_counter(self, schema: EntitySchema) -> str:
        return f"{self.prefix}:{{{schema.table}}}:id"

    def id_ceiling(self, schema: EntitySchema) -> str:
        """The most ``id_counter`` may reach before MySQL records more (see id_reserve)."""
        return f"{self.prefix}:{{{schema.table}}}:id:ceiling"

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

    def dead_replayed(self, group: str, batch_id: str) -> str:
        return self.group(group, f"dead:replayed:{batch_id}")

    def head_failure(self, group: str) -> str:
        return self.group(group, "fail")

    def expired_holds(self, group: str) -> str:
        return self.group(group, "holds")

    def counters(self, group: str) -> str:
        return self.group(group, "counters")


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
        return collation_key(value)
    if value is None or isinstance(value, bool | int):
        return value
    return str(value)


# Tables are created utf8mb4_unicode_ci: the Unicode Collation Algorithm 4.0.0, where case and
# accents do not count, every character beyond U+FFFF equals every other one, and trailing
# spaces are ignored. A unique-index cache key must fold a string the same way, or a cached
# miss for "cafe" hides the row "Café" that MySQL would find. Folding only what that old table
# knows keeps the key from ever joining two strings MySQL tells apart (checked against
# WEIGHT_STRING for every BMP character): characters Unicode added after 3.2 keep their case.
_UCD_OLD = unicodedata.ucd_3_2_0
_BEYOND_BMP = "\U0010ffff"


def _fold_char(char: str) -> str:
    if ord(char) > 0xFFFF:
        return _BEYOND_BMP
    category = _UCD_OLD.category(char)
    if category in ("Cn", "Mn"):  # unknown to UCA 4.0.0, or a combining mark standing alone
        return char
    if 0xC0 <= ord(char) <= 0x24F or 0x1E00 <= ord(char) <= 0x1EFF:  # Latin: drop accents
        char = "".join(c for c in _UCD_OLD.normalize("NFD", char) if _UCD_OLD.category(c) != "Mn")
    folded = char.casefold()
    return char if any(_UCD_OLD.category(c) == "Cn" for c in folded) else folded


def collation_key(text: str) -> str:
    """``text`` folded: strings utf8mb4_unicode_ci tells apart never fold alike; the usual equal
    ones (case, Latin accents, ß/ss, trailing spaces, emoji) do. Some it equates stay apart
    (full-width forms, ignorable characters): for those, a cached miss of one spelling can
    hide a row stored under the other until the miss expires (tombstone TTL)."""
    return "".join(_fold_char(c) for c in text).rstrip(" ")
