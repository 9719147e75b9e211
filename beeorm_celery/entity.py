"""Declaring entities: ``Entity``, ``Field`` and ``Reference``.

A class body only records what the user wrote; annotations are resolved when the class is
registered (``Registry.validate``), so ``from __future__ import annotations`` and forward
references work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from beeorm_celery.defaults import DEFAULT_ASYNC_GROUP, DEFAULT_POOL
from beeorm_celery.errors import ReadOnlyEntityError

if TYPE_CHECKING:
    from beeorm_celery.context import Context
    from beeorm_celery.schema import EntitySchema

E = TypeVar("E", bound="Entity")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldSpec:
    """What ``Field(...)`` records; read by the schema builder."""

    default: Any = MISSING
    max_length: int | None = None
    required: bool = False
    unique: str | bool | None = None
    index: str | bool | None = None
    precision: int | None = None
    scale: int | None = None
    cached: bool = False


def Field(  # a factory users call like a class, as in dataclasses / pydantic
    default: Any = MISSING,
    *,
    max_length: int | None = None,
    required: bool = False,
    unique: str | bool | None = None,
    index: str | bool | None = None,
    precision: int | None = None,
    scale: int | None = None,
    cached: bool = False,
) -> Any:
    """Column options for one entity field.

    ``unique`` / ``index`` take an index name (the same name on several fields makes one
    composite index) or ``True`` (an index named after the field). ``cached`` on a
    ``Reference`` serves ``get_by_reference`` from Redis.
    """
    return FieldSpec(default, max_length, required, unique, index, precision, scale, cached)


@dataclass(frozen=True)
class EntityOptions:
    """The class keywords of an entity, as written."""

    table: str
    mysql_pool: str = DEFAULT_POOL
    redis_cache: str | None = None
    local_cache: int | None = None  # max entries, None = off
    async_group: str = DEFAULT_ASYNC_GROUP
    cache_all: bool = False


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Reference(Generic[E]):
    """The id of another entity, typed: ``category: Reference[Category]``.

    Assign an entity, a ``Reference`` or an int id; read ``.id`` or load with ``.get(ctx)``.
    """

    __slots__ = ("entity_type", "id")

    def __init__(self, entity_type: type[E], id: int) -> None:  # `id`: BeeORM's name
        self.entity_type = entity_type
        self.id = id

    def get(self, ctx: Context) -> E | None:
        return ctx.get_by_id(self.entity_type, self.id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reference):
            return self.entity_type is other.entity_type and self.id == other.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.entity_type, self.id))

    def __repr__(self) -> str:
        return f"Reference[{self.entity_type.__name__}]({self.id})"


class Entity:
    """Base class of every entity. Subclass it with class keywords (see SPEC)::

        class Product(Entity, redis_cache=True, async_group="catalog"):
            name: str = Field(max_length=200, required=True)

    Instances come from a Context (``ctx.new_entity``, ``ctx.get_by_id``...). They are
    read-only unless tracked for editing by ``ctx.new_entity`` or ``ctx.edit``.
    """

    id: int
    __beeorm_options__: ClassVar[EntityOptions]
    __beeorm_schema__: ClassVar[EntitySchema | None] = None

    def __init_subclass__(
        cls,
        *,
        table: str | None = None,
        mysql_pool: str = DEFAULT_POOL,
        redis_cache: bool | str = False,
        local_cache: bool | int = False,
        async_group: str | bool = DEFAULT_ASYNC_GROUP,
        cache_all: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        table_name = table or snake_case(cls.__name__)
        if redis_cache is True:
            redis_pool: str | None = DEFAULT_POOL
        elif redis_cache is False:
            redis_pool = None
        else:
            redis_pool = redis_cache
        if local_cache is True:
            from beeorm_celery.defaults import DEFAULT_LOCAL_CACHE_ENTRIES

            local_size: int | None = DEFAULT_LOCAL_CACHE_ENTRIES
        elif local_cache is False:
            local_size = None
        else:
            local_size = int(local_cache)
        if async_group is True:
            group = table_name
        elif async_group is False:
            group = DEFAULT_ASYNC_GROUP
        else:
            group = async_group
        cls.__beeorm_options__ = EntityOptions(
            table=table_name,
            mysql_pool=mysql_pool,
            redis_cache=redis_pool,
            local_cache=local_size,
            async_group=group,
            cache_all=cache_all,
        )
        cls.__beeorm_schema__ = None

    def __init__(self, **values: Any) -> None:
        raise TypeError(
            f"{type(self).__name__} is created through a Context: "
            f"ctx.new_entity({type(self).__name__}, ...)"
        )

    # --- state, kept in __dict__ under names no field can have (fields never start with _)

    def __setattr__(self, name: str, value: Any) -> None:
        state = self.__dict__
        if not state.get("_bo_editable"):
            raise ReadOnlyEntityError(
                f"{type(self).__name__}(id={state.get('id')}) is read-only; "
                f"edit a tracked copy: entity = ctx.edit(entity)"
            )
        schema = type(self).__beeorm_schema__
        if schema is None or name not in schema.columns_by_name:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        if name == "id":
            raise ReadOnlyEntityError(f"{type(self).__name__}.id is set by new_entity and fixed")
        state[name] = value

    def __delattr__(self, name: str) -> None:
        raise ReadOnlyEntityError(f"fields of {type(self).__name__} cannot be deleted")

    def __repr__(self) -> str:
        schema = type(self).__beeorm_schema__
        names = [c.name for c in schema.columns] if schema else ["id"]
        shown = ", ".join(f"{n}={self.__dict__.get(n, MISSING)!r:.60}" for n in names)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        schema = type(self).__beeorm_schema__
        names = [c.name for c in schema.columns] if schema else ["id"]
        return all(self.__dict__.get(n) == other.__dict__.get(n) for n in names)

    def __hash__(self) -> int:
        return hash((type(self), self.__dict__.get("id")))


def field_values(entity: Entity) -> dict[str, Any]:
    """The entity's column values (without internal state)."""
    return {k: v for k, v in entity.__dict__.items() if not k.startswith("_bo_")}
