"""Reads: local cache, then Redis, then MySQL. Cached reads issue no SELECT, misses fill the
cache, and the unique-index, reference and all-ids caches follow edits and deletes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest

from beeorm_celery import (
    ConfigError,
    Context,
    Engine,
    Entity,
    Field,
    Pager,
    Reference,
    Where,
    consume_async_flush_events,
)
from beeorm_celery.cache_patch import PENDING_TABLE_FIELD
from beeorm_celery.errors import QueryError
from beeorm_celery.keys import COMPLETE_FIELD, TOMBSTONE
from tests.support import services


class Kind(Enum):
    CAR = "car"
    BIKE = "bike"


class Category(Entity, redis_cache=True, cache_all=True, async_group="catalog"):
    name: str = Field(max_length=100, required=True, unique="name")


class Maker(Entity, redis_cache=True, async_group="catalog"):
    name: str = Field(max_length=100)


class Product(Entity, redis_cache=True, async_group="catalog"):
    name: str = Field(max_length=200, required=True)
    code: str = Field(max_length=20, unique="code_in_shop")
    shop: int = Field(default=1, unique="code_in_shop")
    price: Decimal = Field(precision=10, scale=2, default=Decimal("0.00"))
    stock: int = 0
    kind: Kind = Kind.CAR
    released: date | None = None
    category: Reference[Category] | None = Field(cached=True)
    maker: Reference[Maker] | None = None  # not cached: its lists come from MySQL


class Note(Entity, async_group="catalog"):
    """No cache at all: every read goes to MySQL."""

    text: str = Field(max_length=255, unique=True)
    topic: Reference[Category] | None = None


ENTITIES = (Category, Maker, Product, Note)


# --- counting the SELECTs an engine runs


def selects_run(engine: Engine) -> int:
    """Com_select summed over the engine's pooled MySQL connections.

    Each counter belongs to one session, so other clients of the server (other developers'
    tests) cannot move it, and every read the engine makes runs on one of these connections:
    they all sit idle in the pool between calls. ``SHOW SESSION STATUS`` itself is not counted
    as a SELECT.
    """
    pool = engine.mysql["default"]
    total = 0
    for conn, _ in list(pool._idle):  # idle = every connection, when no call is running
        with conn.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Com_select'")
            row = cursor.fetchone()
            assert row is not None
            total += int(row[1])
    return total


def fresh_engine(make_engine: Callable[..., Engine]) -> Engine:
    """Another engine on the same database and prefix: empty local caches, no pooled session."""
    return make_engine(*ENTITIES, update_schema=False)


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(*ENTITIES)


@pytest.fixture
def catalog(engine: Engine) -> dict[str, Any]:
    """Two categories, a maker, four products, a note: flushed."""
    ctx = engine.new_context()
    cars = ctx.new_entity(Category, name="Cars")
    bikes = ctx.new_entity(Category, name="Bikes")
    maker = ctx.new_entity(Maker, name="ACME")
    products = [
        ctx.new_entity(
            Product,
            name="Tesla",
            code="T-1",
            price=Decimal("50.00"),
            stock=3,
            category=cars,
            maker=maker,
        ),
        ctx.new_entity(
            Product,
            name="Fiat",
            code="F-1",
            price=Decimal("9.50"),
            stock=0,
            category=cars,
            maker=maker,
        ),
        ctx.new_entity(
            Product,
            name='O\'Reilly "Bike" \\ 100%',
            code="B-1",
            shop=2,
            price=Decimal("12.00"),
            stock=5,
            kind=Kind.BIKE,
            category=bikes,
        ),
        ctx.new_entity(
            Product,
            name="Scooter",
            code="S-?",
            price=Decimal("30.00"),
            stock=1,
            kind=Kind.BIKE,
            released=date(2024, 5, 1),
        ),
    ]
    note = ctx.new_entity(Note, text="hello", topic=cars)
    ctx.flush()
    return {"cars": cars, "bikes": bikes, "maker": maker, "products": products, "note": note}


def ids(entities: list[Any]) -> list[int | None]:
    return [None if e is None else e.id for e in entities]


# --- cached reads issue no SELECT


def every_read(ctx: Context, catalog: dict[str, Any]) -> list[Any]:
    products = catalog["products"]
    cars = catalog["cars"]
    return [
        ids([ctx.get_by_id(Product, products[0].id)]),
        ids(ctx.get_by_ids(Product, [products[2].id, 999_999, products[1].id])),
        ids([ctx.get_by_id(Product, 888_888)]),  # missing: the miss is cached too
        ids([ctx.get_by_unique_index(Category, "name", "Cars")]),
        ids([ctx.get_by_unique_index(Category, "name", "Planes")]),  # a cached miss
        ids([ctx.get_by_unique_index(Product, "code_in_shop", "B-1", 2)]),
        ids(ctx.get_by_reference(Product, "category", cars)),
        ids(ctx.get_by_reference(Product, "category", 777_777)),  # an empty list
        ids(ctx.get_all(Category)),
    ]


def test_reads_served_from_redis_issue_no_select(
    make_engine: Callable[..., Engine],
    catalog: dict[str, Any],
    redis_url: str,
    key_prefix: str,
) -> None:
    services.delete_keys(redis_url, key_prefix)  # cold: everything comes from MySQL once
    reader = fresh_engine(make_engine)
    before = selects_run(reader)
    cold = every_read(reader.new_context(), catalog)
    after_cold = selects_run(reader)
    assert after_cold - before >= 9  # the counter does see this engine's SELECTs

    warm = every_read(reader.new_context(), catalog)
    assert selects_run(reader) == after_cold
    assert warm == cold

    other = fresh_engine(make_engine)  # another process would read the same Redis
    before = selects_run(other)
    assert every_read(other.new_context(), catalog) == cold
    assert selects_run(other) == before


def test_rows_inserted_by_flush_async_are_cached_whole_whatever_their_text(
    make_engine: Callable[..., Engine], engine: Engine
) -> None:
    # The rows of a flush's inserts are written to Redis by the flush's script, as the JSON
    # orjson made: text with newlines, commas, quotes and other control characters comes back
    # exactly, for every row of the flush, from the cache alone.
    names = ["a\nb", "line\r\n,next", 'comma, "quoted"\n', "\x00\x01\t\u2028é", "plain", ""]
    ctx = engine.new_context()
    made = [ctx.new_entity(Maker, name=name) for name in names]
    made += [
        ctx.new_entity(Product, name=name or "-", code=f"n{n}") for n, name in enumerate(names)
    ]
    ctx.flush_async()
    reader = fresh_engine(make_engine)
    before = selects_run(reader)
    read = reader.new_context()
    assert [read.get_by_id(Maker, m.id).name for m in made[: len(names)]] == names  # type: ignore[union-attr]
    assert [read.get_by_id(Product, p.id).name for p in made[len(names) :]] == [  # type: ignore[union-attr]
        name or "-" for name in names
    ]
    assert selects_run(reader) == before  # all of them from Redis: MySQL may not have them yet


def test_pending_markers_live_in_a_hash_table_and_go_once_applied(engine: Engine) -> None:
    # Redis keeps a small hash as a list searched field by field; the marker hash carries one
    # field that makes it a hash table from its first write (cache_patch), and keeps it one.
    client = engine.redis("default")
    pending = engine.keys.pending(engine.schema(Maker))
    ctx = engine.new_context()
    makers = [ctx.new_entity(Maker, name=f"m{n}") for n in range(3)]
    ctx.flush_async()
    assert client.object("encoding", pending) == b"hashtable"
    ids = [str(m.id) for m in makers]
    assert all(mark is not None for mark in client.hmget(pending, ids))
    consume_async_flush_events(engine)
    assert client.hkeys(pending) == [PENDING_TABLE_FIELD.encode()]  # every marker released
    assert client.object("encoding", pending) == b"hashtable"
    # with no marker left, a read fills the evicted row from MySQL again
    entity_key = engine.keys.entity(engine.schema(Maker), makers[0].id)
    client.delete(entity_key)
    assert engine.new_context().get_by_id(Maker, makers[0].id).name == "m0"  # type: ignore[union-attr]
    assert client.exists(entity_key)


def test_an_entity_without_cache_reads_mysql_every_time(
    make_engine: Callable[..., Engine], catalog: dict[str, Any]
) -> None:
    reader = fresh_engine(make_engine)
    note_id = catalog["note"].id
    reader.new_context().get_by_id(Note, note_id)
    first = selects_run(reader)
    assert first >= 1
    found = reader.new_context().get_by_id(Note, note_id)
    assert found is not None and found.text == "hello"
    assert selects_run(reader) == first + 1


def test_search_and_count_always_ask_mysql_but_load_cached_rows_from_redis(
    make_engine: Callable[..., Engine], catalog: dict[str, Any]
) -> None:
    reader = fresh_engine(make_engine)
    ctx = reader.new_context()
    ctx.get_by_ids(Product, [p.id for p in catalog["products"]])  # rows now cached
    before = selects_run(reader)
    found = ctx.search(Product, Where("`stock` > ?", 0))
    assert selects_run(reader) == before + 1  # the id query only; rows from the cache
    assert len(found) == 3
    assert ctx.count(Product, Where("`stock` > ?", 0)) == 3
    assert selects_run(reader) == before + 2


# --- misses fill the cache


def test_a_read_from_mysql_fills_redis_and_a_missing_id_leaves_a_tombstone(
    make_engine: Callable[..., Engine],
    engine: Engine,
    catalog: dict[str, Any],
    redis_url: str,
    key_prefix: str,
) -> None:
    services.delete_keys(redis_url, key_prefix)
    client = engine.redis("default")
    schema = engine.schema(Product)
    product = catalog["products"][0]
    ctx = fresh_engine(make_engine).new_context()
    assert ctx.get_by_id(Product, product.id) is not None
    assert ctx.get_by_id(Product, 999_999) is None
    assert ctx.get_by_unique_index(Category, "name", "Planes") is None
    assert len(ctx.get_by_reference(Product, "category", catalog["cars"])) == 2
    assert len(ctx.get_all(Category)) == 2

    assert client.get(engine.keys.entity(schema, product.id)) not in (None, TOMBSTONE)
    assert client.get(engine.keys.entity(schema, 999_999)) == TOMBSTONE
    assert client.ttl(engine.keys.entity(schema, 999_999)) > 0  # a miss is not kept forever
    category_schema = engine.schema(Category)
    assert client.get(engine.keys.unique(category_schema, "name", ["Planes"])) == TOMBSTONE
    ref_key = engine.keys.reference(schema, "category", catalog["cars"].id)
    assert client.hget(ref_key, COMPLETE_FIELD) == b"1"
    assert client.hget(engine.keys.all_ids(category_schema), COMPLETE_FIELD) == b"1"


# --- get_by_ids


def test_get_by_ids_keeps_the_order_asked_and_gives_none_for_missing(
    make_engine: Callable[..., Engine],
    catalog: dict[str, Any],
    redis_url: str,
    key_prefix: str,
) -> None:
    p = catalog["products"]
    wanted = [p[3].id, 999_999, p[0].id, p[2].id, p[0].id, p[1].id]
    expected = [p[3].id, None, p[0].id, p[2].id, p[0].id, p[1].id]
    services.delete_keys(redis_url, key_prefix)
    reader = fresh_engine(make_engine)
    assert ids(reader.new_context().get_by_ids(Product, wanted)) == expected  # from MySQL
    assert ids(reader.new_context().get_by_ids(Product, wanted)) == expected  # from Redis
    partly = [p[1].id, 555_555, p[3].id]  # some cached, some not
    services.delete_keys(redis_url, key_prefix)
    reader.new_context().get_by_id(Product, p[3].id)
    assert ids(reader.new_context().get_by_ids(Product, partly)) == [p[1].id, None, p[3].id]
    assert reader.new_context().get_by_ids(Product, []) == []
    note = catalog["note"]
    assert ids(reader.new_context().get_by_ids(Note, [123_456, note.id])) == [None, note.id]


# --- unique indexes


def test_get_by_unique_index_finds_single_and_composite_keys_cold_and_warm(
    make_engine: Callable[..., Engine],
    catalog: dict[str, Any],
    redis_url: str,
    key_prefix: str,
) -> None:
    bike = catalog["products"][2]
    services.delete_keys(redis_url, key_prefix)
    reader = fresh_engine(make_engine)
    for _ in ("cold", "warm"):
        ctx = reader.new_context()
        assert ids([ctx.get_by_unique_index(Product, "code_in_shop", "B-1", 2)]) == [bike.id]
        assert ctx.get_by_unique_index(Product, "code_in_shop", "B-1", 1) is None
        assert ctx.get_by_unique_index(Product, "code_in_shop", "T-1", 2) is None
        found = ctx.get_by_unique_index(Category, "name", "Bikes")
        assert found is not None and found.id == catalog["bikes"].id
        note = ctx.get_by_unique_index(Note, "text", "HELLO")
        assert note is not None and note.id == catalog["note"].id


def test_get_by_unique_index_refuses_unknown_indexes_and_wrong_value_counts(
    engine: Engine,
) -> None:
    ctx = engine.new_context()
    with pytest.raises(ConfigError, match="no unique index 'colour'"):
        ctx.get_by_unique_index(Product, "colour", "red")
    with pytest.raises(QueryError, match="has 2 columns"):
        ctx.get_by_unique_index(Product, "code_in_shop", "B-1")


def mysql_finds(engine: Engine, name: str) -> int | None:
    """What MySQL itself answers for `name` = ? (its collation decides)."""
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT id FROM category WHERE name = %s", (name,))
        row = cursor.fetchone()
        return None if row is None else int(row[0])


SPELLINGS = [
    "Café Noir",
    "café noir",
    "CAFÉ NOIR",
    "Cafe Noir",
    "cafe noir  ",
    "Café Noír",
    "Cafè",
    "Straße",
    "STRASSE",
    "strasse",
    "Strase",
    "😀 smile",
    "😃 smile",
]


def test_unique_lookups_agree_with_mysqls_collation_cold_warm_and_after_a_miss(
    make_engine: Callable[..., Engine], engine: Engine, redis_url: str, key_prefix: str
) -> None:
    # first, look every spelling up while nothing exists: each miss is cached
    probe = engine.new_context()
    assert all(probe.get_by_unique_index(Category, "name", s) is None for s in SPELLINGS)
    ctx = engine.new_context()
    ctx.new_entity(Category, name="Café Noir")
    ctx.new_entity(Category, name="Straße")
    ctx.new_entity(Category, name="😀 smile")
    ctx.flush()
    truth = {s: mysql_finds(engine, s) for s in SPELLINGS}
    assert truth["CAFÉ NOIR"] is not None and truth["Strase"] is None  # the collation at work

    def answers(reader: Engine) -> dict[str, int | None]:
        context = reader.new_context()
        return {s: ids([context.get_by_unique_index(Category, "name", s)])[0] for s in SPELLINGS}

    assert answers(engine) == truth  # after the misses, through the flush-written keys
    services.delete_keys(redis_url, key_prefix)
    reader = fresh_engine(make_engine)
    assert answers(reader) == truth  # cold
    assert answers(reader) == truth  # warm


# --- caches follow edits and deletes


def flush(ctx: Context, how: str) -> None:
    if how == "flush":
        ctx.flush()
    else:
        ctx.flush_async()  # MySQL keeps the old state until applied: reads must not see it


HOW = pytest.mark.parametrize("how", ["flush", "flush_async"])


def warm_up(engine: Engine, catalog: dict[str, Any]) -> None:
    """Read everything once so the caches hold lists, keys and rows to be kept right."""
    ctx = engine.new_context()
    for name in ("Cars", "Bikes", "Autos"):
        ctx.get_by_unique_index(Category, "name", name)
    for category in (catalog["cars"], catalog["bikes"]):
        ctx.get_by_reference(Product, "category", category)
    ctx.get_all(Category)
    ctx.get_by_ids(Product, [p.id for p in catalog["products"]])


@HOW
@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_editing_a_unique_field_moves_the_lookup_to_the_new_value(
    make_engine: Callable[..., Engine],
    engine: Engine,
    catalog: dict[str, Any],
    how: str,
    warm: bool,
) -> None:
    if warm:
        warm_up(engine, catalog)
    ctx = engine.new_context()
    ctx.edit(catalog["cars"]).name = "Autos"
    flush(ctx, how)
    for reader in (engine, fresh_engine(make_engine)):
        read = reader.new_context()
        assert read.get_by_unique_index(Category, "name", "Cars") is None
        assert read.get_by_unique_index(Category, "name", "cars") is None
        autos = read.get_by_unique_index(Category, "name", "autos")
        assert autos is not None and autos.id == catalog["cars"].id and autos.name == "Autos"

    ctx = engine.new_context()
    ctx.new_entity(Category, name="Cars")  # the old value is free again
    flush(ctx, how)
    again = fresh_engine(make_engine).new_context().get_by_unique_index(Category, "name", "Cars")
    assert again is not None and again.id != catalog["cars"].id


@HOW
@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_moving_a_product_to_another_category_updates_both_lists(
    make_engine: Callable[..., Engine],
    engine: Engine,
    catalog: dict[str, Any],
    how: str,
    warm: bool,
) -> None:
    if warm:
        warm_up(engine, catalog)
    tesla, fiat, bike, scooter = catalog["products"]
    cars, bikes = catalog["cars"], catalog["bikes"]
    ctx = engine.new_context()
    ctx.edit(tesla).category = bikes
    ctx.edit(scooter).category = cars  # from no category into one
    flush(ctx, how)
    for reader in (engine, fresh_engine(make_engine)):
        read = reader.new_context()
        assert ids(read.get_by_reference(Product, "category", cars)) == [fiat.id, scooter.id]
        assert ids(read.get_by_reference(Product, "category", bikes.id)) == [tesla.id, bike.id]
        moved = read.get_by_id(Product, tesla.id)
        assert moved is not None and moved.category == Reference(Category, bikes.id)


@HOW
@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_a_deleted_entity_disappears_from_every_read(
    make_engine: Callable[..., Engine],
    engine: Engine,
    catalog: dict[str, Any],
    how: str,
    warm: bool,
) -> None:
    if warm:
        warm_up(engine, catalog)
    tesla, fiat, _, _ = catalog["products"]
    cars, bikes = catalog["cars"], catalog["bikes"]
    ctx = engine.new_context()
    ctx.delete(tesla)
    ctx.delete(bikes)
    flush(ctx, how)
    for reader in (engine, fresh_engine(make_engine)):
        read = reader.new_context()
        assert read.get_by_id(Product, tesla.id) is None
        assert ids(read.get_by_ids(Product, [fiat.id, tesla.id])) == [fiat.id, None]
        assert read.get_by_unique_index(Product, "code_in_shop", "T-1", 1) is None
        assert ids(read.get_by_reference(Product, "category", cars)) == [fiat.id]
        assert read.get_by_id(Category, bikes.id) is None
        assert read.get_by_unique_index(Category, "name", "Bikes") is None
        assert ids(read.get_all(Category)) == [cars.id]


@HOW
def test_new_entities_join_the_lists_and_the_all_list(
    make_engine: Callable[..., Engine], engine: Engine, catalog: dict[str, Any], how: str
) -> None:
    warm_up(engine, catalog)
    cars = catalog["cars"]
    ctx = engine.new_context()
    planes = ctx.new_entity(Category, name="Planes")
    van = ctx.new_entity(Product, name="Van", code="V-1", category=cars)
    flush(ctx, how)
    for reader in (engine, fresh_engine(make_engine)):
        read = reader.new_context()
        assert ids(read.get_all(Category)) == [cars.id, catalog["bikes"].id, planes.id]
        listed = ids(read.get_by_reference(Product, "category", cars))
        assert listed == [catalog["products"][0].id, catalog["products"][1].id, van.id]
        found = read.get_by_unique_index(Product, "code_in_shop", "v-1", 1)
        assert found is not None and found.id == van.id


def test_an_uncached_reference_list_follows_a_flush(
    make_engine: Callable[..., Engine], engine: Engine, catalog: dict[str, Any]
) -> None:
    tesla, fiat, bike, _ = catalog["products"]
    maker = catalog["maker"]
    ctx = engine.new_context()
    other = ctx.new_entity(Maker, name="Other")
    ctx.edit(tesla).maker = other
    ctx.edit(bike).maker = maker
    ctx.flush()
    read = fresh_engine(make_engine).new_context()
    assert ids(read.get_by_reference(Product, "maker", maker)) == [fiat.id, bike.id]
    assert ids(read.get_by_reference(Product, "maker", other)) == [tesla.id]
    assert ids(read.get_by_reference(Note, "topic", catalog["cars"])) == [catalog["note"].id]
    with pytest.raises(ConfigError, match="not a Reference field"):
        read.get_by_reference(Product, "name", 1)


# --- search and count


def test_search_and_count_take_placeholders_lists_and_quoted_strings(
    engine: Engine, catalog: dict[str, Any]
) -> None:
    tesla, fiat, bike, scooter = catalog["products"]
    ctx = engine.new_context()

    def search(where: Where, pager: Pager | None = None) -> list[int | None]:
        return ids(ctx.search(Product, where, pager))

    assert search(Where("`price` > ? AND `stock` > ? ORDER BY `id`", 10, 0)) == [
        tesla.id,
        bike.id,
        scooter.id,
    ]
    assert ctx.count(Product, Where("`price` > ? AND `stock` > ?", 10, 0)) == 3
    assert search(Where("`id` IN ? ORDER BY `id`", [scooter.id, fiat.id])) == [fiat.id, scooter.id]
    assert search(Where("`id` IN ?", [])) == []
    assert ctx.count(Product, Where("`id` IN ?", [])) == 0
    assert search(Where("`name` = ?", 'O\'Reilly "Bike" \\ 100%')) == [bike.id]
    assert search(Where("`code` = 'S-?' OR `code` = ?", "F-1")) == [fiat.id, scooter.id]
    assert search(Where("`code` = 'it\\'s ?' OR `code` = ?", "F-1")) == [fiat.id]
    assert search(Where("`kind` = ? ORDER BY `id`", Kind.BIKE)) == [bike.id, scooter.id]
    assert search(Where("`category` = ? ORDER BY `id`", catalog["cars"])) == [tesla.id, fiat.id]
    assert search(Where("`released` = ?", date(2024, 5, 1))) == [scooter.id]
    assert search(Where("`released` IS NULL AND `price` = ?", Decimal("9.50"))) == [fiat.id]
    assert search(Where("`category` = ?", Reference(Category, catalog["bikes"].id))) == [bike.id]
    assert ctx.count(Product) == 4
    assert ids(ctx.search(Note, Where("`text` = ?", "hello"))) == [catalog["note"].id]


def test_a_pager_returns_one_page_in_the_order_asked(
    engine: Engine, catalog: dict[str, Any]
) -> None:
    all_ids = sorted(p.id for p in catalog["products"])
    ctx = engine.new_context()
    by_id = Where("1 ORDER BY `id`")
    assert ids(ctx.search(Product, by_id, Pager(1, 3))) == all_ids[:3]
    assert ids(ctx.search(Product, by_id, Pager(2, 3))) == all_ids[3:]
    assert ids(ctx.search(Product, by_id, Pager(3, 3))) == []
    by_price = Where("`stock` >= ? ORDER BY `price` DESC", 0)
    assert ids(ctx.search(Product, by_price, Pager(1, 2))) == [
        catalog["products"][0].id,
        catalog["products"][3].id,
    ]
    assert ctx.search_ids(Product, by_id, Pager(2, 2)) == all_ids[2:4]


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("`a` = ?", ()),
        ("`a` = ?", (1, 2)),
        ("`a` = '?'", (1,)),
        ("`a` = 'it\\'s ?'", (1,)),
        ("`a` = ?", (object(),)),
        ("`a` = ?", (float("nan"),)),
    ],
)
def test_a_where_whose_placeholders_do_not_match_its_values_is_refused(
    sql: str, params: tuple[Any, ...]
) -> None:
    with pytest.raises(QueryError):
        Where(sql, *params)


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (1, 0), (-1, 5)])
def test_a_pager_refuses_pages_below_one(page: int, per_page: int) -> None:
    with pytest.raises(QueryError):
        Pager(page, per_page)
