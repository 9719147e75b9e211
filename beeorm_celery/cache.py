"""Redis entity cache: row encoding, and the commands a change writes or a dead letter undoes.

Writes never delete what they replace: a delete leaves a tombstone, a reference list keeps
``id -> 0``. So a reader that fills the cache from a stale MySQL read (SET NX / HSETNX) can
never bring back an old state; see ``keys`` for the layout and ``cache_patch`` for how a
flush patches rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from beeorm_celery.keys import COMPLETE_FIELD, STALE, STALE_TTL_S, Keys
from beeorm_celery.operations import DELETE, INSERT, UPDATE, Operation

if TYPE_CHECKING:
    from redis.client import Pipeline

    from beeorm_celery.schema import EntitySchema


def ops_by_cache_pool(ops: Sequence[Operation]) -> dict[str, list[Operation]]:
    """The operations of entities with a Redis cache, by the cache's pool."""
    by_pool: dict[str, list[Operation]] = {}
    # looked up once per run of one entity type, as a flush's operations come
    schema = None
    pool_ops: list[Operation] | None = None
    for op in ops:
        if op.schema is not schema:
            schema = op.schema
            pool = schema.options.redis_cache
            if pool is None:
                pool_ops = None
            else:
                found = by_pool.get(pool)
                pool_ops = by_pool[pool] = [] if found is None else found
        if pool_ops is not None:
            pool_ops.append(op)
    return by_pool


def encode_row(schema: EntitySchema, values: dict[str, Any]) -> bytes:
    """A row as a JSON list in column order (without id, which is in the key)."""
    return schema.row_codec.encode(values)


def encoded_row(op: Operation) -> bytes:
    """``encode_row`` of the row after ``op``, made once per operation and then reused."""
    if op.json_row is None:
        assert op.full is not None
        op.json_row = op.schema.row_codec.encode(op.full)
    return op.json_row


def decode_row(schema: EntitySchema, raw: bytes | str) -> dict[str, Any]:
    row = orjson.loads(raw)
    columns = schema.data_columns
    if not isinstance(row, list) or len(row) != len(columns):
        raise ValueError(f"cached {schema.name} row does not match its columns")
    return {
        c.name: (None if v is None else c.type.from_json(v))
        for c, v in zip(columns, row, strict=True)
    }


def _index_values(op: Operation, columns: tuple[str, ...], after: bool) -> list[Any] | None:
    """The values of an index's columns before or after ``op``; None where there is no row."""
    if after:
        if op.kind is DELETE:
            return None
        source = op.full if op.full is not None else {**op.before, **op.values}
    else:
        if op.kind is INSERT:
            return None
        source = op.before
    values = [source.get(c) for c in columns]
    return None if any(v is None for v in values) else values


def _ref_id(value: Any) -> int | None:
    return None if value is None else int(value.id)


class CacheWrites:
    """The list-hash writes of one flush for one Redis pool (reference and all-ids lists).

    Every field keeps only its last value (in operation order): one HSET per hash, whatever
    the number of operations. Entity rows and unique keys are patched and claimed by the
    flush scripts instead (``cache_patch``, ``unique_claims``).
    """

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def _hset(self, key: str, field: int, value: str) -> None:
        self.hashes.setdefault(key, {})[str(field)] = value

    def add(self, keys: Keys, op: Operation) -> None:
        """Record the list writes that make the cache show ``op``'s result."""
        schema = op.schema
        for column in schema.cached_references:
            old_ref = _ref_id(op.before.get(column.name)) if op.kind is not INSERT else None
            if op.kind is DELETE:
                new_ref = None
            elif op.full is not None:
                new_ref = _ref_id(op.full.get(column.name))
            else:
                new_ref = _ref_id(op.values.get(column.name, op.before.get(column.name)))
            if op.kind is UPDATE and old_ref == new_ref:
                continue
            if old_ref is not None:
                self._hset(keys.reference(schema, column.name, old_ref), op.id, "0")
            if new_ref is not None:
                self._hset(keys.reference(schema, column.name, new_ref), op.id, "1")
        if schema.options.cache_all and op.kind is not UPDATE:
            self._hset(keys.all_ids(schema), op.id, "0" if op.kind is DELETE else "1")

    def emit(self, pipe: Pipeline) -> None:
        for key, fields in self.hashes.items():
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]


def invalidate_operation(pipe: Pipeline, keys: Keys, op: Operation) -> None:
    """Queue on ``pipe`` the writes that make reads of ``op``'s rows fall back to MySQL."""
    schema = op.schema
    if schema.options.redis_cache is None:
        return
    pipe.set(keys.entity(schema, op.id), STALE, ex=STALE_TTL_S)
    for index in schema.unique_indexes.values():
        for after in (False, True):
            values = _index_values(op, index.columns, after=after)
            if values is not None:
                pipe.set(keys.unique(schema, index.name, values), STALE, ex=STALE_TTL_S)
    for column in schema.cached_references:
        refs = {_ref_id(op.before.get(column.name)), _ref_id(op.values.get(column.name))}
        for ref in refs - {None}:
            assert ref is not None
            pipe.hdel(keys.reference(schema, column.name, ref), str(op.id), COMPLETE_FIELD)
    if schema.options.cache_all:
        pipe.hdel(keys.all_ids(schema), str(op.id), COMPLETE_FIELD)
