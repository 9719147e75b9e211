"""Unique values are decided when a flush returns (law 11), not when a worker hits 1062.

Every flush lists, in operation order, the unique-index keys it claims (a new value) and
releases (an old value: an edit that changes it, a delete). The script that appends the batch
to the log checks and writes them atomically (``cache_patch.bo_check``): a key held by another
id refuses the whole flush (``DuplicateKeyError``), nothing is queued or cached; of processes
racing for one value, the first script to run wins. A released value is free at once: the
release and any later claim are in the same table, so in the same async group, and MySQL
applies them in log order.

A key held by another row whose cached row has other values now (an edit from a stale copy
released the wrong value) is a stale claim: the script returns that row, and runs again
allowed to take the key over from that id.

Where the cache does not know a key (never read, expired, cleared), the script says which; one
indexed MySQL query per unique index (one ``IN`` list for every such value of the flush)
finds the holders, and the script runs again with them as hints, which it also caches.
If MySQL cannot be reached, the values are claimed in Redis alone (logged): flush_async()
stays available, and a value only MySQL holds is then caught by the worker (a dead letter).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.cache import _index_values, decode_row
from beeorm_celery.columns import InvalidValue
from beeorm_celery.entity import Reference
from beeorm_celery.errors import DuplicateKeyError, ValidationError
from beeorm_celery.keys import STALE, TOMBSTONE
from beeorm_celery.operations import DELETE, Operation

if TYPE_CHECKING:
    from beeorm_celery.cache_patch import CachePlan
    from beeorm_celery.keys import Keys
    from beeorm_celery.mysql import MySQLPool
    from beeorm_celery.schema import EntitySchema

logger = logging.getLogger(__name__)

# A refusal from the scripts starts with this item.
REFUSED = b"!"
_MAX_ROUNDS = 6  # unknown values asked once, plus a few stale claims taken over


def add_claims(plan: CachePlan, op: Operation) -> None:
    """The unique keys ``op`` claims and releases, in order."""
    schema = op.schema
    keys = plan.keys
    for index in schema.unique_indexes.values():
        old = _index_values(op, index.columns, after=False)
        new = _index_values(op, index.columns, after=True)
        old_key = keys.unique(schema, index.name, old) if old is not None else None
        new_key = keys.unique(schema, index.name, new) if new is not None else None
        if old_key == new_key:
            continue
        if old_key is not None and old is not None:
            plan.claims.append(["r", old_key, str(op.id)])
            plan.unique_labels[old_key] = (schema, index.name, old)
        if new_key is not None and new is not None:
            # the entity key of a holder is this prefix and its id
            plan.claims.append(["c", new_key, str(op.id), keys.entity_prefix(schema)])
            plan.unique_labels[new_key] = (schema, index.name, new)


def reference_checks(
    keys: Keys, ops: Sequence[Operation], pool: str
) -> list[tuple[str, EntitySchema, int]]:
    """Entity keys (in Redis pool ``pool``) of the rows the flush's new references point at:
    a tombstone there means the target is deleted, and the flush is refused."""
    found: list[tuple[str, EntitySchema, int]] = []
    for op in ops:
        if op.kind is DELETE or not op.schema.references:
            continue
        for column in op.schema.references:
            if column.name not in op.values:
                continue
            value = op.values[column.name]
            if not isinstance(value, Reference):
                continue
            target = value.entity_type.__beeorm_schema__  # set when the registry validated it
            if target is None or target.options.redis_cache != pool:
                continue
            found.append((keys.entity(target, value.id), op.schema, op.id))
    return found


def run_checked(
    mysql: Mapping[str, MySQLPool], plan: CachePlan, call: Callable[[list[Any]], Any]
) -> Any:
    """``call(plan.args())`` until it is not refused for unknown keys; other refusals raise."""
    for _ in range(_MAX_ROUNDS):
        result = call(plan.args())
        if not (isinstance(result, list) and result and result[0] == REFUSED):
            return result
        reason = result[1]
        if reason == b"dup" and _holder_moved(mysql, plan, result):
            plan.steal[result[2].decode()] = result[3].decode()
            continue
        if reason == b"unknown":
            unknown = [k.decode() for k in result[2:]]
            try:
                plan.hints.update(lookup_holders(mysql, plan, unknown))
            except (pymysql.MySQLError, OSError) as e:
                # MySQL is out of reach: an async flush must not stop for it. Racing flushes
                # still meet in Redis; a value only MySQL holds becomes a dead letter (1062).
                logger.warning(
                    "unique check of %d value(s) could not ask MySQL (%s); claimed in Redis only",
                    len(unknown),
                    e,
                )
                plan.hints.update(dict.fromkeys(unknown, "-"))
            continue
        raise refusal(plan, result)
    raise AssertionError("the flush script kept asking for unique values it was given")


def _holder_moved(mysql: Mapping[str, MySQLPool], plan: CachePlan, result: list[Any]) -> bool:
    """Whether the row a unique key names holds other values now (or is deleted), judged by
    its cached row: then the key is a stale claim (left by an edit from a stale copy).

    A holder that is not cached is judged by MySQL when no batch of it is pending (MySQL is
    its truth then); with one pending, nobody can tell yet, and the claim stands."""
    raw = result[4] if len(result) > 4 else b""
    if raw == TOMBSTONE:
        return True
    key = result[2].decode()
    pending = result[5] if len(result) > 5 else b""
    if pending.endswith(b"+"):
        # A provisional row was written from a caller's copy (nothing was cached to patch):
        # only its changed columns are known to be true, so it cannot tell who holds a value.
        return False
    if not raw or raw == STALE:
        if pending or plan.hints.get(key) == result[3].decode():
            return False  # a batch of it is pending, or MySQL named it in this flush already
        try:
            holder = lookup_holders(mysql, plan, [key]).get(key, "-")
        except (pymysql.MySQLError, OSError):
            return False  # cannot tell: the claim stands
        return holder == "-"  # free in MySQL: the claim was left by a stale copy
    schema, index, _ = plan.unique_labels[key]
    try:
        row = decode_row(schema, raw)
    except (ValueError, InvalidValue):
        return False
    values = [row.get(c) for c in schema.unique_indexes[index].columns]
    if any(v is None for v in values):
        return True
    return bool(plan.keys.unique(schema, index, values) != key)


def refusal(plan: CachePlan, result: list[Any]) -> Exception:
    reason = result[1]
    key = result[2].decode()
    if reason == b"dup":
        schema, index, values = plan.unique_labels[key]
        holder = int(result[3])
        shown = values[0] if len(values) == 1 else tuple(values)
        shown = shown.id if isinstance(shown, Reference) else shown
        return DuplicateKeyError(
            f"{schema.name}.{index} = {shown!r} is already held by {schema.name}(id={holder}); "
            "nothing was queued or cached",
            code=1062,
            entity=schema.name,
            index=index,
            value=tuple(values),
            holder_id=holder,
        )
    schema, entity_id = plan.entity_labels[key]
    if reason == b"stale":
        column = schema.data_columns[int(result[3])].name
        return ValidationError(
            schema.name,
            column,
            "changed since this copy was read (a unique value: the flush would release a value "
            "the row no longer holds); read the entity again; nothing was queued or cached",
            entity_id,
        )
    if reason == b"gone":
        return ValidationError(
            schema.name,
            "id",
            f"row {entity_id} of {schema.table} no longer exists (it was deleted); "
            "nothing was queued or cached",
            entity_id,
        )
    target = key.rsplit(":", 1)[-1]
    return ValidationError(
        schema.name,
        "id",
        f"refers to a deleted row ({target} in the cache is a tombstone: key {key})",
        entity_id,
    )


def lookup_holders(
    mysql: Mapping[str, MySQLPool], plan: CachePlan, unknown: Sequence[str]
) -> dict[str, str]:
    """Ask MySQL who holds the unique keys the cache does not know: one query per index."""
    by_index: dict[tuple[int, str], list[str]] = {}
    schemas: dict[int, EntitySchema] = {}
    for key in unknown:
        schema, index, _ = plan.unique_labels[key]
        schemas[id(schema)] = schema
        by_index.setdefault((id(schema), index), []).append(key)
    hints: dict[str, str] = {}
    for (schema_id, index_name), keys in by_index.items():
        schema = schemas[schema_id]
        columns = [schema.columns_by_name[c] for c in schema.unique_indexes[index_name].columns]
        tuples = []
        for key in keys:
            values = plan.unique_labels[key][2]
            literals = [c.type.sql_literal(v) for c, v in zip(columns, values, strict=True)]
            tuples.append(literals[0] if len(literals) == 1 else f"({', '.join(literals)})")
        names = ", ".join(f"`{c.name}`" for c in columns)
        target = names if len(columns) == 1 else f"({names})"
        sql = f"SELECT `id`, {names} FROM `{schema.table}` WHERE {target} IN ({', '.join(tuples)})"
        rows = mysql[schema.options.mysql_pool].read_all(sql)
        for key in keys:
            hints[key] = "-"
        for row in rows:
            values = [c.type.from_sql(raw) for c, raw in zip(columns, row[1:], strict=True)]
            key = plan.keys.unique(schema, index_name, values)
            if key in hints:
                hints[key] = str(int(row[0]))
    return hints
