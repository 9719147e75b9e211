"""The compiled row codec decides exactly what the column types decide (no services).

The oracle is the per-value path the codec replaced: ``ColumnType.validate`` and ``to_json``
for every column, with the NOT NULL and required rules. For any values (valid, invalid, of the
wrong type, subclasses, edge sizes) the codec must give the same stored values, the same JSON
row, the same values written back on the entity, or a ValidationError naming the same field
with the same reason.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beeorm_celery import Entity, Field, Reference
from beeorm_celery.columns import InvalidValue
from beeorm_celery.errors import ValidationError
from beeorm_celery.schema import EntitySchema, build_schema


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Target(Entity, table="codec_target"):
    label: str = ""


class Wide(Entity, table="codec_wide"):
    name: str = Field(max_length=5, required=True)
    note: str | None = None  # TEXT, nullable
    count: int = 0
    maybe: int | None = None
    flag: bool = False
    ratio: float = 0.0
    price: Decimal = Field(precision=6, scale=2, default=Decimal("0.00"))
    blob: bytes = Field(max_length=4, default=b"")
    day: date | None = None
    at: datetime | None = None
    color: Color = Color.RED
    owner: Reference[Target] | None = None
    code: bytes = Field(max_length=3, required=True)
    # a DECIMAL checked on its text, nullable; and one of scale 0, whose text is no proof
    # (Decimal('1E+1') writes '10' and is stored as Decimal('10'))
    rate: Decimal | None = Field(precision=5, scale=3, default=None)
    whole: Decimal = Field(precision=4, scale=0, default=Decimal(0))


SCHEMA = build_schema(Wide, {"Target": Target, "Color": Color})


class Other(int):
    """An int subclass: validate converts it, so the codec must not pass it through."""


class Naive(datetime):
    """A datetime subclass: the codec's exact-type check must send it to validate."""


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-5, max_value=5).map(Other),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.decimals(min_value=-10_000, max_value=10_000, places=3),
    st.decimals(min_value=-10_000, max_value=10_000, places=2),
    st.sampled_from([Decimal("1E+1"), Decimal("-0.00"), Decimal("0.000"), Decimal("-0")]),
    st.sampled_from([Decimal("12.30"), Decimal("1.230"), Decimal("99.999"), Decimal("9999")]),
    # stored form, one integer digit too many for price (6, 2) and rate (5, 3), and the largest
    st.sampled_from([Decimal("10000.00"), Decimal("100.000"), Decimal("9999.99")]),
    # exponent forms: str() writes the first plainly, the others with an exponent
    st.sampled_from([Decimal("1.0E-2"), Decimal("0E-3"), Decimal("-0E-2"), Decimal("1E-7")]),
    st.text(max_size=8),
    st.text(alphabet=st.characters(codec="ascii"), max_size=8),
    st.sampled_from(["", "abc", "héllo", "\ud800", "x" * 70_000]),
    st.binary(max_size=6),
    st.sampled_from([b"", bytearray(b"ab"), memoryview(b"abc")]),
    st.dates(),
    st.datetimes(),
    st.datetimes().map(lambda d: d.replace(tzinfo=UTC)),
    st.datetimes().map(
        lambda d: Naive(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond)
    ),
    st.sampled_from([*Color, "red", "green", 3]),
    st.integers(min_value=-1, max_value=2**64).map(lambda i: Reference(Target, i)),
    st.sampled_from([Reference(Wide, 1)]),
)


def _oracle(schema: EntitySchema, entity: Entity) -> tuple[dict[str, Any], bytes]:
    """The per-value path the codec replaced, verbatim in behaviour."""
    state = entity.__dict__
    result: dict[str, Any] = {}
    row: list[Any] = []
    for column in schema.data_columns:
        value = state.get(column.name)
        if value is None:
            if not column.nullable:
                reason = (
                    "is required" if column.required else "cannot be None (the column is NOT NULL)"
                )
                raise ValidationError(schema.name, column.name, reason, entity.id)
            result[column.name] = None
            row.append(None)
            continue
        try:
            value = column.type.validate(value)
        except InvalidValue as e:
            raise ValidationError(schema.name, column.name, str(e), entity.id) from None
        if column.required and value in ("", b""):
            raise ValidationError(schema.name, column.name, "is required (empty)", entity.id)
        result[column.name] = value
        state[column.name] = value
        row.append(column.type.to_json(value))
    return result, orjson.dumps(row)


def _entity(values: dict[str, Any]) -> Wide:
    entity = Wide.__new__(Wide)
    entity.__dict__.update(SCHEMA.default_values())
    entity.__dict__.update(code=b"c", name="n")
    entity.__dict__.update(values)
    entity.__dict__["id"] = 7
    return entity


def _outcome(run: Any, entity: Wide) -> tuple[str, Any]:
    try:
        return "ok", run(entity)
    except ValidationError as e:
        return "error", (e.field, e.reason, e.entity_id)


@settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.dictionaries(st.sampled_from(sorted(SCHEMA.data_column_names)), ANY_VALUE, max_size=4))
def test_codec_agrees_with_the_column_types(values: dict[str, Any]) -> None:
    compiled, reference = _entity(values), _entity(values)
    got = _outcome(SCHEMA.row_codec.validate, compiled)
    want = _outcome(lambda e: _oracle(SCHEMA, e), reference)
    assert got == want
    # the values written back on the entity (the stored form) are the same objects' values,
    # in the same form (Decimal('1.5') == Decimal('1.50'): repr tells them apart)
    assert compiled.__dict__ == reference.__dict__
    assert {k: repr(v) for k, v in compiled.__dict__.items()} == {
        k: repr(v) for k, v in reference.__dict__.items()
    }
    if got[0] == "ok":
        full, row = got[1]
        assert SCHEMA.row_codec.encode(full) == row


def test_fast_path_keeps_the_stored_form() -> None:
    entity = _entity(
        {"price": Decimal("1.5"), "owner": 3, "count": Other(4), "at": datetime(2026, 1, 2, 3)}
    )
    full, row = SCHEMA.row_codec.validate(entity)
    assert full["price"] == Decimal("1.50") and str(full["price"]) == "1.50"
    assert full["owner"] == Reference(Target, 3) and entity.owner == Reference(Target, 3)
    assert type(full["count"]) is int
    assert orjson.loads(row)[6] == "1.50"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("price", Decimal("9999.99")),  # DECIMAL(6, 2): the largest stored value
        ("price", Decimal("10000.00")),  # one integer digit too many, in the stored form
        ("price", Decimal("-9999.99")),
        ("price", Decimal("-10000.00")),
        ("price", Decimal("0.00")),
        ("price", Decimal("-0.00")),
        ("rate", Decimal("99.999")),  # DECIMAL(5, 3)
        ("rate", Decimal("100.000")),
        ("rate", Decimal("1E-7")),
    ],
)
def test_a_decimal_at_its_bounds_is_taken_or_refused_as_the_column_type_does(
    column: str, value: Decimal
) -> None:
    # the codec's text check settles most values without the pattern: the bounds of its
    # length and sign tests must be the column's
    got = _outcome(SCHEMA.row_codec.validate, _entity({column: value}))
    want = _outcome(lambda e: _oracle(SCHEMA, e), _entity({column: value}))
    assert got == want


def test_json_values_of_some_columns() -> None:
    got = SCHEMA.row_codec.json_values(
        {"blob": b"\x00\x01", "owner": Reference(Target, 9), "day": None, "color": Color.BLUE}
    )
    assert got == {"blob": "AAE=", "owner": 9, "day": None, "color": "blue"}


# --- the worker's side: decode_row and sql_row against the per-value path they replace

JSON_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.text(alphabet=st.characters(codec="ascii"), max_size=8),
    st.sampled_from(["", "x" * 6, "héllo", "1.5", "1.555", "-0.00", "9999.99", "10000", "abc"]),
    st.sampled_from(["NaN", "1e3", "2026-01-02", "0999-01-02", "2026-01-02T03:04:05"]),
    st.sampled_from(["2026-01-02T03:04:05+02:00", "2026-13-01", "AAE=", "red", "green"]),
    # near the shape isoformat() writes: the decoder's pattern must take exactly that
    st.sampled_from(["2026-01-02T03:04:05.000000", "2026-01-02T03:04:05.000100", "2026-02-30"]),
    st.sampled_from(["2026-02-30T00:00:00", "2026-01-02 03:04:05", "2026-01-02T03:04:05.5"]),
    st.sampled_from(["0999-01-02T00:00:00", "\uff12026-01-02", "2026-01-02T24:00:00", "1e2"]),
    st.decimals(min_value=-10_000, max_value=10_000, places=3).map(str),
    # the canonical text the compiled decoder takes as the literal itself (and its near misses)
    st.decimals(min_value=-10_000, max_value=10_000, places=2).map(lambda d: format(d, "f")),
    st.sampled_from(["0.00", "-0.01", "-0.0", "0", "00.50", "9999.990", "+1.00", " 1.00"]),
    st.dates().map(date.isoformat),
    st.datetimes().map(datetime.isoformat),
    st.lists(st.integers(), max_size=2),
)


def _stored(value: Any) -> Any:
    # Decimal("1.5") == Decimal("1.50"): compare the stored form, not only the number
    return (type(value), str(value) if isinstance(value, Decimal) else value)


def _decoded_the_full_way(row: list[Any]) -> dict[str, Any] | None:
    result: dict[str, Any] = {}
    for column, value in zip(SCHEMA.data_columns, row, strict=True):
        if value is None:
            if not column.nullable:
                return None
            result[column.name] = None
            continue
        try:
            result[column.name] = column.type.validate(column.type.from_json(value))
        except (ValueError, TypeError, ArithmeticError, AttributeError):
            return None
    return result


