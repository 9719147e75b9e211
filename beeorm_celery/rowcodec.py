"""``RowCodec``: one entity's validation and JSON row encoding, compiled once per schema.

Every ``flush()`` / ``flush_async()`` validates each data column of each flushed entity and
encodes the row as JSON (the entity cache's value, and an INSERT's values in a queued batch).
Going through ``Column.type.validate`` / ``to_json`` per value cost several attribute lookups
and method calls per value, most of ``flush_async``'s Python time. So when a schema is built,
Python source for its validator and its encoder is generated once and compiled: straight-line
code, one local per column, no per-value dispatch.

The generated validator never decides anything ``ColumnType`` does not: for each column it
first evaluates the type's *fast check* (``ColumnType.fast_check_source``), an expression that
is true only for a value ``validate`` would return unchanged (an ASCII ``str`` within its
``max_length``, an ``int`` within BIGINT...). Any other value, including every invalid one,
takes the column's full path (``ColumnType.validate`` and the required / NOT NULL rules),
which stores the normalised value back on the entity or raises ``ValidationError`` as before.

The worker's side is compiled the same way: ``decode_row`` turns an INSERT's JSON row (in this
worker's column order) into stored values and the row's SQL tuple at once, and ``sql_row`` a
row's stored values into that tuple. A DECIMAL's or a datetime's JSON text, in the one form
``to_json`` writes, is its SQL literal already (``ColumnType.json_literal_source``): formatting
the decoded value again cost the worker a fifth of its CPU per row. ``decode_row`` only takes
the JSON values its column types accept at a glance (``ColumnType.json_decode_source``) and
answers None, or raises, for anything else: the caller then decodes the row the full way,
which names what is wrong (``asyncflush.batch``).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from pymysql.converters import escape_string

from beeorm_celery.columns import ISO_DATE, ISO_DATETIME, InvalidValue
from beeorm_celery.errors import ValidationError

if TYPE_CHECKING:
    from beeorm_celery.entity import Entity
    from beeorm_celery.schema import Column, EntitySchema

# Names the generated source may use beside its per-column ``t<i>`` (the column's type) and
# ``slow<i>`` (the column's full path).
_HELPERS: dict[str, Any] = {
    "_dumps": orjson.dumps,
    "_isfinite": math.isfinite,
    "_b64": base64.b64encode,
    "_date": date,
    "_datetime": datetime,
    "_EMPTY": ("", b""),
    "_Decimal": Decimal,
    "_escape_string": escape_string,
    "_ISO_DATE": ISO_DATE,
    "_ISO_DATETIME": ISO_DATETIME,
}

Validator = Callable[["Entity"], tuple[dict[str, Any], bytes]]
Encoder = Callable[[dict[str, Any]], bytes]
RowDecoder = Callable[[int, list[Any]], "tuple[dict[str, Any], str] | None"]
SqlRow = Callable[[int, dict[str, Any]], str]


def _full_path(schema: EntitySchema, column: Column) -> Callable[[Entity, Any], Any]:
    """The column's complete validation: what ``flush`` did for every value before."""
    name, vtype, nullable, required = column.name, column.type, column.nullable, column.required
    entity_name = schema.name

    def validate(entity: Entity, value: Any) -> Any:
        if value is None:
            if not nullable:
                reason = "is required" if required else "cannot be None (the column is NOT NULL)"
                raise ValidationError(entity_name, name, reason, entity.id)
            return None
        try:
            value = vtype.validate(value)
        except InvalidValue as e:
            raise ValidationError(entity_name, name, str(e), entity.id) from None
        if required and value in ("", b""):
            raise ValidationError(entity_name, name, "is required (empty)", entity.id)
        entity.__dict__[name] = value  # the stored form (an id becomes a Reference, ...)
        return value

    return validate


def _json_expr(column: Column, v: str, t: str) -> str:
    # inside the row's one orjson.dumps
    expr = column.type.json_dump_source(v, t)
    if expr == v or not column.nullable:
        return expr
    return f"(None if {v} is None else {expr})"


