"""Law 1: a flush that would write bad data raises ValidationError naming entity, field and
reason, and nothing is written, cached or queued (``flush`` and ``flush_async`` alike)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
import redis

from beeorm_celery import (
    Context,
    DuplicateKeyError,
    Engine,
    Entity,
    Field,
    Reference,
    Registry,
    ValidationError,
)
from tests.support import services


class Status(Enum):
    ACTIVE = "active"
    BLOCKED = "blocked"


class Category(Entity, redis_cache=True, local_cache=True, async_group="catalog"):
    name: str = Field(max_length=100, required=True, unique="name")


class Product(Entity, redis_cache=True, async_group="catalog", cache_all=True):
    name: str = Field(max_length=200, required=True)
    price: Decimal = Field(precision=10, scale=2, default=Decimal("0.00"))
    wide: Decimal = Field(precision=65, scale=30, default=Decimal("0"))
    stock: int = 0
    status: Status = Status.ACTIVE
    weight: float | None = None
    created_at: datetime | None = None
    code: bytes = Field(max_length=4, default=b"")
    category: Reference[Category] | None = Field(cached=True)


# (field values, field named in the error, words of the reason)
CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "missing required": ({}, "name", "required"),
    "empty required": ({"name": ""}, "name", "required"),
    "string over max_length": ({"name": "x" * 201}, "name", "more than max_length=200"),
    "emoji string over max_length": ({"name": "😀" * 201}, "name", "201 characters"),
    "bytes over max_length": ({"code": b"12345"}, "code", "more than max_length=4"),
    "str for an int": ({"stock": "5"}, "stock", "expected int, got str"),
    "bool for an int": ({"stock": True}, "stock", "expected int, got bool"),
    "int beyond BIGINT": ({"stock": 2**63}, "stock", "out of the BIGINT range"),
    "float for a Decimal": ({"price": 1.5}, "price", "expected Decimal, got float"),
    "Decimal with too many integer digits": (
        {"price": Decimal("100000000.00")},
        "price",
        "at most 8 digits before the point",
    ),
    "Decimal with too many decimal places": (
        {"price": Decimal("1.005")},
        "price",
        "more than 2 decimal places",
    ),
    "Decimal(65,30) with too many decimal places": (
        {"wide": Decimal("1" * 35 + "." + "1" * 31)},
        "wide",
        "more than 30 decimal places",
    ),
    "Decimal(65,30) with too many integer digits": (
        {"wide": Decimal("1" * 36)},
        "wide",
        "at most 35 digits before the point",
    ),
    "Decimal NaN": ({"price": Decimal("NaN")}, "price", "cannot be stored"),
    "unknown enum member": ({"status": "deleted"}, "status", "not a member of Status"),
    "member of another enum": ({"status": Category}, "status", "not a member of Status"),
    "NaN float": ({"weight": float("nan")}, "weight", "NaN"),
    "infinite float": ({"weight": float("inf")}, "weight", "infinity"),
    "aware datetime": (
        {"created_at": datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2)))},
        "created_at",
        "timezone-aware",
    ),
    "datetime before year 1000": ({"created_at": datetime(999, 1, 1)}, "created_at", "1000"),
    "None in NOT NULL": ({"stock": None}, "stock", "NOT NULL"),
    "None in NOT NULL Decimal": ({"price": None}, "price", "NOT NULL"),
    "reference to a missing kind": ({"category": "Cars"}, "category", "Reference or int id"),
    "reference id zero": ({"category": 0}, "category", "not a valid id"),
    "lone surrogate in a string": ({"name": "bad \udc80"}, "name", "not valid UTF-8"),
}


def snapshot(client: redis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    """Every key of this test's prefix with its serialized value."""
    return {key: client.dump(key) for key in client.scan_iter(match=f"{prefix}:*", count=1000)}


