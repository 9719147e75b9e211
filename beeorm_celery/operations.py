"""Operations: what a flush does to one row, independent of how it is carried out."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beeorm_celery.schema import EntitySchema


class OpKind(StrEnum):
    INSERT = "i"
    UPDATE = "u"
    DELETE = "d"


# The kinds as plain module constants, for code that runs per row: on Python 3.11 every
# ``OpKind.INSERT`` goes through the enum metaclass's Python-level ``__getattr__`` hook, about
# 300 instructions a time and over a hundred times per 10-row flush_async (measured with
# callgrind). ``op.kind is INSERT`` costs a global lookup.
INSERT, UPDATE, DELETE = OpKind.INSERT, OpKind.UPDATE, OpKind.DELETE


@dataclass(slots=True)
class Operation:
    """One row change.

    ``values``: insert, every data column; update, the changed columns only; delete, none.
    ``before``: update and delete, the previous values of every unique-index and reference
    column, so the cache keys of the old state can be found (and dropped on a dead letter).
    ``full``: the complete row after the change (insert, update), used to write the entity cache;
    it is not carried in a queued batch.
    """

    kind: OpKind
    schema: EntitySchema
    id: int
    values: dict[str, Any] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    full: dict[str, Any] | None = None
    # ``full`` as the entity cache's JSON row, made once (cache.encoded_row) and shared by the
    # cache value and a queued INSERT's values
    json_row: bytes | None = None
    # a decoded INSERT's SQL tuple, made by the worker's decoder from the batch's JSON text
    # (``rowcodec.decode_row``); None: built from ``values`` when needed. Derived from
    # ``values``: not part of what the operation is (equality, repr)
    sql_row: str | None = field(default=None, repr=False, compare=False)

    @property
    def table(self) -> str:
        return self.schema.table

    def describe(self) -> str:
        verb = {OpKind.INSERT: "INSERT", OpKind.UPDATE: "UPDATE", OpKind.DELETE: "DELETE"}
        return f"{verb[self.kind]} {self.table} {self.id}"


def keyed_columns(schema: EntitySchema) -> list[str]:
    """Columns whose old value a cache key depends on: unique-index and reference columns."""
    names: list[str] = []
    for index in schema.unique_indexes.values():
        names.extend(c for c in index.columns if c not in names)
    names.extend(c.name for c in schema.references if c.name not in names)
    return names
