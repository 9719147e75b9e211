"""Cache control: drop rows from every cache, and compare the cache with MySQL.

``clear_cache`` is for changes made behind the ORM's back (a dead letter's cause fixed in SQL,
a migration): it drops the rows' entity keys (rows, tombstones and "missing" markers), the
unique-index keys of their values (as cached and as in MySQL), their entries in cached
reference and all-ids lists, and the rows in every process's local cache. Pending markers stay:
they protect batches still queued; so do the unique-index keys of a row with a batch queued
(its claims are decided; MySQL does not know them yet), and the tombstone of a queued delete.

``verify_cache`` reads both sides and returns what differs. Rows with a batch pending are
skipped (MySQL lags the cache by design until the worker applied it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beeorm_celery.cache import decode_row
from beeorm_celery.columns import InvalidValue
from beeorm_celery.keys import COMPLETE_FIELD, STALE, TOMBSTONE
from beeorm_celery.query import ids_in
from beeorm_celery.reads import row_values
from beeorm_celery.sql import select_sql

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine
    from beeorm_celery.schema import EntitySchema

_CHUNK = 500


@dataclass(frozen=True)
class CacheMismatch:
    """One way a cached row disagrees with MySQL.

    ``kind``: ``"row"`` (cached values differ), ``"deleted"`` (the cache says deleted, MySQL
    has the row), ``"ghost"`` (the cache has a row MySQL lacks), ``"unique:<index>"`` (the
    index key points elsewhere). ``cached`` / ``mysql``: the differing values.
    """

    entity: str
    id: int
    kind: str
    cached: Any
    mysql: Any

    def __str__(self) -> str:
        where = f"{self.entity}(id={self.id}) {self.kind}"
        return f"{where}: cache {self.cached!r}, MySQL {self.mysql!r}"


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def _mysql_rows(engine: Engine, schema: EntitySchema, ids: list[int]) -> dict[int, dict[str, Any]]:
    pool = engine.mysql[schema.options.mysql_pool]
    rows = pool.read_all(f"{select_sql(schema)} WHERE `id` IN ({ids_in(ids)})")
    return dict(row_values(schema, row) for row in rows)


def _cached_rows(engine: Engine, schema: EntitySchema, ids: list[int]) -> list[Any]:
    client = engine.redis_for(schema)
    return list(client.mget([engine.keys.entity(schema, i) for i in ids]))


def _decoded(schema: EntitySchema, raw: Any) -> dict[str, Any] | None:
    if raw is None or raw in (STALE, TOMBSTONE):
        return None
    try:
        return decode_row(schema, raw)
    except (ValueError, InvalidValue):
        return None


def clear_cache(engine: Engine, schema: EntitySchema, ids: Iterable[int]) -> int:
    """Drop the rows ``ids`` from every cache; returns how many Redis keys were touched."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    touched = 0
    if schema.options.redis_cache is not None and wanted:
        keys = engine.keys
        client = engine.redis_for(schema)
        for chunk in _chunks(wanted):
            cached = _cached_rows(engine, schema, chunk)
            pending = client.hmget(keys.pending(schema), [str(i) for i in chunk])
            in_mysql = _mysql_rows(engine, schema, chunk)
            pipe = client.pipeline(transaction=False)
            for entity_id, raw, marker in zip(chunk, cached, pending, strict=True):
                states = [s for s in (_decoded(schema, raw), in_mysql.get(entity_id)) if s]
                # A queued delete's tombstone stays: MySQL still has the row, and without the
                # tombstone an edit from an old copy would be accepted and claim values for a
                # row that is about to go.
                if not (marker is not None and raw == TOMBSTONE):
                    pipe.delete(keys.entity(schema, entity_id))
                    touched += 1
                # A batch still queued claimed its unique values in the cache, and MySQL does
                # not have them yet: dropping the claims would let another flush take them.
                for index in schema.unique_indexes.values() if marker is None else ():
                    for state in states:
                        values = [state.get(c) for c in index.columns]
                        if all(v is not None for v in values):
                            pipe.delete(keys.unique(schema, index.name, values))
                            touched += 1
                for column in schema.cached_references:
                    refs = {int(s[column.name].id) for s in states if s.get(column.name)}
                    for ref in refs:
                        key = keys.reference(schema, column.name, ref)
                        pipe.hdel(key, str(entity_id), COMPLETE_FIELD)
                        touched += 1
                if schema.options.cache_all:
                    pipe.hdel(keys.all_ids(schema), str(entity_id), COMPLETE_FIELD)
                    touched += 1
            pipe.execute()
    engine.drop_local_everywhere(schema, wanted)
    return touched