def table_rows(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    """The rows MySQL holds, read with a plain SELECT on one of the engine's connections."""
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM `{table}` ORDER BY id")
        return list(cursor.fetchall())


def flush(ctx: Context, how: str) -> None:
    if how == "flush":
        ctx.flush()
    else:
        ctx.flush_async()


def expect_validation_error(ctx: Context, how: str, field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        flush(ctx, how)
    error = info.value
    assert error.entity == "Product"
    assert error.field == field
    assert reason in error.reason
    assert "Product" in str(error) and f".{field}:" in str(error) and reason in str(error)


@pytest.fixture(scope="module")
def shared(mysql_server_url: str, redis_url: str) -> Iterator[tuple[Engine, str]]:
    """One database and key prefix for every invalid-new-entity case: a refused flush leaves
    them as they were, which is what each case checks (engine, key_prefix)."""
    mysql_url = services.new_database(mysql_server_url)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    registry = Registry(key_prefix=prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(Category, Product)
    engine = registry.validate()
    engine.update_schema()
    yield engine, prefix
    engine.close()
    services.drop_database(mysql_url)
    services.delete_keys(redis_url, prefix)


@pytest.mark.parametrize("how", ["flush", "flush_async"])
@pytest.mark.parametrize("case", list(CASES))
def test_an_invalid_new_entity_raises_and_nothing_is_written_cached_or_queued(
    shared: tuple[Engine, str], case: str, how: str
) -> None:
    engine, key_prefix = shared
    values, field, reason = CASES[case]
    client = engine.redis("default")
    ctx = engine.new_context()
    category = ctx.new_entity(Category, name="Cars")  # a valid entity in the same flush
    product = ctx.new_entity(Product, **{"name": "ok", "category": category, **values})
    if case == "missing required":
        del product.__dict__["name"]  # never set at all (new_entity fills the zero value)
    before = snapshot(client, key_prefix)

    expect_validation_error(ctx, how, field, reason)

    assert table_rows(engine, "product") == []
    assert table_rows(engine, "category") == []
    assert snapshot(client, key_prefix) == before
    assert client.exists(engine.keys.log("catalog")) == 0
    assert ctx.pending == 2  # still tracked: fix the value and flush again
    read = engine.new_context()
    assert read.get_by_id(Category, category.id) is None
    assert read.get_by_unique_index(Category, "name", "Cars") is None


@pytest.mark.parametrize("how", ["flush", "flush_async"])
def test_an_invalid_edit_raises_and_the_stored_entity_stays_as_it_was(
    make_engine: Callable[..., Engine], key_prefix: str, how: str
) -> None:
    engine = make_engine(Category, Product)
    client = engine.redis("default")
    ctx = engine.new_context()
    category = ctx.new_entity(Category, name="Cars")
    product = ctx.new_entity(Product, name="Tesla", price=Decimal("10.00"), category=category)
    ctx.flush()
    rows = table_rows(engine, "product")
    ctx = engine.new_context()
    loaded = ctx.get_by_id(Product, product.id)
    assert loaded is not None
    before = snapshot(client, key_prefix)
    edited = ctx.edit(loaded)
    edited.name = "Model S"  # a valid change in the same entity
    edited.price = Decimal("0.001")
    moved = ctx.edit(category)
    moved.name = "Automobiles"  # and a valid change of another entity

    expect_validation_error(ctx, how, "price", "more than 2 decimal places")

    assert table_rows(engine, "product") == rows
    assert snapshot(client, key_prefix) == before
    assert client.exists(engine.keys.log("catalog")) == 0
    read = engine.new_context()
    again = read.get_by_id(Product, product.id)
    assert again is not None and again.name == "Tesla" and again.price == Decimal("10.00")
    assert loaded.name == "Tesla"  # the original is untouched
    found = read.get_by_unique_index(Category, "name", "Cars")
    assert found is not None and found.id == category.id


@pytest.mark.parametrize("how", ["flush", "flush_async"])
def test_after_fixing_the_value_the_same_context_flushes(
    make_engine: Callable[..., Engine], how: str
) -> None:
    """The control for the tests above: a valid flush does write, cache and (async) queue."""
    engine = make_engine(Category, Product)
    client = engine.redis("default")
    ctx = engine.new_context()
    product = ctx.new_entity(Product, name="ok", weight=float("nan"))
    with pytest.raises(ValidationError):
        flush(ctx, how)
    product.weight = 1.5
    flush(ctx, how)
    assert ctx.pending == 0
    assert client.exists(engine.keys.entity(engine.schema(Product), product.id)) == 1
    if how == "flush":
        assert len(table_rows(engine, "product")) == 1
    else:
        assert client.xlen(engine.keys.log("catalog")) == 1
        assert table_rows(engine, "product") == []


def test_a_four_byte_emoji_counts_as_one_character_of_max_length(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    product = ctx.new_entity(Product, name="😀" * 200)
    ctx.flush()
    loaded = engine.new_context().get_by_id(Product, product.id)
    assert loaded is not None and loaded.name == "😀" * 200


def test_a_duplicate_key_in_a_sync_flush_commits_nothing_and_caches_nothing(
    make_engine: Callable[..., Engine], key_prefix: str
) -> None:
    engine = make_engine(Category, Product)
    client = engine.redis("default")
    ctx = engine.new_context()
    ctx.new_entity(Category, name="Cars")
    ctx.flush()
    rows = table_rows(engine, "category")
    ctx = engine.new_context()
    bikes = ctx.new_entity(Category, name="Bikes")
    ctx.new_entity(Category, name="CARS")  # the same as "Cars" for the unique index
    before = snapshot(client, key_prefix)
    with pytest.raises(DuplicateKeyError) as info:
        ctx.flush()
    assert info.value.code == 1062
    assert table_rows(engine, "category") == rows
    assert snapshot(client, key_prefix) == before
    assert engine.new_context().get_by_id(Category, bikes.id) is None
    assert ctx.pending == 2
