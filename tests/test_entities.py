"""Declaring entities, with annotations evaluated when the class is created.

This module deliberately does NOT use ``from __future__ import annotations``: users who do not
write it get real types (and ``Reference["Node"]`` for forward references) in their classes,
and both ways must work. ``test_entities_future.py`` declares the same with the import.
"""

import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Optional

import pytest

from beeorm_celery import ConfigError, Engine, Entity, Field, Reference, ValidationError
from beeorm_celery.ddl import normalize_type
from beeorm_celery.defaults import DEFAULT_LOCAL_CACHE_ENTRIES
from beeorm_celery.entity import snake_case
from beeorm_celery.errors import ReadOnlyEntityError
from tests.support import services


class Status(Enum):
    ACTIVE = "active"
    BLOCKED = "blocked"


class Category(Entity, redis_cache=True, local_cache=True, async_group="catalog"):
    name: str = Field(max_length=100, required=True, unique="name")


class Product(Entity, redis_cache=True, async_group="catalog"):
    name: str = Field(max_length=200, required=True)
    price: Decimal = Field(precision=10, scale=2, default=Decimal("0.00"))
    stock: int = 0
    active: bool = True
    status: Status = Status.ACTIVE
    weight: float | None = None
    description: str | None = None
    photo: bytes | None = None
    released: date | None = None
    created_at: datetime | None = None
    category: Reference[Category] | None = Field(cached=True)
    # beyond the SPEC example: every other Field option
    barcode: bytes = Field(max_length=16, default=b"")
    sku: str | None = Field(None, max_length=32, unique=True)
    shelf: str | None = Field(None, max_length=10, unique="place")
    slot: int | None = Field(None, unique="place")
    rank: int = Field(default=0, index=True)
    label: str = Field(max_length=20, default="", index="labelled")
    note: Optional[str] = Field(None, max_length=50, index="labelled")  # noqa: UP045 - tested


# --- helpers shared with test_entities_future.py


def mysql_columns(mysql_url: str, table: str) -> dict[str, tuple[str, bool]]:
    """column -> (type as the entity would ask for it, nullable), straight from the server."""
    conn = services.server_connection(mysql_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (mysql_url.rsplit("/", 1)[1], table),
            )
            return {row[0]: (normalize_type(row[1]), row[2] == "YES") for row in cursor}
    finally:
        conn.close()


def mysql_indexes(mysql_url: str, table: str) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """index -> (unique, columns in order)."""
    conn = services.server_connection(mysql_url)
    indexes: dict[str, tuple[bool, tuple[str, ...]]] = {}
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (mysql_url.rsplit("/", 1)[1], table),
            )
            for name, non_unique, column in cursor:
                _, columns = indexes.get(name, (False, ()))
                indexes[name] = (not int(non_unique), (*columns, column))
    finally:
        conn.close()
    return indexes


EXPECTED_PRODUCT_COLUMNS = {
    "id": ("bigint unsigned", False),
    "name": ("varchar(200)", False),
    "price": ("decimal(10,2)", False),
    "stock": ("bigint", False),
    "active": ("tinyint(1)", False),
    "status": ("enum('active','blocked')", False),
    "weight": ("double", True),
    "description": ("text", True),
    "photo": ("blob", True),
    "released": ("date", True),
    "created_at": ("datetime(6)", True),
    "category": ("bigint unsigned", True),
    "barcode": ("varbinary(16)", False),
    "sku": ("varchar(32)", True),
    "shelf": ("varchar(10)", True),
    "slot": ("bigint", True),
    "rank": ("bigint", False),
    "label": ("varchar(20)", False),
    "note": ("varchar(50)", True),
}

EXPECTED_PRODUCT_INDEXES = {
    "PRIMARY": (True, ("id",)),
    "ref_category": (False, ("category",)),
    "sku": (True, ("sku",)),
    "place": (True, ("shelf", "slot")),
    "rank": (False, ("rank",)),
    "labelled": (False, ("label", "note")),
}


