from __future__ import annotations

from decimal import Decimal
from enum import Enum

from beeorm_celery import Entity, Field, Reference, consume_async_flush_events


class Status(Enum):
    ACTIVE = "active"
    BLOCKED = "blocked"


class Category(Entity, redis_cache=True, local_cache=True, async_group="catalog"):
    name: str = Field(max_length=100, required=True, unique="name")


class Product(Entity, redis_cache=True, async_group="catalog"):
    name: str = Field(max_length=200, required=True)
    price: Decimal = Field(precision=10, scale=2, default=Decimal("0.00"))
    status: Status = Status.ACTIVE
    category: Reference[Category] | None = Field(cached=True)


def test_smoke(make_engine):
    engine = make_engine(Category, Product)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    p = ctx.new_entity(Product, name="Tesla", price=Decimal("10.50"), category=cat)
    ctx.flush()
    ctx2 = engine.new_context()
    assert ctx2.get_by_id(Product, p.id).name == "Tesla"
    assert ctx2.get_by_unique_index(Category, "name", "Cars").id == cat.id
    assert [x.id for x in ctx2.get_by_reference(Product, "category", cat)] == [p.id]
    e = ctx2.edit(ctx2.get_by_id(Product, p.id))
    e.name = "Model 3"
    ctx2.flush_async()
    assert engine.new_context().get_by_id(Product, p.id).name == "Model 3"
    report = consume_async_flush_events(engine)
    assert report["catalog"].applied_batches == 1
    assert engine.schema_alters() == []
