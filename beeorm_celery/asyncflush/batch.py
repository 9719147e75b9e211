"""``Batch``: the operations of one flush for one async group, and their wire format.

A batch carries operations (table, id, column values), never SQL: a worker builds every
statement from its own registered schemas. The encoding is JSON with typed values (Decimal as
string, date/datetime ISO, bytes base64, enums by value) and a format version; with a signing
secret, an HMAC-SHA256 over the payload. ``decode`` raises ``MalformedBatchError`` for anything it
cannot fully account for, so a worker never runs what it does not understand.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from beeorm_celery.cache import encoded_row
from beeorm_celery.columns import InvalidValue
from beeorm_celery.errors import MalformedBatchError
from beeorm_celery.operations import Operation, OpKind

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine
    from beeorm_celery.schema import EntitySchema

# 2: an INSERT's values are the row as a JSON array in column order (the cache's encoding);
# 1: they were an object. Both are read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_MAX_ID = 2**64 - 1  # BIGINT UNSIGNED
PAYLOAD_FIELD = b"d"
SIGNATURE_FIELD = b"s"
_KINDS = {k.value: k for k in OpKind}
_dumps = orjson.dumps


@dataclass(frozen=True)
class Batch:
    group: str
    operations: list[Operation]
    created_at_ms: int
    replay_of: str | None = None  # the dead letter this batch replays
    id: str | None = field(default=None, compare=False)  # the log entry id, once queued

    def encode(self) -> bytes:
        """The batch as JSON bytes, joined from pieces: an INSERT's row is the encoding the
        entity cache stores, made once per flush (``Operation.encoded_row``)."""
        parts: list[bytes] = []
        for op in self.operations:
            head = b'["' + op.kind.value.encode() + b'",' + _dumps(op.table)
            head += b"," + str(op.id).encode() + b","
            if op.kind is OpKind.INSERT and op.full is not None:
                values = encoded_row(op)
            else:
                columns = op.schema.columns_by_name
                values = _dumps({n: _to_json(columns[n], v) for n, v in op.values.items()})
            if op.before:
                columns = op.schema.columns_by_name
                before = _dumps({n: _to_json(columns[n], v) for n, v in op.before.items()})
            else:
                before = b"{}"
            parts.append(head + values + b"," + before + b"]")
        meta = b'{"v":' + str(FORMAT_VERSION).encode() + b',"g":' + _dumps(self.group)
        meta += b',"t":' + str(self.created_at_ms).encode() + b","
        if self.replay_of:
            meta += b'"r":' + _dumps(self.replay_of) + b","
        return meta + b'"ops":[' + b",".join(parts) + b"]}"

    def summary(self, limit: int = 160) -> str:
        """A short text for Flower: ``catalog#1699-0: INSERT category 1, UPDATE product 7``."""
        parts: list[str] = []
        counts: dict[tuple[str, str], list[int]] = {}
        for op in self.operations:
            verb = op.describe().split(" ", 1)[0]
            counts.setdefault((verb, op.table), []).append(op.id)
        for (verb, table), ids in counts.items():
            if len(ids) <= 3:
                parts.append(f"{verb} {table} {', '.join(map(str, ids))}")
            else:
                parts.append(f"{verb} {table} x{len(ids)} ({min(ids)}..{max(ids)})")
        text = f"{self.group}#{self.id or '?'}: " + ", ".join(parts)
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_json(column: Any, value: Any) -> Any:
    return None if value is None else column.type.to_json(value)


