"""``Batch``: the operations of one flush for one async group, and their wire format.

A batch carries operations (table, id, named column values), never SQL: a worker builds every
statement from its own registered schemas. The encoding is JSON with typed values (Decimal as
string, date/datetime ISO, bytes base64, enums by value) and a format version; with a signing
secret, an HMAC-SHA256 over the payload. ``decode`` raises ``MalformedBatchError`` for anything it
cannot fully account for, so a worker never runs what it does not understand.

Producer and worker may run different releases of an entity during a rolling deploy, so every
value travels with its column's name: an UPDATE's values are an object, and an INSERT's row is
the cache's JSON array (made once per flush, see ``cache.encoded_row``) whose column names are
listed once per table in the batch header (``"c"``). A name this worker does not know is schema
lag (``SchemaLagError``: the batch waits for the upgrade); a column the producer did not know
takes this worker's default.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from beeorm_celery.cache import encoded_row
from beeorm_celery.columns import InvalidValue
from beeorm_celery.entity import MISSING
from beeorm_celery.errors import MalformedBatchError, SchemaLagError, SignatureError
from beeorm_celery.operations import DELETE, INSERT, Operation, OpKind

if TYPE_CHECKING:
    from beeorm_celery.rowcodec import RowDecoder
    from beeorm_celery.schema import EntitySchema

# 3: as 2, plus the header "c" naming, per table, the columns of its INSERT rows;
# 2: an INSERT's values are the row as a JSON array in the worker's column order (the cache's
# encoding); 1: they were an object. All three are read.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
_MAX_ID = 2**64 - 1  # BIGINT UNSIGNED
PAYLOAD_FIELD = b"d"
SIGNATURE_FIELD = b"s"
_KINDS = {k.value: k for k in OpKind}
_KIND_CODES = {k: k.value for k in OpKind}  # an enum's .value is a property: slower
_dumps = orjson.dumps
SCHEMA_AHEAD = "schema ahead: upgrade workers / run update_schema"
_Fragment = orjson.Fragment  # already-encoded JSON, placed as is


class SchemaLookup(Protocol):
    """What decoding needs to know: each group's MySQL pool and the schema of a table there
    (``AsyncParts`` and ``Engine`` both answer)."""

    @property
    def async_groups(self) -> Mapping[str, str]: ...

    def schema_for_table(self, mysql_pool: str, table: str) -> EntitySchema | None: ...


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and two batches
# are built per flush_async (frozen, they cost 8% of a one-entity flush's producer
# instructions: bench/README.md). Treated as immutable all the same: a queued batch is a new
# Batch with its id (``enqueue.py``).
@dataclass(slots=True)
class Batch:
    group: str
    operations: list[Operation]
    created_at_ms: int
    replay_of: str | None = None  # the dead letter this batch replays
    id: str | None = field(default=None, compare=False)  # the log entry id, once queued
    # decoded: the tables whose producer cached them under another column layout (another
    # release), or did not say (an older release): this worker's cache entries of their rows
    # were not patched by the flush (``invalidate.py`` marks them stale once applied)
    foreign_tables: frozenset[str] = field(default=frozenset(), compare=False)

    def encode(self) -> bytes:
        """The batch as JSON bytes, in one ``orjson.dumps``: an INSERT's row goes in as the
        encoding the entity cache stores, made once per flush (``cache.encoded_row``), and the
        batch names the columns of every table whose rows it carries (``c``)."""
        ops: list[tuple[str, str, int, Any, dict[str, Any]]] = []
        row_tables: dict[str, EntitySchema] = {}
        layouts: dict[str, str] = {}
        last: EntitySchema | None = None
        table = ""
        for op in self.operations:
            schema = op.schema
            if schema is not last:  # once per run of one entity type, as flushes come
                last = schema
                table = schema.table
                layouts[table] = schema.layout_hash
            if op.kind is INSERT and op.full is not None:
                # (op.json_row: made by validation; a call only where it was not)
                values: Any = _Fragment(op.json_row or encoded_row(op))
                row_tables[table] = schema
            else:
                values = schema.row_codec.json_values(op.values)
            before = schema.row_codec.json_values(op.before) if op.before else {}
            ops.append((_KIND_CODES[op.kind], table, op.id, values, before))
        data: dict[str, Any] = {"v": FORMAT_VERSION, "g": self.group, "t": self.created_at_ms}
        if self.replay_of:
            data["r"] = self.replay_of
        if row_tables:
            data["c"] = {t: schema.data_column_order for t, schema in row_tables.items()}
        data["l"] = layouts  # the cache layout each table was written in (``foreign_tables``)
        data["ops"] = ops
        return _dumps(data)

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


def sign(payload: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest().encode()


Secrets = bytes | Sequence[bytes] | None


def _as_secrets(secret: Secrets) -> Sequence[bytes]:
    if secret is None:
        return ()
    return (secret,) if isinstance(secret, bytes) else secret


def verifies(payload: bytes, signature: bytes | None, secret: Secrets) -> bool:
    """Whether ``signature`` is ``payload``'s under one of the secrets (any of a rotation)."""
    if signature is None:
        return False
    return any(hmac.compare_digest(signature, sign(payload, s)) for s in _as_secrets(secret))