def _nullable_json(column: Column) -> str:
    # a 'before' value may be None even for a NOT NULL column (the row had none yet)
    expr = column.type.json_source("v", "t")
    return expr if expr == "v" else f"(None if v is None else {expr})"


def _validator_source(schema: EntitySchema) -> str:
    lines = ["def validate(entity):", "    get = entity.__dict__.get"]
    row: list[str] = []  # each column's JSON expression, in the row's one orjson.dumps
    for i, column in enumerate(schema.data_columns):
        v = f"v{i}"
        lines.append(f"    {v} = get({column.name!r})")
        lines += _column_checks(column, i)
        row.append(f"j{i}" if _checked_on_json(column, i) else _json_expr(column, v, f"t{i}"))
    full = ", ".join(f"{c.name!r}: v{i}" for i, c in enumerate(schema.data_columns))
    lines.append(f"    return {{{full}}}, _dumps([{', '.join(row)}])")
    return "\n".join(lines) + "\n"


def _checked_on_json(column: Column, i: int) -> str | None:
    return column.type.fast_json_check_source(f"v{i}", f"t{i}", f"j{i}")


def _column_checks(column: Column, i: int) -> list[str]:
    """The validator's lines for column ``i``: its value ``v<i>`` is the stored form after
    them (or ``ValidationError`` was raised), and ``j<i>`` its JSON where the column's check is
    made on it (``fast_json_check_source``)."""
    v, t, j = f"v{i}", f"t{i}", f"j{i}"
    required = f" and {v} not in _EMPTY" if column.required else ""
    check = column.type.fast_check_source(v, t)
    if check is not None:
        check += required
        if column.nullable:
            check = f"{v} is None or ({check})"
        return [f"    if not ({check}): {v} = slow{i}(entity, {v})"]
    json_check = _checked_on_json(column, i)
    fast = column.type.fast_value_source(v, t)
    # if / elif chain: NULL, then the checks from the cheapest, then the full path
    branches: list[tuple[str, str]] = []
    if column.nullable:
        branches.append((f"{v} is None", f"{j} = None" if json_check else "pass"))
    if json_check is not None:
        branches.append((json_check + required, "pass"))
    if fast is not None:
        # the normalised value is the stored form: written back, as the full path does
        value_check, expr = fast
        written = f"{v} = entity.__dict__[{column.name!r}] = {expr}"
        if json_check is not None:
            written += f"; {j} = {column.type.json_dump_source(v, t)}"
        branches.append((value_check + required, written))
    slow = f"{v} = slow{i}(entity, {v})"
    if json_check is not None:
        slow += f"; {j} = {_json_expr(column, v, t)}"
    if not branches:
        guard = f"{v} is not None" if column.nullable else "True"
        return [f"    if {guard}: {slow}"]
    lines = [
        f"    {'if' if n == 0 else 'elif'} {c}: {body}" for n, (c, body) in enumerate(branches)
    ]
    return [*lines, f"    else: {slow}"]


def _encoder_source(schema: EntitySchema) -> str:
    lines = ["def encode(values):"]
    for i, column in enumerate(schema.data_columns):
        lines.append(f"    v{i} = values[{column.name!r}]")
    row = ", ".join(_json_expr(c, f"v{i}", f"t{i}") for i, c in enumerate(schema.data_columns))
    lines.append(f"    return _dumps([{row}])")
    return "\n".join(lines) + "\n"