def sign(payload: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest().encode()


def encode_entry(batch: Batch, secret: bytes | None) -> dict[bytes, bytes]:
    """The fields of the log entry that carries ``batch``."""
    payload = batch.encode()
    entry = {PAYLOAD_FIELD: payload}
    if secret is not None:
        entry[SIGNATURE_FIELD] = sign(payload, secret)
    return entry


def decode_entry(
    engine: Engine, group: str, entry_id: str, fields: dict[bytes, bytes], secret: bytes | None
) -> Batch:
    """The batch in a log entry, checked against the signature and the registered schemas."""
    payload = fields.get(PAYLOAD_FIELD)
    if not isinstance(payload, bytes):
        raise MalformedBatchError(f"log entry {entry_id} of group {group!r} has no payload")
    if secret is not None:
        signature = fields.get(SIGNATURE_FIELD)
        if signature is None:
            raise MalformedBatchError(f"batch {entry_id} is not signed and signing is required")
        if not hmac.compare_digest(signature, sign(payload, secret)):
            raise MalformedBatchError(f"batch {entry_id} has a wrong signature (tampered?)")
    return decode_payload(engine, group, payload, entry_id)


def decode_payload(
    engine: Engine, group: str, payload: bytes, entry_id: str | None = None
) -> Batch:
    where = f"batch {entry_id}" if entry_id else "batch"
    try:
        data = orjson.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        # RecursionError: nesting deeper than the interpreter's stack (b"[" * 100000)
        raise MalformedBatchError(f"{where}: not JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise MalformedBatchError(f"{where}: not a JSON object")
    if data.get("v") not in READABLE_VERSIONS:
        raise MalformedBatchError(
            f"{where}: format version {data.get('v')!r}, this worker reads {READABLE_VERSIONS}"
        )
    if data.get("g") != group:
        raise MalformedBatchError(f"{where}: belongs to group {data.get('g')!r}, not {group!r}")
    created = data.get("t")
    raw_ops = data.get("ops")
    replay_of = data.get("r")
    if type(created) is not int or not isinstance(raw_ops, list) or not raw_ops:
        raise MalformedBatchError(f"{where}: missing timestamp or operations")
    if replay_of is not None and not isinstance(replay_of, str):
        raise MalformedBatchError(f"{where}: bad replay marker")
    pool = engine.async_groups.get(group)
    if pool is None:
        raise MalformedBatchError(f"{where}: group {group!r} is not registered with this worker")
    ops = [_decode_op(engine, pool, group, where, n, raw) for n, raw in enumerate(raw_ops)]
    return Batch(group, ops, created, replay_of, entry_id)


def _decode_op(engine: Engine, pool: str, group: str, where: str, n: int, raw: Any) -> Operation:
    if not isinstance(raw, list) or len(raw) != 5:
        raise MalformedBatchError(f"{where}, operation {n}: not [kind, table, id, values, before]")
    kind_code, table, entity_id, values, before = raw
    kind = _KINDS.get(kind_code) if isinstance(kind_code, str) else None
    if kind is None:
        raise MalformedBatchError(f"{where}, operation {n}: unknown kind {kind_code!r}")
    schema = engine.schema_for_table(pool, table) if isinstance(table, str) else None
    if schema is None or schema.options.async_group != group:
        raise MalformedBatchError(
            f"{where}, operation {n}: unknown entity table {table!r} in group {group!r}"
        )
    if type(entity_id) is not int or not 0 < entity_id <= _MAX_ID:
        raise MalformedBatchError(f"{where}, operation {n}: bad id {entity_id!r}")
    if not isinstance(before, dict):
        raise MalformedBatchError(f"{where}, operation {n}: 'before' is not an object")
    if kind is OpKind.INSERT and isinstance(values, list):
        decoded = _decode_row(schema, values, where, n)
    elif isinstance(values, dict):
        decoded = _decode_values(schema, values, where, n)
        if kind is OpKind.INSERT and decoded.keys() != schema.data_column_names:
            missing = schema.data_column_names - decoded.keys()
            raise MalformedBatchError(
                f"{where}, operation {n}: INSERT without columns {sorted(missing)}"
            )
    else:
        raise MalformedBatchError(f"{where}, operation {n}: values are not an object")
    if kind is OpKind.DELETE and decoded:
        raise MalformedBatchError(f"{where}, operation {n}: DELETE with values")
    old = _decode_values(schema, before, where, n) if before else {}
    return Operation(kind, schema, entity_id, decoded, old)


def _decode_row(schema: EntitySchema, row: list[Any], where: str, n: int) -> dict[str, Any]:
    """An INSERT's values given as the row in column order (format 2)."""
    columns = schema.data_columns
    if len(row) != len(columns):
        raise MalformedBatchError(
            f"{where}, operation {n}: INSERT row has {len(row)} values, "
            f"{schema.table} has {len(columns)} columns"
        )
    result: dict[str, Any] = {}
    for column, value in zip(columns, row, strict=True):
        result[column.name] = _decode_value(schema, column, value, where, n)
    return result


def _decode_values(schema: EntitySchema, raw: dict[str, Any], where: str, n: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in raw.items():
        column = schema.columns_by_name.get(name) if isinstance(name, str) else None
        if column is None or name == "id":
            raise MalformedBatchError(
                f"{where}, operation {n}: unknown column {schema.table}.{name}"
            )
        result[name] = _decode_value(schema, column, value, where, n)
    return result


def _decode_value(schema: EntitySchema, column: Any, value: Any, where: str, n: int) -> Any:
    if value is None:
        if not column.nullable:
            raise MalformedBatchError(
                f"{where}, operation {n}: NULL for NOT NULL column {column.name}"
            )
        return None
    try:
        return column.type.validate(column.type.from_json(value))
    except (InvalidValue, ValueError, TypeError, AttributeError, ArithmeticError) as e:
        raise MalformedBatchError(
            f"{where}, operation {n}: bad value for {schema.table}.{column.name}: {e}"
        ) from None