def check_catalog_declaration(
    make_engine: Callable[..., Engine],
    mysql_url: str,
    category_type: type[Entity],
    product_type: type[Entity],
    status_type: type[Enum],
) -> None:
    """The SPEC catalog (plus every Field option) declares the tables and defaults it says."""
    engine = make_engine(category_type, product_type)
    assert mysql_columns(mysql_url, "product") == EXPECTED_PRODUCT_COLUMNS
    assert mysql_indexes(mysql_url, "product") == EXPECTED_PRODUCT_INDEXES
    assert mysql_columns(mysql_url, "category") == {
        "id": ("bigint unsigned", False),
        "name": ("varchar(100)", False),
    }
    assert mysql_indexes(mysql_url, "category") == {
        "PRIMARY": (True, ("id",)),
        "name": (True, ("name",)),
    }

    ctx = engine.new_context()
    cat = ctx.new_entity(category_type, name="Cars")
    product: Any = ctx.new_entity(product_type, name="Tesla", category=cat)
    assert {k: v for k, v in vars(product).items() if not k.startswith("_")} == {
        "id": product.id,
        "name": "Tesla",
        "price": Decimal("0.00"),
        "stock": 0,
        "active": True,
        "status": status_type["ACTIVE"],
        "weight": None,
        "description": None,
        "photo": None,
        "released": None,
        "created_at": None,
        "category": cat,
        "barcode": b"",
        "sku": None,
        "shelf": None,
        "slot": None,
        "rank": 0,
        "label": "",
        "note": None,
    }
    ctx.flush()
    loaded: Any = engine.new_context().get_by_id(product_type, product.id)
    assert loaded.category == Reference(category_type, cat.id)
    assert loaded.status is status_type["ACTIVE"]
    assert engine.schema_alters() == []


# --- declaration


def test_the_spec_catalog_declares_every_type_and_field_option(
    make_engine: Callable[..., Engine], mysql_url: str
) -> None:
    check_catalog_declaration(make_engine, mysql_url, Category, Product, Status)


def test_optional_and_or_none_make_a_column_nullable_and_the_rest_not_null() -> None:
    nullable = {name for name, (_, null) in EXPECTED_PRODUCT_COLUMNS.items() if null}
    declared = {
        name
        for name, annotation in Product.__annotations__.items()
        if type(None) in getattr(annotation, "__args__", ())
    }
    assert (
        nullable
        == declared
        == {
            "weight",
            "description",
            "photo",
            "released",
            "created_at",
            "category",
            "sku",
            "shelf",
            "slot",
            "note",
        }
    )


def test_an_entity_declared_inside_a_function_with_a_forward_reference_works(
    make_engine: Callable[..., Engine],
) -> None:
    class Node(Entity, redis_cache=True):
        name: str = Field(max_length=20)
        parent: Reference["Node"] | None = None  # a forward reference, quoted
        best_leaf: Optional[Reference["Leaf"]] = None  # noqa: UP045

    class Leaf(Entity):
        node: Reference[Node] | None = None

    engine = make_engine(Node, Leaf)
    ctx = engine.new_context()
    root = ctx.new_entity(Node, name="root")
    leaf = ctx.new_entity(Leaf, node=root)
    child = ctx.new_entity(Node, name="child", parent=root, best_leaf=leaf)
    ctx.flush()
    read = engine.new_context()
    loaded = read.get_by_id(Node, child.id)
    assert loaded is not None
    assert loaded.parent == Reference(Node, root.id)
    assert loaded.best_leaf == Reference(Leaf, leaf.id)
    parent = loaded.parent.get(read)
    assert parent is not None and parent.name == "root"


def test_an_entity_with_no_fields_but_its_id_can_be_stored_and_read(
    make_engine: Callable[..., Engine], redis_url: str, key_prefix: str
) -> None:
    class Marker(Entity, redis_cache=True):
        pass

    engine = make_engine(Marker)
    ctx = engine.new_context()
    marker = ctx.new_entity(Marker)
    ctx.flush()
    services.delete_keys(redis_url, key_prefix)  # so the read goes to MySQL
    loaded = engine.new_context().get_by_id(Marker, marker.id)
    assert loaded is not None and loaded.id == marker.id


def test_entities_are_made_by_a_context_not_by_calling_the_class() -> None:
    with pytest.raises(TypeError, match=r"ctx\.new_entity"):
        Category(name="Cars")


