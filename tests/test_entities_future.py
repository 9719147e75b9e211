"""Declaring entities with ``from __future__ import annotations``: every annotation is a string
until the registry resolves it, so forward references need no quotes, also in functions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import ClassVar, Optional

from beeorm_celery import Engine, Entity, Field, Reference
from tests.test_entities import check_catalog_declaration, mysql_columns


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
    barcode: bytes = Field(max_length=16, default=b"")
    sku: str | None = Field(None, max_length=32, unique=True)
    shelf: str | None = Field(None, max_length=10, unique="place")
    slot: int | None = Field(None, unique="place")
    rank: int = Field(default=0, index=True)
    label: str = Field(max_length=20, default="", index="labelled")
    note: Optional[str] = Field(None, max_length=50, index="labelled")  # noqa: UP045 - tested


def test_the_spec_catalog_declares_the_same_with_postponed_annotations(
    make_engine: Callable[..., Engine], mysql_url: str
) -> None:
    assert isinstance(Product.__annotations__["price"], str)  # the import is in effect
    check_catalog_declaration(make_engine, mysql_url, Category, Product, Status)


class Author(Entity, redis_cache=True):
    name: str = Field(max_length=50)
    best_book: Reference[Book] | None = None  # Book is defined below


class Book(Entity, redis_cache=True):
    title: str = Field(max_length=50)
    author: Reference[Author] | None = Field(cached=True)


def test_a_module_level_forward_reference_resolves(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(Author, Book)
    ctx = engine.new_context()
    author = ctx.new_entity(Author, name="Lem")
    book = ctx.new_entity(Book, title="Solaris", author=author)
    ctx.edit(author).best_book = book
    ctx.flush()
    read = engine.new_context()
    loaded = read.get_by_id(Author, author.id)
    assert loaded is not None and loaded.best_book == Reference(Book, book.id)
    assert [b.title for b in read.get_by_reference(Book, "author", author)] == ["Solaris"]


def test_entities_declared_in_a_function_refer_to_each_other_and_themselves(
    make_engine: Callable[..., Engine],
) -> None:
    class Employee(Entity, redis_cache=True):
        name: str = Field(max_length=50)
        manager: Reference[Employee] | None = None
        team: Optional[Reference[Team]] = Field(cached=True)  # noqa: UP045 - tested

    class Team(Entity, redis_cache=True):
        name: str = Field(max_length=50, unique=True)
        lead: Reference[Employee] | None = None

    engine = make_engine(Employee, Team)
    ctx = engine.new_context()
    team = ctx.new_entity(Team, name="Core")
    boss = ctx.new_entity(Employee, name="Ada", team=team)
    worker = ctx.new_entity(Employee, name="Bob", manager=boss, team=team)
    ctx.edit(team).lead = boss
    ctx.flush()
    read = engine.new_context()
    loaded = read.get_by_id(Employee, worker.id)
    assert loaded is not None
    assert loaded.manager == Reference(Employee, boss.id)
    assert loaded.team == Reference(Team, team.id)
    core = read.get_by_unique_index(Team, "name", "core")
    assert core is not None and core.lead == Reference(Employee, boss.id)
    assert sorted(e.name for e in read.get_by_reference(Employee, "team", team)) == ["Ada", "Bob"]


class Stamped(Entity):
    created_at: datetime | None = None
    kind: ClassVar[str] = "stamped"  # a class constant, not a column


class Post(Stamped, redis_cache=True):
    title: str = Field(max_length=50)
    _draft_note: str = "never a column"  # underscore names are not fields


def test_fields_are_inherited_and_classvars_and_private_names_are_not_columns(
    make_engine: Callable[..., Engine], mysql_url: str
) -> None:
    engine = make_engine(Post)
    assert list(mysql_columns(mysql_url, "post")) == ["id", "created_at", "title"]
    ctx = engine.new_context()
    when = datetime(2024, 1, 2, 3, 4, 5, 6)
    post = ctx.new_entity(Post, title="hello", created_at=when)
    ctx.flush()
    loaded = engine.new_context().get_by_id(Post, post.id)
    assert loaded is not None and loaded.created_at == when and loaded.kind == "stamped"
