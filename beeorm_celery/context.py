"""``Context``: the unit of work. Tracks new, edited and deleted entities, flushes them, reads."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from beeorm_celery.asyncflush.producer import flush_async
from beeorm_celery.entity import Entity, Reference, field_values
from beeorm_celery.errors import ValidationError
from beeorm_celery.failures import reading
from beeorm_celery.flush import flush_sync
from beeorm_celery.operations import DELETE, INSERT, UPDATE, Operation, OpKind, keyed_columns
from beeorm_celery.reads import Reader

if TYPE_CHECKING:
    from beeorm_celery.async_reads import Page, QueryFuture
    from beeorm_celery.engine import Engine
    from beeorm_celery.query import Pager, Where
    from beeorm_celery.schema import EntitySchema

E = TypeVar("E", bound=Entity)


@dataclass(slots=True)
class _Tracked:
    kind: OpKind
    schema: EntitySchema
    entity: Entity  # the object the user changes (a copy, for edits)
    original: Entity | None  # for edits and deletes: the object it was copied from
    before: dict[str, Any]  # column values when tracking started (edits, deletes)


class Context:
    """A unit of work, like BeeORM's ``beeorm.Context``. Not thread-safe: one per request/job.

    After a flush the flushed entities are read-only again (``ctx.edit`` them for more changes)
    and the originals of edited copies hold the new values.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader = Reader(engine)
        self._tracked: dict[tuple[str, int], _Tracked] = {}

    # --- tracking

    def new_entity(self, entity_type: type[E], **values: Any) -> E:
        """A new tracked entity with its id already set (from the table's Redis counter)."""
        schema = self.engine.schema(entity_type)
        if "id" in values:
            raise TypeError(f"{schema.name}.id is assigned by new_entity, not passed in")
        unknown = set(values) - set(schema.columns_by_name)
        if unknown:
            raise TypeError(f"{schema.name} has no field {sorted(unknown)[0]!r}")
        entity = entity_type.__new__(entity_type)
        state = entity.__dict__
        state.update(schema.default_values())
        state.update(values)
        with reading(f"reserving an id for a new {schema.name}", schema.options.mysql_pool):
            state["id"] = self.engine.ids.next_id(schema)
        state["_bo_editable"] = True
        state["_bo_unflushed"] = True  # until a flush stores it: no other context may use it
        self._tracked[(schema.table, state["id"])] = _Tracked(INSERT, schema, entity, None, {})
        return entity

    def edit(self, entity: E) -> E:
        """A tracked, editable copy of ``entity``; the original is unchanged until flush."""
        schema = self.engine.schema(type(entity))
        key = (schema.table, entity.id)
        tracked = self._tracked.get(key)
        if tracked is not None:
            if tracked.kind is DELETE:
                raise ValidationError(
                    schema.name,
                    "id",
                    "is deleted in this context (ctx.delete); an edit after the delete "
                    "would silently drop it",
                    entity.id,
                )
            return tracked.entity  # type: ignore[return-value]
        _refuse_unflushed(schema, entity)
        copy = type(entity).__new__(type(entity))
        before = field_values(entity)
        copy.__dict__.update(before)
        copy.__dict__["_bo_editable"] = True
        self._tracked[key] = _Tracked(UPDATE, schema, copy, entity, before)
        return copy

    def delete(self, entity: Entity) -> None:
        """Track a delete (of an entity never flushed: just forget it)."""
        schema = self.engine.schema(type(entity))
        key = (schema.table, entity.id)
        tracked = self._tracked.get(key)
        if tracked is not None and tracked.kind is INSERT:
            del self._tracked[key]
            return
        if tracked is None:
            _refuse_unflushed(schema, entity)
        if tracked is not None:
            original = tracked.original or entity
            before = tracked.before
        else:
            original, before = entity, field_values(entity)
        self._tracked[key] = _Tracked(DELETE, schema, original, original, before)

    def clear(self) -> None:
        """Forget everything tracked and not flushed."""
        self._tracked.clear()

    @property
    def pending(self) -> int:
        """How many entities are tracked and not flushed."""
        return len(self._tracked)

    # --- flushing

    def flush(self) -> None:
        """Validate, run all SQL in one transaction per MySQL pool, then update the caches."""
        ops = self._operations()
        if ops:
            flush_sync(self.engine, ops)
        self._done()

    def flush_async(self) -> None:
        """Validate, update the caches at once, and queue the SQL for the workers.

        One batch per async group, appended to the group's log in Redis together with the
        cache writes (one round trip per Redis pool); the installed adapter (``install()``)
        wakes a worker only for a group with no wake-up on its way. Without an adapter the
        batches wait for a running worker's periodic sweep.
        """
        ops = self._operations()
        if ops:
            flush_async(self.engine.async_parts, ops)
        self._done()

    flush_lazy = flush_async  # BeeORM's older name

    def _operations(self) -> list[Operation]:
        ops: list[Operation] = []
        for tracked in self._tracked.values():
            schema = tracked.schema
            if tracked.kind is DELETE:
                before = {c: tracked.before.get(c) for c in keyed_columns(schema)}
                ops.append(Operation(DELETE, schema, tracked.entity.id, {}, before))
                continue
            if schema.references:
                self._check_references(schema, tracked.entity)
            # every data column's stored value and the row as the cache's JSON, or
            # ValidationError for the first bad value (compiled per schema: rowcodec.py)
            full, json_row = schema.row_codec.validate(tracked.entity)
            if tracked.kind is INSERT:
                ops.append(Operation(INSERT, schema, tracked.entity.id, full, {}, full, json_row))
                continue
            changed = {
                name: value
                for name, value in full.items()
                if name not in tracked.before or not _same(tracked.before[name], value)
            }
            if not changed:
                continue
            before = {c: tracked.before.get(c) for c in keyed_columns(schema)}
            ops.append(
                Operation(UPDATE, schema, tracked.entity.id, changed, before, full, json_row)
            )
        return ops

    def _check_references(self, schema: EntitySchema, entity: Entity) -> None:
        """A reference may not point at an entity never flushed (unless this flush inserts
        it) nor at one this flush deletes."""
        state = entity.__dict__
        for column in schema.references:
            value = state.get(column.name)
            if value is None:
                continue
            if isinstance(value, Entity):
                target_table = self.engine.schema(type(value)).table
                target = self._tracked.get((target_table, value.id))
                if value.__dict__.get("_bo_unflushed") and (
                    target is None or target.kind is not INSERT
                ):
                    raise ValidationError(
                        schema.name,
                        column.name,
                        f"refers to {type(value).__name__}(id={value.id}), which was never "
                        "flushed (flush it first, or create it in this context)",
                        entity.id,
                    )
            elif isinstance(value, Reference):
                target_table = self.engine.schema(value.entity_type).table
                target = self._tracked.get((target_table, value.id))
            else:
                continue
            if target is not None and target.kind is DELETE:
                raise ValidationError(
                    schema.name,
                    column.name,
                    f"refers to a row this flush deletes ({target_table} {value.id})",
                    entity.id,
                )

    def _done(self) -> None:
        for tracked in self._tracked.values():
            state = tracked.entity.__dict__
            state.pop("_bo_editable", None)
            state.pop("_bo_unflushed", None)
            if tracked.kind is UPDATE and tracked.original is not None:
                tracked.original.__dict__.update(field_values(tracked.entity))
        self._tracked.clear()

    # --- reads

    def get_by_id(self, entity_type: type[E], entity_id: int) -> E | None:
        """The entity or None: local cache, then Redis, then MySQL."""
        schema = self.engine.schema(entity_type)
        with self._reading(schema, "get_by_id"):
            return self._reader.get_by_id(schema, entity_id)  # type: ignore[return-value]

    def get_by_ids(self, entity_type: type[E], ids: Sequence[int]) -> list[E | None]:
        """Entities in the order of ``ids``, None where missing; one round trip per layer."""
        schema = self.engine.schema(entity_type)
        with self._reading(schema, "get_by_ids"):
            return self._reader.get_by_ids(schema, ids)  # type: ignore[return-value]

    def get_by_unique_index(self, entity_type: type[E], index: str, *values: Any) -> E | None:
        schema = self.engine.schema(entity_type)
        with self._reading(schema, "get_by_unique_index"):
            return self._reader.get_by_unique_index(schema, index, values)  # type: ignore[return-value]

    def get_by_reference(self, entity_type: type[E], field: str, ref: Any) -> list[E]:
        """Entities whose Reference ``field`` points at ``ref`` (an entity or an id)."""
        schema = self.engine.schema(entity_type)
        with self._reading(schema, "get_by_reference"):
            return self._reader.get_by_reference(schema, field, ref)  # type: ignore[return-value]

    def get_all(self, entity_type: type[E]) -> list[E]:
        schema = self.engine.schema(entity_type)
        with self._reading(schema, "get_all"):
            return self._reader.get_all(schema)  # type: ignore[return-value]

    def search(
        self, entity_type: type[E], where: Where | None = None, pager: Pager | None = None
    ) -> list[E]:
        schema = self.engine.schema(entity_type)
        with self._reading(schema, "search"):
            return self._reader.search(schema, where, pager)  # type: ignore[return-value]

    def search_ids(
        self, entity_type: type[Entity], where: Where | None = None, pager: Pager | None = None
    ) -> list[int]:
        schema = self.engine.schema(entity_type)
        with self._reading(schema, "search_ids"):
            return self._reader.search_ids(schema, where, pager)

    def count(self, entity_type: type[Entity], where: Where | None = None) -> int:
        schema = self.engine.schema(entity_type)
        with self._reading(schema, "count"):
            return self._reader.count(schema, where)

    @staticmethod
    def _reading(schema: EntitySchema, call: str) -> AbstractContextManager[None]:
        return reading(f"{call}({schema.name})", schema.options.mysql_pool)

    # --- async reads (run on the engine's query runner; see beeorm_celery/async_reads)
    #
    # Each returns a QueryFuture at once (a concurrent.futures.Future: asyncio.wrap_future
    # awaits it). ``timeout`` seconds is enforced by MySQL itself (QueryTimeoutError);
    # ``future.cancel()`` kills a running query; ``pool`` reads from another MySQL pool
    # (a replica). The Context may be used from one thread only; the futures from any.

    def search_async(
        self,
        entity_type: type[E],
        where: Where | None = None,
        pager: Pager | None = None,
        *,
        timeout: float | None = None,
        pool: str | None = None,
    ) -> QueryFuture[list[E]]:
        """What ``search`` returns, later. Cached entities load through the caches."""
        schema = self.engine.schema(entity_type)
        runner = self.engine.query_runner
        return runner.search(  # type: ignore[return-value]
            self._reader, schema, where, pager, timeout=timeout, pool=pool
        )

    def count_async(
        self,
        entity_type: type[Entity],
        where: Where | None = None,
        *,
        timeout: float | None = None,
        pool: str | None = None,
    ) -> QueryFuture[int]:
        """What ``count`` returns, later."""
        schema = self.engine.schema(entity_type)
        return self.engine.query_runner.count(schema, where, timeout=timeout, pool=pool)

    def paginate_async(
        self,
        entity_type: type[E],
        where: Where | None,
        page: int,
        per_page: int,
        *,
        timeout: float | None = None,
        pool: str | None = None,
    ) -> QueryFuture[Page[E]]:
        """A ``Page``: the count and page ``page`` (from 1) of ``per_page`` entities.

        Two statements on one connection; ``timeout`` covers both together.
        """
        schema = self.engine.schema(entity_type)
        runner = self.engine.query_runner
        return runner.paginate(  # type: ignore[return-value]
            self._reader, schema, where, page, per_page, timeout=timeout, pool=pool
        )


def _refuse_unflushed(schema: EntitySchema, entity: Entity) -> None:
    if entity.__dict__.get("_bo_unflushed"):
        raise ValidationError(
            schema.name,
            "id",
            "was created by another context and never flushed: MySQL has no such row",
            entity.id,
        )


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