def _decoder_source(schema: EntitySchema) -> str:
    columns = schema.data_columns
    if not columns:  # an entity of an id only
        return (
            "def decode_row(entity_id, row):\n"
            "    return None if row else ({}, '(' + str(entity_id) + ')')\n"
        )
    lines = ["def decode_row(entity_id, row):"]
    names = ", ".join(f"j{i}" for i in range(len(columns)))
    lines.append(f"    {names}, = row")
    literals = ["str(entity_id)"]
    for i, column in enumerate(columns):
        j, x, t = f"j{i}", f"x{i}", f"t{i}"
        fast = column.type.json_decode_source(j, t)
        check, expr = (
            fast if fast is not None else (f"{j} is not None", f"{t}.validate({t}.from_json({j}))")
        )
        if column.nullable:
            lines.append(f"    if {j} is None: {x} = None")
            lines.append(f"    elif {check}: {x} = {expr}")
        else:
            lines.append(f"    if {check}: {x} = {expr}")
        lines.append("    else: return None")
        literal = (
            column.type.json_literal_source(j, x, t)
            if fast is not None
            else column.type.sql_literal_source(x, t)
        )
        literals.append(f"('NULL' if {x} is None else {literal})" if column.nullable else literal)
    values = ", ".join(f"{c.name!r}: x{i}" for i, c in enumerate(columns))
    lines.append(f"    return {{{values}}}, {_tuple_text(literals)}")
    return "\n".join(lines) + "\n"


def _tuple_text(literals: list[str]) -> str:
    """An expression for '(' + the literals joined by ', ' + ')': one join of all the pieces
    (a chain of + copies the growing text once per piece)."""
    pieces = ["'('"]
    for n, literal in enumerate(literals):
        pieces += [literal, "', '"] if n < len(literals) - 1 else [literal, "')'"]
    return f"''.join(({', '.join(pieces)}))"


def _sql_row_source(schema: EntitySchema) -> str:
    lines = ["def sql_row(entity_id, values):"]
    parts = ["str(entity_id)"]
    for i, column in enumerate(schema.data_columns):
        v = f"v{i}"
        lines.append(f"    {v} = values[{column.name!r}]")
        expr = column.type.sql_literal_source(v, f"t{i}")
        if column.nullable:
            expr = f"('NULL' if {v} is None else {expr})"
        parts.append(expr)
    lines.append(f"    return {_tuple_text(parts)}")
    return "\n".join(lines) + "\n"


def _compile(source: str, name: str, namespace: dict[str, Any], schema: EntitySchema) -> Any:
    # exec of source built here from the schema's own column types (identifiers are checked
    # when the schema is built; names are quoted with repr): no outside text reaches it.
    code = compile(source, f"<beeorm row codec {schema.name}.{name}>", "exec")
    exec(code, namespace)
    return namespace[name]


class RowCodec:
    """``validate(entity)``: (stored values, the row as JSON bytes), or ``ValidationError``.
    ``encode(values)``: the JSON row of a complete set of stored values (cache fills).
    ``decode_row`` / ``sql_row``: the worker's side (see the module's docstring)."""

    def __init__(self, schema: EntitySchema) -> None:
        namespace = dict(_HELPERS)
        for i, column in enumerate(schema.data_columns):
            namespace[f"t{i}"] = column.type
            namespace[f"slow{i}"] = _full_path(schema, column)
        self.validator_source = _validator_source(schema)
        self.encoder_source = _encoder_source(schema)
        self.validate: Validator = _compile(self.validator_source, "validate", namespace, schema)
        self.encode: Encoder = _compile(self.encoder_source, "encode", namespace, schema)
        self.decoder_source = _decoder_source(schema)
        self.sql_row_source = _sql_row_source(schema)
        # ``decode_row(id, row)``: the stored values of a JSON row in this worker's column
        # order and the row's SQL tuple (as ``sql_row`` writes it, made from the JSON text
        # where that is the literal already), or None (or an exception) where the full path
        # must decide (``asyncflush.batch``)
        self.decode_row: RowDecoder = _compile(self.decoder_source, "decode_row", namespace, schema)
        # ``sql_row(id, values)``: '(id, literal, ...)' of a complete set of stored values
        self.sql_row: SqlRow = _compile(self.sql_row_source, "sql_row", namespace, schema)
        self._to_json = {
            c.name: _compile(
                f"def to_json(v):\n    return {_nullable_json(c)}\n",
                "to_json",
                {**_HELPERS, "t": c.type},
                schema,
            )
            for c in schema.data_columns
        }

    def json_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Some columns' stored values in their JSON form (an UPDATE's changes, a 'before')."""
        to_json = self._to_json
        return {name: to_json[name](value) for name, value in values.items()}
