"""Schema sync: ``schema_alters()`` shows exactly the SQL that makes MySQL match the entities,
``update_schema()`` runs it, and afterwards there is nothing left to do."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from enum import Enum

import pytest

from beeorm_celery import Engine, Entity, Field
from beeorm_celery.asyncflush.position import APPLIED_TABLE_SQL
from beeorm_celery.ddl import TABLE_OPTIONS
from beeorm_celery.id_reserve import RESERVED_TABLE_SQL


class Size(Enum):
    S = "s"
    M = "m"


class SizeMore(Enum):
    S = "s"
    M = "m"
    XL = "xl"


class Item(Entity, table="item"):
    name: str = Field(max_length=50)
    stock: int = 0


class ItemAddedField(Entity, table="item"):
    name: str = Field(max_length=50)
    colour: str = Field(max_length=20)
    stock: int = 0


class ItemRemovedField(Entity, table="item"):
    name: str = Field(max_length=50)


class ItemLongerName(Entity, table="item"):
    name: str = Field(max_length=80)
    stock: int = 0


class ItemNullableStock(Entity, table="item"):
    name: str = Field(max_length=50)
    stock: int | None = None


class ItemIndexedStock(Entity, table="item"):
    name: str = Field(max_length=50)
    stock: int = Field(default=0, index=True)


class ItemUniqueName(Entity, table="item"):
    name: str = Field(max_length=50, unique=True)
    stock: int = 0


class ItemCompositeUnique(Entity, table="item"):
    name: str = Field(max_length=50, unique="name_stock")
    stock: int = Field(default=0, unique="name_stock")


class ItemStockToText(Entity, table="item"):
    name: str = Field(max_length=50)
    stock: str | None = None


class ItemWithSize(Entity, table="item"):
    name: str = Field(max_length=50)
    stock: int = 0
    size: Size = Size.S
    price: Decimal = Field(precision=8, scale=2, default=Decimal(0))


class ItemMoreSizes(Entity, table="item"):
    name: str = Field(max_length=50)
    stock: int = 0
    size: SizeMore = SizeMore.S
    price: Decimal = Field(precision=12, scale=3, default=Decimal(0))


def test_a_fresh_database_gets_create_statements_and_then_needs_nothing(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Item, update_schema=False)
    alters = engine.schema_alters()
    assert alters == [
        APPLIED_TABLE_SQL,
        RESERVED_TABLE_SQL,
        "CREATE TABLE `item` (\n"
        "  `id` bigint unsigned NOT NULL,\n"
        "  `name` varchar(50) NOT NULL,\n"
        "  `stock` bigint NOT NULL,\n"
        "  PRIMARY KEY (`id`)\n"
        f") {TABLE_OPTIONS}",
    ]
    assert engine.schema_alters() == alters  # asking changes nothing
    assert engine.update_schema() == alters
    assert engine.schema_alters() == []
    assert engine.update_schema() == []


CHANGES = {
    "add a field": (
        Item,
        ItemAddedField,
        "ALTER TABLE `item` ADD COLUMN `colour` varchar(20) NOT NULL AFTER `name`",
    ),
    "remove a field": (Item, ItemRemovedField, "ALTER TABLE `item` DROP COLUMN `stock`"),
    "longer max_length": (
        Item,
        ItemLongerName,
        "ALTER TABLE `item` MODIFY COLUMN `name` varchar(80) NOT NULL",
    ),
    "shorter max_length": (
        ItemLongerName,
        Item,
        "ALTER TABLE `item` MODIFY COLUMN `name` varchar(50) NOT NULL",
    ),
    "make nullable": (
        Item,
        ItemNullableStock,
        "ALTER TABLE `item` MODIFY COLUMN `stock` bigint NULL",
    ),
    "make not null": (
        ItemNullableStock,
        Item,
        "ALTER TABLE `item` MODIFY COLUMN `stock` bigint NOT NULL",
    ),
    "add an index": (Item, ItemIndexedStock, "ALTER TABLE `item` ADD KEY `stock` (`stock`)"),
    "drop an index": (ItemIndexedStock, Item, "ALTER TABLE `item` DROP INDEX `stock`"),
    "add a unique index": (
        Item,
        ItemUniqueName,
        "ALTER TABLE `item` ADD UNIQUE KEY `name` (`name`)",
    ),
    "add a composite unique index": (
        Item,
        ItemCompositeUnique,
        "ALTER TABLE `item` ADD UNIQUE KEY `name_stock` (`name`, `stock`)",
    ),
    "unique index becomes composite": (
        ItemUniqueName,
        ItemCompositeUnique,
        "ALTER TABLE `item` DROP INDEX `name`, ADD UNIQUE KEY `name_stock` (`name`, `stock`)",
    ),
    "plain index becomes unique": (
        ItemIndexedStock,
        ItemUniqueName,
        "ALTER TABLE `item` DROP INDEX `stock`, ADD UNIQUE KEY `name` (`name`)",
    ),
    "change a column type": (
        Item,
        ItemStockToText,
        "ALTER TABLE `item` MODIFY COLUMN `stock` text NULL",
    ),
    "add enum members and widen a decimal": (
        ItemWithSize,
        ItemMoreSizes,
        "ALTER TABLE `item` MODIFY COLUMN `size` enum('s','m','xl') NOT NULL, "
        "MODIFY COLUMN `price` decimal(12,3) NOT NULL",
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_entity_alters_exactly_what_changed(
    make_engine: Callable[..., Engine], change: str
) -> None:
    old, new, expected = CHANGES[change]
    make_engine(old)
    before = make_engine(old, update_schema=False)
    ctx = before.new_context()
    stock = {"stock": 3} if "stock" in before.schema(old).columns_by_name else {}
    first = ctx.new_entity(old, name="first", **stock)
    ctx.flush()

    engine = make_engine(new, update_schema=False)
    assert engine.schema_alters() == [expected]
    assert engine.update_schema() == [expected]
    assert engine.schema_alters() == []
    loaded = engine.new_context().get_by_id(new, first.id)  # the row survived the change
    assert loaded is not None and loaded.name == "first"
    assert make_engine(old, update_schema=False).schema_alters() != []  # and it is a change


def test_a_table_in_another_charset_is_converted_to_utf8mb4(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Item, update_schema=False)
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE `item` (`id` bigint unsigned NOT NULL, `name` varchar(50) NOT NULL, "
            "`stock` bigint NOT NULL, PRIMARY KEY (`id`)) CHARSET=latin1"
        )
    assert engine.schema_alters() == [
        APPLIED_TABLE_SQL,
        RESERVED_TABLE_SQL,
        "ALTER TABLE `item` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    ]
    engine.update_schema()
    assert engine.schema_alters() == []
    ctx = engine.new_context()
    item = ctx.new_entity(Item, name="emoji 😀")
    ctx.flush()
    loaded = make_engine(Item, update_schema=False).new_context().get_by_id(Item, item.id)
    assert loaded is not None and loaded.name == "emoji 😀"


class Awkward(Enum):
    QUOTE = "it's"
    BACKSLASH = "back\\slash"
    UPPER = "Up"


class ItemAwkward(Entity, table="item"):
    name: str = Field(max_length=50)
    mood: Awkward = Awkward.QUOTE


class AwkwardRenamed(Enum):
    QUOTE = "it's"
    BACKSLASH = "back\\slash"
    UPPER = "UP"


class ItemAwkwardRenamed(Entity, table="item"):
    name: str = Field(max_length=50)
    mood: AwkwardRenamed = AwkwardRenamed.QUOTE


def test_enum_members_with_quotes_backslashes_and_case_sync_and_store(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(ItemAwkward)
    assert engine.schema_alters() == []
    ctx = engine.new_context()
    items = [ctx.new_entity(ItemAwkward, name=m.name, mood=m) for m in Awkward]
    ctx.flush()
    renamed = make_engine(ItemAwkwardRenamed, update_schema=False)
    assert renamed.schema_alters() == [
        "ALTER TABLE `item` MODIFY COLUMN `mood` enum('it''s','back\\\\slash','UP') NOT NULL"
    ]
    fresh = make_engine(ItemAwkward, update_schema=False).new_context()
    for item in items:
        loaded = fresh.get_by_id(ItemAwkward, item.id)
        assert loaded is not None and loaded.mood is item.mood