# A row as a producer writes it, with a few values replaced by anything JSON can carry.
_WRITTEN = orjson.loads(SCHEMA.row_codec.validate(_entity({"at": datetime(2026, 1, 2)}))[1])
ROWS = st.dictionaries(
    st.integers(min_value=0, max_value=len(_WRITTEN) - 1), JSON_VALUE, max_size=3
).map(lambda changes: [changes.get(i, v) for i, v in enumerate(_WRITTEN)])


@settings(max_examples=800, deadline=None, database=None)
@given(ROWS)
def test_the_compiled_decoder_takes_only_what_the_column_types_take(row: list[Any]) -> None:
    try:
        fast = SCHEMA.row_codec.decode_row(41, list(row))
    except (ValueError, TypeError, ArithmeticError, AttributeError):
        fast = None  # the batch decoder then takes the full path
    if fast is None:
        return
    values, sql_row = fast
    want = _decoded_the_full_way(row)
    assert want is not None, "the compiled decoder accepted a row the column types refuse"
    assert {k: _stored(v) for k, v in values.items()} == {k: _stored(v) for k, v in want.items()}
    # the SQL tuple made from the JSON text is the one the stored values give
    assert sql_row == SCHEMA.row_codec.sql_row(41, want)


def test_the_compiled_decoder_takes_a_row_the_producer_wrote() -> None:
    entity = _entity({"price": Decimal("12.5"), "at": datetime(2026, 1, 2, 3, 4, 5, 6)})
    full, row = SCHEMA.row_codec.validate(entity)
    decoded = SCHEMA.row_codec.decode_row(7, orjson.loads(row))
    assert decoded is not None  # the fast path: the producer's text is the canonical one
    values, sql_row = decoded
    assert {k: _stored(v) for k, v in values.items()} == {k: _stored(v) for k, v in full.items()}
    assert sql_row == SCHEMA.row_codec.sql_row(7, full)
    assert "12.50" in sql_row and "'2026-01-02 03:04:05.000006'" in sql_row


_PRICE = SCHEMA.data_column_order.index("price")
_AT = SCHEMA.data_column_order.index("at")


@pytest.mark.parametrize(
    ("column", "text"),
    [
        *[
            (_PRICE, t)
            for t in ["12.50", "0.00", "-0.01", "9999.99", "1.5", "0.2", "-0.00", "1E+1", "00.50"]
        ],
        *[(_PRICE, t) for t in ["10000.00", "1.555", "12.500", "+1.00", "1.50 ", "٣.00"]],
        *[
            (_AT, t)
            for t in ["2026-01-02T03:04:05", "2026-01-02T03:04:05.000006", "2026-01-02 03:04:05"]
        ],
        *[(_AT, t) for t in ["2026-01-02T03:04:05.000000", "2026-02-30T00:00:00", "2026-01-02"]],
    ],
)
def test_text_the_decoder_takes_as_the_literal_is_what_the_stored_value_writes(
    column: int, text: str
) -> None:
    """A DECIMAL's or a datetime's JSON text goes into the SQL as it is only when it is the
    text of the stored value; any other form (valid or not) is decoded the full way."""
    row = list(_WRITTEN)
    row[column] = text
    want = _decoded_the_full_way(row)
    try:
        fast = SCHEMA.row_codec.decode_row(41, row)
    except (ValueError, TypeError, ArithmeticError, AttributeError):
        fast = None
    if fast is None:
        return  # the full path decides (and names what is wrong)
    values, sql_row = fast
    assert want is not None, f"took {text!r}, which the column type refuses"
    assert {k: _stored(v) for k, v in values.items()} == {k: _stored(v) for k, v in want.items()}
    assert sql_row == SCHEMA.row_codec.sql_row(41, want)


@settings(max_examples=400, deadline=None, database=None)
@given(st.dictionaries(st.sampled_from(sorted(SCHEMA.data_column_names)), ANY_VALUE, max_size=4))
def test_the_compiled_sql_row_is_the_column_types_literals(values: dict[str, Any]) -> None:
    try:
        full, _ = SCHEMA.row_codec.validate(_entity(values))
    except ValidationError:
        return
    literals = [
        "NULL" if full[c.name] is None else c.type.sql_literal(full[c.name])
        for c in SCHEMA.data_columns
    ]
    assert SCHEMA.row_codec.sql_row(41, full) == "(41, " + ", ".join(literals) + ")"


class IdOnly(Entity, table="codec_id_only"):
    pass


def test_an_entity_of_an_id_only_decodes_and_writes_its_row() -> None:
    codec = build_schema(IdOnly, {}).row_codec
    assert codec.decode_row(5, []) == ({}, "(5)")
    assert codec.decode_row(5, [1]) is None  # the full path then says what is wrong
    assert codec.sql_row(5, {}) == "(5)"