def encode_entry(batch: Batch, secret: Secrets) -> dict[bytes, bytes]:
    """The fields of the log entry that carries ``batch``, signed with the first secret."""
    payload = batch.encode()
    entry = {PAYLOAD_FIELD: payload}
    secrets = _as_secrets(secret)
    if secrets:
        entry[SIGNATURE_FIELD] = sign(payload, secrets[0])
    return entry


def check_signature(where: str, payload: bytes, signature: bytes | None, secret: Secrets) -> None:
    """Raise ``SignatureError`` unless signing is off or ``signature`` verifies."""
    if not _as_secrets(secret):
        return
    if signature is None:
        raise SignatureError(f"{where} is not signed and this worker requires signing_secret")
    if not verifies(payload, signature, secret):
        raise SignatureError(
            f"{where} has a wrong signature: signed with a secret this worker does not hold "
            "(signing_secret differs between producers and this worker, or tampered)"
        )


def decode_entry(
    schemas: SchemaLookup, group: str, entry_id: str, fields: dict[bytes, bytes], secret: Secrets
) -> Batch:
    """The batch in a log entry, checked against the signature and the registered schemas."""
    payload = fields.get(PAYLOAD_FIELD)
    if not isinstance(payload, bytes):
        raise MalformedBatchError(f"log entry {entry_id} of group {group!r} has no payload")
    check_signature(f"batch {entry_id}", payload, fields.get(SIGNATURE_FIELD), secret)
    return decode_payload(schemas, group, payload, entry_id)


