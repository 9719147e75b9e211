"""Reads: local cache, then Redis, then MySQL, filling the caches on the way back.

Fills never overwrite: SET NX for rows and unique keys, HSETNX for reference / all-ids lists.
Writers (flushes) overwrite. So a reader holding a stale MySQL result (a flush committed, or an
async flush queued, after the SELECT) cannot put an old state in the cache. A row with a batch
pending is never filled (``cache_patch.fill_rows``): MySQL lags until the worker applied it.
"No such row" is cached for ``missing_ttl_s`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from beeorm_celery.cache import decode_row, encode_row
from beeorm_celery.cache_patch import fill_rows
from beeorm_celery.columns import InvalidValue
from beeorm_celery.entity import Entity, Reference
from beeorm_celery.errors import ConfigError, QueryError, ValidationError
from beeorm_celery.keys import COMPLETE_FIELD, STALE, TOMBSTONE, _plain
from beeorm_celery.local_cache import is_absent
from beeorm_celery.query import Pager, Where, ids_in, where_sql
from beeorm_celery.sql import select_sql

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine
    from beeorm_celery.schema import EntitySchema

# Fill a reference / all-ids list from MySQL without overwriting what flushes wrote, and
# return the merged list (so the caller sees concurrent writes too).
_FILL_ID_LIST = """
for i = 1, #ARGV do redis.call('HSETNX', KEYS[1], ARGV[i], '1') end
redis.call('HSET', KEYS[1], '_complete', '1')
return redis.call('HGETALL', KEYS[1])
"""


def make_entity(schema: EntitySchema, entity_id: int, values: dict[str, Any]) -> Entity:
    entity = schema.entity.__new__(schema.entity)
    state = entity.__dict__
    state["id"] = entity_id
    state.update(values)
    return entity


def row_values(schema: EntitySchema, row: Sequence[Any]) -> tuple[int, dict[str, Any]]:
    """(id, values) from a row selected with ``select_sql``."""
    values = {
        c.name: (None if raw is None else c.type.from_sql(raw))
        for c, raw in zip(schema.data_columns, row[1:], strict=True)
    }
    return int(row[0]), values


def checked_id(schema: EntitySchema, value: Any) -> int:
    """``value`` as an entity id, or ValidationError (ids are whole numbers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        return int(value)  # ids from URLs and command lines arrive as text
    raise ValidationError(
        schema.name, "id", f"an id is a whole number, got {type(value).__name__} {value!r}"
    )


def uses_cache(schema: EntitySchema) -> bool:
    return schema.options.redis_cache is not None or schema.options.local_cache is not None


class Reader:
    """Every read of one Context goes through here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _query(self, schema: EntitySchema, sql: str) -> list[tuple[Any, ...]]:
        return self.engine.mysql[schema.options.mysql_pool].read_all(sql)

    # --- by id

    def get_by_id(self, schema: EntitySchema, entity_id: int) -> Entity | None:
        return self.get_by_ids(schema, [entity_id])[0]

    def get_by_ids(self, schema: EntitySchema, ids: Sequence[int]) -> list[Entity | None]:
        ids = [checked_id(schema, i) for i in ids]
        wanted = list(dict.fromkeys(ids))
        found: dict[int, Entity | None] = {}
        local = self.engine.local_cache(schema)
        generation = local.generation if local is not None else 0
        if local is not None:
            for entity_id in wanted:
                cached = local.get(entity_id)
                if not is_absent(cached):
                    found[entity_id] = cached
        missing = [i for i in wanted if i not in found]
        if missing and schema.options.redis_cache is not None:
            self._from_redis(schema, missing, found)
            if local is not None:
                for entity_id in missing:
                    if entity_id in found:
                        local.set(entity_id, found[entity_id], if_generation=generation)
            missing = [i for i in missing if i not in found]
        if missing:
            self._from_mysql(schema, missing, found)
            if local is not None:
                for entity_id in missing:
                    local.set(entity_id, found[entity_id], if_generation=generation)
        return [found.get(i) for i in ids]

    def _from_redis(
        self, schema: EntitySchema, ids: list[int], found: dict[int, Entity | None]
    ) -> None:
        keys = [self.engine.keys.entity(schema, i) for i in ids]
        client = self.engine.redis_for(schema)
        for entity_id, raw in zip(ids, client.mget(keys), strict=True):
            if raw is None or raw == STALE:
                continue  # a miss: MySQL has the truth
            if raw == TOMBSTONE:
                found[entity_id] = None
                continue
            try:
                found[entity_id] = make_entity(schema, entity_id, decode_row(schema, raw))
            except (ValueError, InvalidValue):
                client.delete(self.engine.keys.entity(schema, entity_id))  # unreadable: refill

    def _from_mysql(
        self, schema: EntitySchema, ids: list[int], found: dict[int, Entity | None]
    ) -> None:
        rows = self._query(schema, f"{select_sql(schema)} WHERE `id` IN ({ids_in(ids)})")
        loaded: dict[int, dict[str, Any]] = {}
        for row in rows:
            entity_id, values = row_values(schema, row)
            loaded[entity_id] = values
        for entity_id in ids:
            got = loaded.get(entity_id)
            # `is not None`: an entity without fields has an empty (falsy) dict of values
            found[entity_id] = make_entity(schema, entity_id, got) if got is not None else None
        if schema.options.redis_cache is not None:
            fill_rows(
                self.engine,
                schema,
                {i: None if loaded.get(i) is None else encode_row(schema, loaded[i]) for i in ids},
            )

    # --- by unique index

    def get_by_unique_index(
        self, schema: EntitySchema, index_name: str, values: Sequence[Any]
    ) -> Entity | None:
        index = schema.unique_indexes.get(index_name)
        if index is None:
            known = ", ".join(schema.unique_indexes) or "none"
            raise ConfigError(f"{schema.name} has no unique index {index_name!r} (it has: {known})")
        if len(values) != len(index.columns):
            raise QueryError(
                f"unique index {schema.name}.{index_name} has {len(index.columns)} columns "
                f"({', '.join(index.columns)}), got {len(values)} values"
            )
        try:
            normalized = [
                schema.columns_by_name[c].type.validate(v)
                for c, v in zip(index.columns, values, strict=True)
            ]
        except InvalidValue as e:
            raise QueryError(f"{schema.name}.{index_name}: {e}") from e
        cached = schema.options.redis_cache is not None
        key = self.engine.keys.unique(schema, index_name, normalized) if cached else ""
        if cached:
            raw = self.engine.redis_for(schema).get(key)
            if raw == TOMBSTONE:
                return None
            if raw is not None and raw != STALE:
                entity = self.get_by_id(schema, int(raw))
                if entity is not None and self._matches(entity, index.columns, normalized):
                    return entity
        conditions = " AND ".join(f"`{c}` = ?" for c in index.columns)
        sql = (
            f"SELECT `id` FROM `{schema.table}` WHERE "
            f"{Where(conditions, *normalized).render()} LIMIT 1"
        )
        rows = self._query(schema, sql)
        entity_id = int(rows[0][0]) if rows else None
        if cached:
            value = TOMBSTONE if entity_id is None else str(entity_id).encode()
            ttl = self.engine.missing_ttl_s if entity_id is None else None
            self.engine.redis_for(schema).set(key, value, nx=True, ex=ttl)
        return self.get_by_id(schema, entity_id) if entity_id is not None else None

    @staticmethod
    def _matches(entity: Entity, columns: Sequence[str], values: Sequence[Any]) -> bool:
        state = entity.__dict__
        return all(_plain(state.get(c)) == _plain(v) for c, v in zip(columns, values, strict=True))

    # --- lists: by reference, all

    def get_by_reference(self, schema: EntitySchema, field: str, ref: Any) -> list[Entity]:
        column = schema.columns_by_name.get(field)
        if column is None or not column.is_reference:
            refs = ", ".join(c.name for c in schema.references) or "none"
            raise ConfigError(f"{schema.name}.{field} is not a Reference field (those are: {refs})")
        ref_id = int(ref.id) if isinstance(ref, Entity | Reference) else int(ref)
        condition = f"`{field}` = {ref_id}"
        if column.cached:
            key = self.engine.keys.reference(schema, field, ref_id)
            ids = self._cached_id_list(schema, key, condition)
            return self._entities(schema, ids)
        return self._load_where(schema, f" WHERE {condition} ORDER BY `id`")

    def get_all(self, schema: EntitySchema) -> list[Entity]:
        if schema.options.cache_all:
            ids = self._cached_id_list(schema, self.engine.keys.all_ids(schema), "1")
            return self._entities(schema, ids)
        return self._load_where(schema, " ORDER BY `id`")

    def _cached_id_list(self, schema: EntitySchema, key: str, condition: str) -> list[int]:
        client = self.engine.redis_for(schema)
        content = client.hgetall(key)
        if COMPLETE_FIELD not in content:
            rows = self._query(schema, f"SELECT `id` FROM `{schema.table}` WHERE {condition}")
            flat = client.eval(_FILL_ID_LIST, 1, key, *[int(r[0]) for r in rows])
            content = dict(zip(flat[::2], flat[1::2], strict=True))
        return sorted(int(k) for k, v in content.items() if v == b"1" and k != COMPLETE_FIELD)

    def _entities(self, schema: EntitySchema, ids: Sequence[int]) -> list[Entity]:
        return [e for e in self.get_by_ids(schema, ids) if e is not None]

    # --- search

    def _load_where(self, schema: EntitySchema, tail: str) -> list[Entity]:
        if uses_cache(schema):
            rows = self._query(schema, f"SELECT `id` FROM `{schema.table}`{tail}")
            return self._entities(schema, [int(r[0]) for r in rows])
        rows = self._query(schema, f"{select_sql(schema)}{tail}")
        return [make_entity(schema, *row_values(schema, row)) for row in rows]

    def search(
        self, schema: EntitySchema, where: Where | None, pager: Pager | None
    ) -> list[Entity]:
        return self._load_where(schema, search_tail(where, pager))

    def search_ids(
        self, schema: EntitySchema, where: Where | None, pager: Pager | None
    ) -> list[int]:
        rows = self._query(schema, f"SELECT `id` FROM `{schema.table}`{search_tail(where, pager)}")
        return [int(r[0]) for r in rows]

    def count(self, schema: EntitySchema, where: Where | None) -> int:
        rows = self._query(schema, count_sql(schema, where))
        return int(rows[0][0])

    def entities_from_search_rows(
        self, schema: EntitySchema, rows: Sequence[Sequence[Any]]
    ) -> list[Entity]:
        """Entities from rows of ``search_sql`` (ids for cached entities, full rows otherwise)."""
        if uses_cache(schema):
            return self._entities(schema, [int(r[0]) for r in rows])
        return [make_entity(schema, *row_values(schema, row)) for row in rows]


def search_tail(where: Where | None, pager: Pager | None) -> str:
    return where_sql(where) + (pager.limit_sql() if pager is not None else "")


def search_sql(schema: EntitySchema, where: Where | None, pager: Pager | None) -> str:
    """The SELECT a search runs: ids only where a cache serves the rows, else every column."""
    head = f"SELECT `id` FROM `{schema.table}`" if uses_cache(schema) else select_sql(schema)
    return head + search_tail(where, pager)


def count_sql(schema: EntitySchema, where: Where | None) -> str:
    return f"SELECT COUNT(*) FROM `{schema.table}`{where_sql(where)}"