def verify_cache(
    engine: Engine, schema: EntitySchema, ids: Iterable[int] | None = None
) -> list[CacheMismatch]:
    """The rows whose cached state differs from MySQL (empty: they agree)."""
    if schema.options.redis_cache is None:
        return []
    if ids is None:
        wanted = sorted(set(_all_mysql_ids(engine, schema)) | set(_all_cached_ids(engine, schema)))
    else:
        wanted = list(dict.fromkeys(int(i) for i in ids))
    found: list[CacheMismatch] = []
    client = engine.redis_for(schema)
    keys = engine.keys
    for chunk in _chunks(wanted):
        cached = _cached_rows(engine, schema, chunk)
        pending = client.hmget(keys.pending(schema), [str(i) for i in chunk])
        in_mysql = _mysql_rows(engine, schema, chunk)
        # (id, index, values, key, whether MySQL's row holds the key)
        unique_checks: list[tuple[int, str, list[Any], str, bool]] = []
        for entity_id, raw, marker in zip(chunk, cached, pending, strict=True):
            if marker is not None:
                continue  # a batch for this row is still queued
            row = in_mysql.get(entity_id)
            found.extend(_compare_row(schema, entity_id, raw, row))
            cached_row = _decoded(schema, raw)
            for index in schema.unique_indexes.values():
                mysql_key = None
                if row is not None:
                    values = [row.get(c) for c in index.columns]
                    if all(v is not None for v in values):
                        mysql_key = keys.unique(schema, index.name, values)
                        unique_checks.append((entity_id, index.name, values, mysql_key, True))
                if cached_row is not None:
                    values = [cached_row.get(c) for c in index.columns]
                    if all(v is not None for v in values):
                        key = keys.unique(schema, index.name, values)
                        if key != mysql_key:
                            unique_checks.append((entity_id, index.name, values, key, False))
        if unique_checks:
            held = client.mget([check[3] for check in unique_checks])
            for (entity_id, index_name, values, _, holds), raw in zip(
                unique_checks, held, strict=True
            ):
                found.extend(_compare_unique(schema, entity_id, index_name, values, holds, raw))
    return found


def _compare_unique(
    schema: EntitySchema, entity_id: int, index: str, values: list[Any], holds: bool, raw: Any
) -> list[CacheMismatch]:
    """A unique key of a row's value: MySQL's value should point at the row (or be unknown);
    a value only the cache gives the row should not."""
    mine = raw == str(entity_id).encode()
    if raw is None or raw == STALE or mine == holds:
        return []
    if holds:
        cached = "free" if raw == TOMBSTONE else f"held by id {int(raw)}"
        return [CacheMismatch(schema.name, entity_id, f"unique:{index}", cached, f"{values!r}")]
    return [
        CacheMismatch(schema.name, entity_id, f"unique:{index}", f"{values!r}", "another value")
    ]


def _compare_row(
    schema: EntitySchema, entity_id: int, raw: Any, row: dict[str, Any] | None
) -> list[CacheMismatch]:
    if raw is None or raw == STALE:
        return []  # not cached: the next read loads MySQL
    if raw == TOMBSTONE:
        if row is None:
            return []
        return [CacheMismatch(schema.name, entity_id, "deleted", "deleted", "exists")]
    cached = _decoded(schema, raw)
    if row is None:
        return [CacheMismatch(schema.name, entity_id, "ghost", cached or raw, None)]
    if cached is None:
        return [CacheMismatch(schema.name, entity_id, "row", raw, row)]
    differing = [name for name, value in row.items() if cached.get(name) != value]
    if not differing:
        return []
    return [
        CacheMismatch(
            schema.name,
            entity_id,
            "row",
            {n: cached.get(n) for n in differing},
            {n: row[n] for n in differing},
        )
    ]


def _all_mysql_ids(engine: Engine, schema: EntitySchema) -> list[int]:
    pool = engine.mysql[schema.options.mysql_pool]
    return [int(r[0]) for r in pool.read_all(f"SELECT `id` FROM `{schema.table}`")]


def _all_cached_ids(engine: Engine, schema: EntitySchema) -> list[int]:
    """Ids with an entity key in Redis (SCAN: a maintenance tool's cost, not a read path's)."""
    prefix = engine.keys.entity_prefix(schema)
    client = engine.redis_for(schema)
    found: list[int] = []
    for key in client.scan_iter(match=prefix.replace("[", "\\[") + "*", count=1000):
        tail = key.decode().rsplit(":", 1)[-1]
        if tail.isdigit():
            found.append(int(tail))
    return found
