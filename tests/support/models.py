"""Entities used by tests that run real Celery workers (the worker imports this module too)."""

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


class Counter(Entity, redis_cache=True, async_group="counters"):
    """One row edited many times: order checks."""

    name: str = Field(max_length=50, unique="name")
    value: int = 0


class Note(Entity, async_group="notes"):
    """No cache at all: reads go to MySQL."""

    text: str = Field(max_length=255)


ALL = (Category, Product, Counter, Note)
GROUPS = ("catalog", "counters", "notes")