def test_a_reference_field_takes_an_entity_a_reference_or_an_id(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    by_entity = ctx.new_entity(Product, name="a", category=cat)
    by_reference = ctx.new_entity(Product, name="b", category=Reference(Category, cat.id))
    by_id = ctx.new_entity(Product, name="c", category=cat.id)
    ctx.flush()
    read = engine.new_context()
    for product in (by_entity, by_reference, by_id):
        loaded = read.get_by_id(Product, product.id)
        assert loaded is not None and loaded.category == Reference(Category, cat.id)


def test_a_reference_to_another_entity_type_is_refused(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    other = ctx.new_entity(Product, name="not a category")
    ctx.new_entity(Product, name="p", category=other)
    with pytest.raises(ValidationError) as info:
        ctx.flush()
    assert info.value.field == "category" and "expected Category" in info.value.reason


def test_a_loaded_entity_is_read_only_and_unknown_fields_are_refused(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Category)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    with pytest.raises(AttributeError, match="no field 'colour'"):
        cat.colour = "red"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="no field 'colour'"):
        ctx.new_entity(Category, name="x", colour="red")
    with pytest.raises(TypeError, match="assigned by new_entity"):
        ctx.new_entity(Category, id=5, name="x")
    ctx.flush()
    loaded = engine.new_context().get_by_id(Category, cat.id)
    assert loaded is not None
    with pytest.raises(ReadOnlyEntityError):
        loaded.name = "Bikes"
    with pytest.raises(ReadOnlyEntityError):
        del loaded.name


# --- class keywords


class OrderLine(Entity):
    pass


class HTTPRequestLog(Entity, async_group=True):
    pass


class Renamed(
    Entity,
    table="custom_things",
    async_group="mine",
    local_cache=3,
    cache_all=True,
    redis_cache=True,
):
    pass


def test_the_table_defaults_to_the_class_name_in_snake_case() -> None:
    assert OrderLine.__beeorm_options__.table == "order_line"
    assert HTTPRequestLog.__beeorm_options__.table == "http_request_log"
    assert snake_case("Category") == "category"
    assert Renamed.__beeorm_options__.table == "custom_things"


def test_class_keywords_reach_the_engine(
    make_engine: Callable[..., Engine], mysql_url: str
) -> None:
    engine = make_engine(OrderLine, HTTPRequestLog, Renamed, Category)
    assert mysql_columns(mysql_url, "custom_things") == {"id": ("bigint unsigned", False)}
    assert mysql_columns(mysql_url, "order_line") != {}
    assert engine.async_groups == {
        "default": "default",  # OrderLine: the default group
        "http_request_log": "default",  # async_group=True: a group named after the table
        "mine": "default",
        "catalog": "default",
    }
    assert engine.local_caches["custom_things"].max_entries == 3
    assert engine.local_caches["category"].max_entries == DEFAULT_LOCAL_CACHE_ENTRIES
    assert "order_line" not in engine.local_caches
    options = Renamed.__beeorm_options__
    assert options.cache_all and options.redis_cache == "default"
    assert options.mysql_pool == "default"
    assert OrderLine.__beeorm_options__.redis_cache is None


class ElsewhereCached(Entity, redis_cache="second"):
    name: str = Field(max_length=20)


@pytest.fixture
def second_redis_url(redis_url: str, key_prefix: str) -> Iterator[str]:
    base, db = redis_url.rsplit("/", 1)
    url = f"{base}/{(int(db) + 1) % 16}"
    yield url
    services.delete_keys(url, key_prefix)


def test_redis_cache_with_a_pool_name_keeps_the_rows_in_that_pool(
    mysql_url: str, second_redis_url: str, redis_url: str, key_prefix: str
) -> None:
    from beeorm_celery import Registry

    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_redis(second_redis_url, pool="second")
    registry.register_entity(ElsewhereCached)
    engine = registry.validate()
    try:
        engine.update_schema()
        ctx = engine.new_context()
        entity = ctx.new_entity(ElsewhereCached, name="x")
        ctx.flush()
        key = engine.keys.entity(engine.schema(ElsewhereCached), entity.id)
        assert engine.redis("second").get(key) is not None
        assert engine.redis("default").exists(key) == 0
    finally:
        engine.close()


class InSecondDatabase(Entity, mysql_pool="second", async_group="second"):
    name: str = Field(max_length=20)


@pytest.fixture
def second_mysql_url(mysql_server_url: str) -> Iterator[str]:
    url = services.new_database(mysql_server_url)
    yield url
    services.drop_database(url)


def test_mysql_pool_puts_the_table_in_that_pools_database(
    mysql_url: str, second_mysql_url: str, redis_url: str
) -> None:
    from beeorm_celery import Registry

    registry = Registry(key_prefix=f"t{uuid.uuid4().hex[:10]}")
    registry.register_mysql(mysql_url)
    registry.register_mysql(second_mysql_url, pool="second")
    registry.register_redis(redis_url)
    registry.register_entity(Category, InSecondDatabase)
    engine = registry.validate()
    try:
        engine.update_schema()
        assert mysql_columns(second_mysql_url, "in_second_database") != {}
        assert mysql_columns(mysql_url, "in_second_database") == {}
        assert mysql_columns(mysql_url, "category") != {}
        ctx = engine.new_context()
        entity = ctx.new_entity(InSecondDatabase, name="there")
        ctx.flush()
        loaded = engine.new_context().get_by_id(InSecondDatabase, entity.id)
        assert loaded is not None and loaded.name == "there"
    finally:
        engine.close()
        services.delete_keys(redis_url, registry.key_prefix)


# --- declarations that cannot work are refused with the fix


def _declare_max_length_on_int() -> type[Entity]:
    class Bad(Entity):
        count: int = Field(max_length=5)

    return Bad


def _declare_precision_on_str() -> type[Entity]:
    class Bad(Entity):
        name: str = Field(max_length=5, precision=5)

    return Bad


def _declare_cached_on_int() -> type[Entity]:
    class Bad(Entity):
        count: int = Field(cached=True)

    return Bad


def _declare_required_and_nullable() -> type[Entity]:
    class Bad(Entity):
        name: str | None = Field(max_length=5, required=True)

    return Bad


def _declare_none_default_on_not_null() -> type[Entity]:
    class Bad(Entity):
        name: str = Field(None, max_length=5)

    return Bad


def _declare_index_on_text() -> type[Entity]:
    class Bad(Entity):
        body: str = Field(index=True)

    return Bad


def _declare_invalid_default() -> type[Entity]:
    class Bad(Entity):
        name: str = Field("far too long", max_length=3)

    return Bad


def _declare_int_enum() -> type[Entity]:
    class Level(Enum):
        LOW = 1

    class Bad(Entity):
        level: Level = Level.LOW

    return Bad


def _declare_bad_decimal() -> type[Entity]:
    class Bad(Entity):
        amount: Decimal = Field(precision=66, scale=2)

    return Bad


@pytest.mark.parametrize(
    ("declare", "reason"),
    [
        (_declare_max_length_on_int, "max_length is for str and bytes"),
        (_declare_precision_on_str, "precision/scale are for Decimal"),
        (_declare_cached_on_int, "cached=True is for Reference"),
        (_declare_required_and_nullable, "required=True on a `| None` field"),
        (_declare_none_default_on_not_null, "default None needs the annotation `| None`"),
        (_declare_index_on_text, "give it a max_length"),
        (_declare_invalid_default, "default 'far too long' is invalid"),
        (_declare_int_enum, "needs str values"),
        (_declare_bad_decimal, "not a valid DECIMAL"),
    ],
)
def test_a_declaration_mysql_cannot_store_is_refused_with_the_reason(
    declare: Callable[[], type[Entity]], reason: str, mysql_url: str
) -> None:
    from beeorm_celery import Registry

    registry = Registry()
    registry.register_mysql(mysql_url)
    registry.register_entity(declare())
    with pytest.raises(ConfigError) as info:
        registry.validate()
    assert reason in str(info.value)
    assert ".Bad:" in str(info.value)  # names the entity


# --- the unit of work: entities are read-only unless tracked by ctx.edit


def redis_snapshot(engine: Engine, prefix: str) -> dict[bytes, Any]:
    client = engine.redis("default")
    return {key: client.dump(key) for key in client.scan_iter(match=f"{prefix}:*")}


def set_name_behind_the_orms_back(engine: Engine, table: str, entity_id: int, name: str) -> None:
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(f"UPDATE `{table}` SET `name` = %s WHERE `id` = %s", (name, entity_id))


def test_setting_a_field_of_an_entity_not_from_edit_raises_read_only(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    cat.name = "Autos"  # new and not flushed: editable
    ctx.flush()
    with pytest.raises(ReadOnlyEntityError, match=r"ctx\.edit"):
        cat.name = "Bikes"  # flushed: read-only again
    loaded = engine.new_context().get_by_id(Category, cat.id)
    assert loaded is not None
    with pytest.raises(ReadOnlyEntityError):
        loaded.name = "Bikes"
    with pytest.raises(ReadOnlyEntityError):
        ctx.edit(loaded).id = 5
    assert loaded.name == "Autos" and cat.name == "Autos"


@pytest.mark.parametrize("how", ["flush", "flush_async"])
def test_edit_returns_a_copy_and_the_original_changes_only_at_flush(
    make_engine: Callable[..., Engine], how: str
) -> None:
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    ctx.flush()
    ctx = engine.new_context()
    original = ctx.get_by_id(Category, cat.id)
    assert original is not None
    copy = ctx.edit(original)
    assert copy is not original and ctx.edit(original) is copy  # one tracked copy per entity
    copy.name = "Autos"
    assert original.name == "Cars"
    assert engine.new_context().get_by_id(Category, cat.id).name == "Cars"  # type: ignore[union-attr]
    getattr(ctx, how)()
    assert original.name == "Autos" and copy.name == "Autos"
    with pytest.raises(ReadOnlyEntityError):
        copy.name = "Bikes"  # the copy is read-only after the flush, like the original
    assert engine.new_context().get_by_id(Category, cat.id).name == "Autos"  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["flush", "flush_async"])
def test_a_second_flush_without_a_new_edit_does_nothing(
    make_engine: Callable[..., Engine], key_prefix: str, how: str
) -> None:
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    ctx.flush()
    ctx.edit(cat).name = "Autos"
    getattr(ctx, how)()
    if how == "flush_async":
        from beeorm_celery import consume_async_flush_events

        consume_async_flush_events(engine)
    # A stray UPDATE would overwrite this, a stray cache write would change the snapshot
    set_name_behind_the_orms_back(engine, "category", cat.id, "Changed in MySQL")
    before = redis_snapshot(engine, key_prefix)
    getattr(ctx, how)()
    assert ctx.pending == 0
    assert redis_snapshot(engine, key_prefix) == before
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT name FROM category WHERE id = %s", (cat.id,))
        assert cursor.fetchone() == ("Changed in MySQL",)


@pytest.mark.parametrize("how", ["flush", "flush_async"])
def test_an_edit_that_changes_nothing_writes_nothing(
    make_engine: Callable[..., Engine], key_prefix: str, how: str
) -> None:
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    product = ctx.new_entity(Product, name="Tesla", price=Decimal("1.50"), category=cat)
    ctx.flush()
    set_name_behind_the_orms_back(engine, "product", product.id, "Changed in MySQL")
    before = redis_snapshot(engine, key_prefix)
    ctx = engine.new_context()
    loaded = ctx.get_by_id(Product, product.id)
    assert loaded is not None
    same = ctx.edit(loaded)
    same.name = "Tesla"
    same.price = Decimal("1.5")  # the same number
    same.category = cat.id  # the same reference, given as an id
    getattr(ctx, how)()
    assert redis_snapshot(engine, key_prefix) == before
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT name FROM product WHERE id = %s", (product.id,))
        assert cursor.fetchone() == ("Changed in MySQL",)


def test_a_deleted_entity_is_gone_and_deleting_a_new_one_forgets_it(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    keep = ctx.new_entity(Category, name="Keep")
    never = ctx.new_entity(Category, name="Never")
    ctx.delete(never)
    ctx.flush()
    read = engine.new_context()
    assert read.get_by_id(Category, never.id) is None
    assert read.get_by_unique_index(Category, "name", "Never") is None
    ctx = engine.new_context()
    edited = ctx.edit(keep)
    edited.name = "Changed"
    ctx.delete(keep)  # a delete wins over an edit of the same entity
    ctx.flush()
    read = engine.new_context()
    assert read.get_by_id(Category, keep.id) is None
    assert read.get_by_unique_index(Category, "name", "Keep") is None
    assert read.get_by_unique_index(Category, "name", "Changed") is None
