"""SQL statements built from operations.

Identifiers come only from registered schemas (never from a batch or a user string), values
only through PyMySQL's escaping. Connections run with a strict sql_mode that never includes
NO_BACKSLASH_ESCAPES, which that escaping relies on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from beeorm_celery.operations import INSERT, UPDATE, Operation

if TYPE_CHECKING:
    from beeorm_celery.schema import Column, EntitySchema


def literal(column: Column, value: Any) -> str:
    if value is None:
        return "NULL"
    return column.type.sql_literal(value)


def column_list(schema: EntitySchema) -> str:
    return ", ".join(f"`{c.name}`" for c in schema.columns)


def select_sql(schema: EntitySchema) -> str:
    return f"SELECT {column_list(schema)} FROM `{schema.table}`"


def _row_literal(schema: EntitySchema, op: Operation) -> str:
    if op.sql_row is not None:
        return op.sql_row  # made while the batch was decoded
    return schema.row_codec.sql_row(op.id, op.values)  # compiled per schema (rowcodec.py)


def insert_sql(schema: EntitySchema, ops: Sequence[Operation]) -> str:
    rows = ", ".join(_row_literal(schema, op) for op in ops)
    return f"INSERT INTO `{schema.table}` ({column_list(schema)}) VALUES {rows}"


def _insert_head(schema: EntitySchema) -> str:
    return f"INSERT INTO `{schema.table}` ({column_list(schema)}) VALUES "


def text_bytes(text: str) -> int:
    """The length of ``text`` as sent (utf8mb4), without encoding ASCII text."""
    return len(text) if text.isascii() else len(text.encode())


def update_sql(op: Operation) -> str:
    schema = op.schema
    sets = ", ".join(
        f"`{name}` = {literal(schema.columns_by_name[name], value)}"
        for name, value in op.values.items()
    )
    return f"UPDATE `{schema.table}` SET {sets} WHERE `id` = {op.id}"


def delete_sql(op: Operation) -> str:
    return f"DELETE FROM `{op.schema.table}` WHERE `id` = {op.id}"


def operation_sql(op: Operation) -> str:
    """The single statement one operation runs (as shown in dead letters)."""
    if op.kind is INSERT:
        return insert_sql(op.schema, [op])
    if op.kind is UPDATE:
        return update_sql(op)
    return delete_sql(op)


def statements(
    ops: Iterable[Operation], max_bytes: int | None = None
) -> list[tuple[str, list[Operation]]]:
    """Statements for ``ops`` in order; consecutive INSERTs into one table become one.

    Each statement comes with the operations it carries (to name the failing one).
    An UPDATE without changed columns produces nothing. With ``max_bytes``, a multi-row INSERT
    is cut before it grows past that many bytes (the server's ``max_allowed_packet`` less a
    margin); a single row larger than that still makes a statement of its own, which the
    caller refuses before sending it.
    """
    result: list[tuple[str, list[Operation]]] = []
    pending: list[Operation] = []
    rows: list[str] = []
    size = 0
    limit = max_bytes if max_bytes is not None else -1

    def close_inserts() -> None:
        nonlocal size
        if pending:
            sql = _insert_head(pending[0].schema) + ", ".join(rows)
            result.append((sql, list(pending)))
            pending.clear()
            rows.clear()
            size = 0

    for op in ops:
        if op.kind is INSERT:
            if pending and pending[0].schema is not op.schema:
                close_inserts()
            row = _row_literal(op.schema, op)
            if limit >= 0:
                row_bytes = text_bytes(row) + 2  # and its ", "
                if not pending:
                    size = text_bytes(_insert_head(op.schema))
                elif size + row_bytes > limit:
                    close_inserts()
                    size = text_bytes(_insert_head(op.schema))
                size += row_bytes
            pending.append(op)
            rows.append(row)
            continue
        close_inserts()
        if op.kind is UPDATE:
            if op.values:
                result.append((update_sql(op), [op]))
        else:
            result.append((delete_sql(op), [op]))
    close_inserts()
    return result