def decode_payload(
    schemas: SchemaLookup, group: str, payload: bytes, entry_id: str | None = None
) -> Batch:
    where = f"batch {entry_id}" if entry_id else "batch"
    try:
        data = orjson.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        # RecursionError: nesting deeper than the interpreter's stack (b"[" * 100000)
        raise MalformedBatchError(f"{where}: not JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise MalformedBatchError(f"{where}: not a JSON object")
    version = data.get("v")
    if version not in READABLE_VERSIONS:
        if type(version) is int and version > FORMAT_VERSION:
            raise SchemaLagError(
                f"{where}: format version {version} is newer than this worker reads "
                f"{READABLE_VERSIONS} ({SCHEMA_AHEAD})",
                cause=f"format {version}",
            )
        raise MalformedBatchError(
            f"{where}: format version {version!r}, this worker reads {READABLE_VERSIONS}"
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
    row_names = data.get("c")
    if row_names is not None and not isinstance(row_names, dict):
        raise MalformedBatchError(f"{where}: bad column header")
    pool = schemas.async_groups.get(group)
    if pool is None:
        raise MalformedBatchError(f"{where}: group {group!r} is not registered with this worker")
    decoder = _OpDecoder(schemas, pool, group, where, row_names or {})
    ops = [decoder.op(n, raw) for n, raw in enumerate(raw_ops)]
    layouts = data.get("l")
    if not isinstance(layouts, dict):
        layouts = {}  # an older producer: its layouts are unknown, so foreign
    foreign = frozenset(
        table
        for table, schema in decoder.schemas_seen.items()
        if layouts.get(table) != schema.layout_hash
    )
    return Batch(group, ops, created, replay_of, entry_id, foreign)


class _OpDecoder:
    """Decodes the operations of one batch (the header's column names are checked once)."""

    def __init__(
        self, schemas: SchemaLookup, pool: str, group: str, where: str, row_names: dict[str, Any]
    ) -> None:
        self.schemas = schemas
        self.pool = pool
        self.group = group
        self.where = where
        self.row_names = row_names
        self._plans: dict[str, tuple[str, ...] | None] = {}
        self._schemas: dict[str, EntitySchema] = {}  # tables already looked up and checked
        # tables whose INSERT rows come in this worker's column order: their compiled decoder
        self._row_decoders: dict[str, RowDecoder] = {}

    def op(self, n: int, raw: Any) -> Operation:
        # Most operations are INSERTs into a table an earlier operation of the batch named,
        # with a row the compiled decoder takes: the checks ``_op`` would make, and one call.
        if type(raw) is list and len(raw) == 5:
            kind_code, table, entity_id, values, before = raw
            decode = self._row_decoders.get(table) if type(table) is str else None
            if (
                decode is not None
                and kind_code == "i"
                and type(entity_id) is int
                and 0 < entity_id <= _MAX_ID
                and type(values) is list
                and type(before) is dict
                and not before
            ):
                try:
                    fast = decode(entity_id, values)
                except (ValueError, TypeError, ArithmeticError, AttributeError):
                    fast = None  # ``_op`` takes the full path, which names what is wrong
                if fast is not None:
                    schema = self._schemas[table]
                    return Operation(INSERT, schema, entity_id, fast[0], {}, sql_row=fast[1])
        return self._op(n, raw)

    def _op(self, n: int, raw: Any) -> Operation:
        where = self.where
        if not isinstance(raw, list) or len(raw) != 5:
            raise MalformedBatchError(
                f"{where}, operation {n}: not [kind, table, id, values, before]"
            )
        kind_code, table, entity_id, values, before = raw
        kind = _KINDS.get(kind_code) if isinstance(kind_code, str) else None
        if kind is None:
            raise MalformedBatchError(f"{where}, operation {n}: unknown kind {kind_code!r}")
        # a batch's operations mostly name one table: its lookup and checks are made once
        schema = self._schemas.get(table) if isinstance(table, str) else None
        if schema is None:
            schema = self._schemas[table] = self._schema(table, n)
        if type(entity_id) is not int or not 0 < entity_id <= _MAX_ID:
            raise MalformedBatchError(f"{where}, operation {n}: bad id {entity_id!r}")
        if not isinstance(before, dict):
            raise MalformedBatchError(f"{where}, operation {n}: 'before' is not an object")
        sql_row = None
        if kind is INSERT and isinstance(values, list):
            decoded, sql_row = self._row(schema, table, entity_id, values, n)
        elif isinstance(values, dict):
            decoded = _decode_values(schema, values, where, n)
            if kind is INSERT and decoded.keys() != schema.data_column_names:
                _fill_defaults(schema, decoded, where, n)
        else:
            raise MalformedBatchError(f"{where}, operation {n}: values are not an object")
        if kind is DELETE and decoded:
            raise MalformedBatchError(f"{where}, operation {n}: DELETE with values")
        old = _decode_values(schema, before, where, n) if before else {}
        return Operation(kind, schema, entity_id, decoded, old, sql_row=sql_row)

    @property
    def schemas_seen(self) -> dict[str, EntitySchema]:
        """The schema of every table the batch's operations named."""
        return self._schemas

    def _schema(self, table: Any, n: int) -> EntitySchema:
        where = self.where
        if not isinstance(table, str):
            raise MalformedBatchError(f"{where}, operation {n}: bad table {table!r}")
        schema = self.schemas.schema_for_table(self.pool, table)
        if schema is None:
            raise SchemaLagError(
                f"{where}, operation {n}: table {table!r} is not an entity of group "
                f"{self.group!r} in this worker ({SCHEMA_AHEAD})",
                cause=f"table {table}",
            )
        if schema.options.async_group != self.group:
            raise MalformedBatchError(
                f"{where}, operation {n}: table {table!r} belongs to group "
                f"{schema.options.async_group!r}, not {self.group!r}",
                replayable=True,
            )
        return schema

    def _row(
        self, schema: EntitySchema, table: str, entity_id: int, row: list[Any], n: int
    ) -> tuple[dict[str, Any], str | None]:
        """An INSERT's values, and its SQL tuple where the compiled decoder made it."""
        if table not in self._plans:
            self._plans[table] = self._plan(schema, table)
        names = self._plans[table]
        if names is None:
            self._row_decoders[table] = schema.row_codec.decode_row  # ``op``'s shortcut
            return _decode_row(schema, entity_id, row, self.where, n)
        if len(row) != len(names):
            raise MalformedBatchError(
                f"{self.where}, operation {n}: INSERT row has {len(row)} values, "
                f"its header names {len(names)} columns"
            )
        decoded = _decode_values(schema, dict(zip(names, row, strict=True)), self.where, n)
        _fill_defaults(schema, decoded, self.where, n)
        return decoded, None

    def _plan(self, schema: EntitySchema, table: str) -> tuple[str, ...] | None:
        """The producer's column names of ``table``'s rows; None when they are this worker's."""
        raw = self.row_names.get(table)
        if raw is None:
            return None  # format 2: the rows are in this worker's column order
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise MalformedBatchError(f"{self.where}: bad column header for {table!r}")
        names = tuple(raw)
        if names == schema.data_column_order:
            return None
        if len(set(names)) != len(names):
            raise MalformedBatchError(f"{self.where}: column header of {table!r} repeats a name")
        return names


def _fill_defaults(schema: EntitySchema, values: dict[str, Any], where: str, n: int) -> None:
    """Give the columns an INSERT lacks (its producer predates them) this worker's default."""
    for column in schema.data_columns:
        if column.name in values:
            continue
        if column.default is not MISSING:
            value = column.default
        elif column.nullable:
            value = None
        else:
            value = column.type.zero
        if (value is None and not column.nullable) or (
            column.required and column.default is MISSING
        ):
            raise MalformedBatchError(
                f"{where}, operation {n}: INSERT without column {schema.table}.{column.name}, "
                "which has no default (the producer predates it)",
                replayable=True,
            )
        values[column.name] = value


def _decode_row(
    schema: EntitySchema, entity_id: int, row: list[Any], where: str, n: int
) -> tuple[dict[str, Any], str | None]:
    """An INSERT's values given as the row in this worker's column order, and its SQL tuple
    when the compiled decoder took the row."""
    columns = schema.data_columns
    if len(row) != len(columns):
        raise MalformedBatchError(
            f"{where}, operation {n}: INSERT row has {len(row)} values, "
            f"{schema.table} has {len(columns)} columns",
            replayable=True,
        )
    try:
        fast = schema.row_codec.decode_row(entity_id, row)
    except (ValueError, TypeError, ArithmeticError, AttributeError):
        fast = None  # the full path below says what is wrong, or accepts it after all
    if fast is not None:
        return fast
    result: dict[str, Any] = {}
    for column, value in zip(columns, row, strict=True):
        result[column.name] = _decode_value(schema, column, value, where, n)
    return result, None


def _decode_values(schema: EntitySchema, raw: dict[str, Any], where: str, n: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in raw.items():
        column = schema.columns_by_name.get(name) if isinstance(name, str) else None
        if column is None or name == "id":
            raise SchemaLagError(
                f"{where}, operation {n}: column {schema.table}.{name} is unknown to this "
                f"worker's {schema.name} ({SCHEMA_AHEAD})",
                cause=f"column {schema.table}.{name}",
            )
        result[name] = _decode_value(schema, column, value, where, n)
    return result


def _decode_value(schema: EntitySchema, column: Any, value: Any, where: str, n: int) -> Any:
    if value is None:
        if not column.nullable:
            raise MalformedBatchError(
                f"{where}, operation {n}: NULL for NOT NULL column {column.name}",
                replayable=True,
            )
        return None
    try:
        return column.type.validate(column.type.from_json(value))
    except (InvalidValue, ValueError, TypeError, AttributeError, ArithmeticError) as e:
        raise MalformedBatchError(
            f"{where}, operation {n}: bad value for {schema.table}.{column.name}: {e}",
            replayable=True,
        ) from None
