"""Every column type round-trips exactly: through MySQL with the caches cleared, through the
Redis copy a read filled, through the Redis copy a flush wrote, and through the async flush."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from beeorm_celery import Context, Engine, Entity, Field, Reference, consume_async_flush_events
from tests.support import services


class Colour(Enum):
    RED = "red"
    QUOTE = 'it\'s "quoted"'
    BACKSLASH = "back\\slash"
    EMOJI = "paint 🎨"


class Target(Entity, redis_cache=True, async_group="roundtrip"):
    name: str = Field(max_length=20)


class Everything(Entity, redis_cache=True, async_group="roundtrip"):
    text: str = Field(max_length=255)
    long_text: str | None = None  # TEXT
    blob: bytes | None = None  # BLOB
    short_bytes: bytes = Field(max_length=300, default=b"")  # VARBINARY
    number: int = 0
    flag: bool = False
    ratio: float = 0.0
    money: Decimal = Field(precision=10, scale=2, default=Decimal("0"))
    wide: Decimal = Field(precision=65, scale=30, default=Decimal("0"))
    whole: Decimal = Field(precision=5, scale=0, default=Decimal("0"))
    day: date = date(2000, 1, 1)
    moment: datetime = datetime(2000, 1, 1)
    colour: Colour = Colour.RED
    target: Reference[Target] | None = None
    maybe_text: str | None = Field(None, max_length=40)
    maybe_bytes: bytes | None = Field(None, max_length=40)
    maybe_number: int | None = None
    maybe_flag: bool | None = None
    maybe_ratio: float | None = None
    maybe_money: Decimal | None = Field(None, precision=4, scale=3)
    maybe_day: date | None = None
    maybe_moment: datetime | None = None
    maybe_colour: Colour | None = None


TRICKY_TEXT = (
    "emoji 😀🎉👩‍👩‍👧 quotes ' \" ` backslashes \\ \\\\ \\' NUL \x00 tab\t nl\n cr\r %s ? end"
)
# Every character up to U+3000 (NUL included) and some beyond the BMP: ~30 KB of UTF-8, in TEXT
MANY_CHARACTERS = "".join(chr(c) for c in range(0x3000)) + "𝄞😀🀄🧬"
WIDE_MAX = Decimal("9" * 35 + "." + "9" * 30)
WIDE_MIN = Decimal("-" + "9" * 35 + "." + "9" * 30)  # not -WIDE_MAX: that rounds to 28 digits

CASES: dict[str, dict[str, Any]] = {
    "largest": {
        "text": TRICKY_TEXT,
        "long_text": MANY_CHARACTERS,
        "blob": bytes(range(256)) * 4,
        "short_bytes": bytes(range(256)),
        "number": 2**63 - 1,
        "flag": True,
        "ratio": 1.7976931348623157e308,
        "money": Decimal("99999999.99"),
        "wide": WIDE_MAX,
        "whole": Decimal("99999"),
        "day": date(9999, 12, 31),
        "moment": datetime(9999, 12, 31, 23, 59, 59, 999999),
        "colour": Colour.QUOTE,
        "maybe_text": "😀" * 40,  # 40 characters, 160 bytes: max_length counts characters
        "maybe_bytes": b"\x00\xff" * 20,
        "maybe_number": 0,
        "maybe_flag": False,
        "maybe_ratio": 0.0,
        "maybe_money": Decimal("9.999"),
        "maybe_day": date(2024, 2, 29),
        "maybe_moment": datetime(2024, 2, 29, 12, 0, 0, 1),
        "maybe_colour": Colour.EMOJI,
    },
    "smallest": {
        "text": "",
        "long_text": "",
        "blob": b"",
        "short_bytes": b"\x00",
        "number": -(2**63),
        "flag": False,
        "ratio": 5e-324,
        "money": Decimal("-99999999.99"),
        "wide": WIDE_MIN,
        "whole": Decimal("-99999"),
        "day": date(1000, 1, 1),
        "moment": datetime(1000, 1, 1, 0, 0, 0, 1),
        "colour": Colour.BACKSLASH,
        "maybe_text": "trailing spaces   ",
        "maybe_bytes": b"",
        "maybe_number": -1,
        "maybe_flag": True,
        "maybe_ratio": -2.2250738585072014e-308,
        "maybe_money": Decimal("-9.999"),
        "maybe_day": date(1000, 1, 1),
        "maybe_moment": datetime(2000, 1, 1),
        "maybe_colour": Colour.RED,
    },
    "ordinary": {
        "text": "ends with a backslash \\",
        "long_text": "'; DROP TABLE everything; --",
        "blob": b"\\'\"\x1a\r\n",
        "short_bytes": b"_binary'x'",
        "number": 42,
        "flag": True,
        "ratio": 0.1,
        "money": Decimal("0.10"),
        "wide": Decimal("0.000000000000000000000000000001"),
        "whole": Decimal("0"),
        "day": date(2024, 11, 21),
        "moment": datetime(2024, 11, 21, 6, 7, 8, 123456),
        "colour": Colour.EMOJI,
        "maybe_text": "Zażółć gęślą jaźń",
        "maybe_bytes": bytes([0x80, 0xC0, 0xFE]),
        "maybe_number": 7,
        "maybe_flag": False,
        "maybe_ratio": 1 / 3,
        "maybe_money": Decimal("0.001"),
        "maybe_day": date(1970, 1, 1),
        "maybe_moment": datetime(1970, 1, 1, 0, 0, 0, 999999),
        "maybe_colour": Colour.QUOTE,
    },
    "nulls": {
        "text": "only NOT NULL columns set",
        "long_text": None,
        "blob": None,
        "target": None,
        **{
            f"maybe_{n}": None
            for n in (
                "text",
                "bytes",
                "number",
                "flag",
                "ratio",
                "money",
                "day",
                "moment",
                "colour",
            )
        },
    },
}


def expected_values(case: str, target: Target) -> dict[str, Any]:
    values = dict(CASES[case])
    values.setdefault("target", Reference(Target, target.id))
    return values


def assert_same(entity: Entity | None, expected: dict[str, Any]) -> None:
    assert entity is not None
    for name, want in expected.items():
        got = getattr(entity, name)
        assert type(got) is type(want), f"{name}: {type(got).__name__} instead of {want!r:.80}"
        if isinstance(want, float):
            assert repr(got) == repr(want), name  # bit for bit
        else:
            assert got == want, f"{name}: {got!r:.120} != {want!r:.120}"


def delete_rows_in_mysql(mysql_url: str) -> None:
    """Remove the rows behind the ORM's back: a read that still finds them read Redis."""
    conn = services.server_connection(mysql_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DELETE FROM `{mysql_url.rsplit('/', 1)[1]}`.`everything`")
    finally:
        conn.close()


def new_entities(engine: Engine) -> tuple[Context, dict[str, tuple[int, dict[str, Any]]]]:
    """A context with one new entity per case (not flushed), and per case its id and values."""
    ctx = engine.new_context()
    target = ctx.new_entity(Target, name="target")
    made: dict[str, tuple[int, dict[str, Any]]] = {}
    for case in CASES:
        values = expected_values(case, target)
        entity = ctx.new_entity(Everything, **values)
        made[case] = (entity.id, values)
    return ctx, made


def test_every_type_round_trips_through_mysql_and_then_through_the_cache_the_read_filled(
    make_engine: Callable[..., Engine], mysql_url: str, redis_url: str, key_prefix: str
) -> None:
    engine = make_engine(Target, Everything)
    ctx, made = new_entities(engine)
    ctx.flush()
    services.delete_keys(redis_url, key_prefix)

    from_mysql = make_engine(Target, Everything, update_schema=False).new_context()
    for entity_id, values in made.values():
        assert_same(from_mysql.get_by_id(Everything, entity_id), values)

    delete_rows_in_mysql(mysql_url)
    from_redis = make_engine(Target, Everything, update_schema=False).new_context()
    for entity_id, values in made.values():
        assert_same(from_redis.get_by_id(Everything, entity_id), values)


def test_every_type_round_trips_through_the_cache_a_flush_wrote(
    make_engine: Callable[..., Engine], mysql_url: str
) -> None:
    engine = make_engine(Target, Everything)
    ctx, made = new_entities(engine)
    ctx.flush()
    delete_rows_in_mysql(mysql_url)
    read = make_engine(Target, Everything, update_schema=False).new_context()
    for entity_id, values in made.values():
        assert_same(read.get_by_id(Everything, entity_id), values)


def test_every_type_round_trips_through_an_async_flush_into_mysql(
    make_engine: Callable[..., Engine], redis_url: str, key_prefix: str
) -> None:
    engine = make_engine(Target, Everything)
    ctx, made = new_entities(engine)
    ctx.flush_async()
    before_apply = make_engine(Target, Everything, update_schema=False).new_context()
    for entity_id, values in made.values():
        assert_same(before_apply.get_by_id(Everything, entity_id), values)

    report = consume_async_flush_events(engine)
    assert report["roundtrip"].applied_batches == 1
    services.delete_keys(redis_url, key_prefix)
    from_mysql = make_engine(Target, Everything, update_schema=False).new_context()
    for entity_id, values in made.values():
        assert_same(from_mysql.get_by_id(Everything, entity_id), values)


def test_edited_values_round_trip_and_unchanged_columns_keep_theirs(
    make_engine: Callable[..., Engine], redis_url: str, key_prefix: str
) -> None:
    engine = make_engine(Target, Everything)
    ctx, made = new_entities(engine)
    ctx.flush()
    smallest_id, smallest = made["smallest"]
    largest_id, largest = made["largest"]
    ctx = engine.new_context()
    entity = ctx.get_by_id(Everything, smallest_id)
    assert entity is not None
    edited = ctx.edit(entity)
    for name in ("text", "blob", "wide", "moment", "colour", "maybe_money", "maybe_ratio"):
        setattr(edited, name, largest[name])
    ctx.flush()
    want = {
        **smallest,
        **{
            n: largest[n]
            for n in (
                "text",
                "blob",
                "wide",
                "moment",
                "colour",
                "maybe_money",
                "maybe_ratio",
            )
        },
    }
    services.delete_keys(redis_url, key_prefix)
    read = make_engine(Target, Everything, update_schema=False).new_context()
    assert_same(read.get_by_id(Everything, smallest_id), want)
    assert_same(read.get_by_id(Everything, largest_id), largest)


def test_values_are_stored_in_the_columns_form(
    make_engine: Callable[..., Engine], redis_url: str, key_prefix: str
) -> None:
    """An int in a float or Decimal column, a Decimal with fewer places, an enum's value and a
    bare id read back as the column's own type."""
    engine = make_engine(Target, Everything)
    ctx = engine.new_context()
    target = ctx.new_entity(Target, name="t")
    entity = ctx.new_entity(
        Everything,
        text="x",
        ratio=3,
        money=Decimal("1.5"),
        whole=7,
        colour="red",
        target=target.id,
    )
    ctx.flush()
    want = {
        "ratio": 3.0,
        "money": Decimal("1.50"),
        "whole": Decimal("7"),
        "colour": Colour.RED,
        "target": Reference(Target, target.id),
    }
    assert_same(entity, want)  # the flushed entity holds the stored form
    services.delete_keys(redis_url, key_prefix)
    read = make_engine(Target, Everything, update_schema=False).new_context()
    loaded = read.get_by_id(Everything, entity.id)
    assert_same(loaded, want)
    assert loaded is not None and str(loaded.money) == "1.50"
