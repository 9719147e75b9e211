"""The shop's entities, declared as in the README ('Declaring entities')."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum

from beeorm_celery import Entity, Field, Reference


class Status(Enum):
    ACTIVE = "active"
    BLOCKED = "blocked"


class Category(Entity, redis_cache=True, local_cache=True, async_group="catalog"):
    name: str = Field(max_length=100, required=True, unique="name")


class Product(Entity, redis_cache=True, async_group="catalog"):
    name: str = Field(max_length=200, required=True)
    sku: str | None = Field(max_length=40, unique="sku")
    price: Decimal = Field(precision=10, scale=2, default=Decimal("0.00"))
    stock: int = 0
    active: bool = True
    status: Status = Status.ACTIVE
    weight: float | None = None
    description: str | None = None  # no max_length: TEXT
    photo: bytes | None = None  # BLOB
    released: date | None = None
    created_at: datetime | None = None  # DATETIME(6)
    category: Reference[Category] | None = Field(cached=True)


class Order(Entity, redis_cache=True, async_group="orders"):
    customer: str = Field(max_length=100, required=True, index="customer")
    total: Decimal = Field(precision=12, scale=2, default=Decimal("0.00"))
    placed_at: datetime | None = None


ENTITIES = (Category, Product, Order)
