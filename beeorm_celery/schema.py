"""The schema of one entity, resolved from its annotations when it is registered."""

from __future__ import annotations

import hashlib
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Union

from beeorm_celery.columns import (
    BoolType,
    BytesType,
    ColumnType,
    DateTimeType,
    DateType,
    DecimalType,
    EnumType,
    FloatType,
    IdType,
    IntType,
    InvalidValue,
    ReferenceType,
    StringType,
)
from beeorm_celery.defaults import DEFAULT_DECIMAL_PRECISION, DEFAULT_DECIMAL_SCALE
from beeorm_celery.entity import MISSING, Entity, EntityOptions, FieldSpec, Reference
from beeorm_celery.errors import ConfigError
from beeorm_celery.rowcodec import RowCodec

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SUPPORTED_TYPES = (
    "int, bool, float, Decimal, str, bytes, date, datetime, an Enum with str values, "
    "Reference[Entity], each optionally `| None`"
)


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool
    default: Any = MISSING  # MISSING: none (a NOT NULL column then needs a value at flush)
    required: bool = False
    cached: bool = False  # on a reference: get_by_reference served from Redis

    @property
    def is_reference(self) -> bool:
        return isinstance(self.type, ReferenceType)

    def sql_definition(self) -> str:
        null = "NULL" if self.nullable else "NOT NULL"
        return f"`{self.name}` {self.type.sql_type()} {null}"


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool


@dataclass
class EntitySchema:
    entity: type[Entity]
    options: EntityOptions
    columns: list[Column]
    indexes: dict[str, Index]
    table: str = field(init=False)  # options.table, read on every operation
    columns_by_name: dict[str, Column] = field(init=False)
    layout_hash: str = field(init=False)
    data_columns: list[Column] = field(init=False)  # every column but ``id``
    unique_indexes: dict[str, Index] = field(init=False)
    references: list[Column] = field(init=False)
    cached_references: list[Column] = field(init=False)
    data_column_names: frozenset[str] = field(init=False)  # what an INSERT carries
    data_column_order: tuple[str, ...] = field(init=False)  # ... in the order of its JSON row
    row_codec: RowCodec = field(init=False, repr=False, compare=False)  # compiled per schema
    data_column_index: dict[str, int] = field(init=False)  # position in a cached row

    def __post_init__(self) -> None:
        self.table = self.options.table
        self.columns_by_name = {c.name: c for c in self.columns}
        layout = "|".join(
            [self.table] + [f"{c.name}:{c.type.sql_type()}:{c.nullable}" for c in self.columns]
        )
        self.layout_hash = hashlib.sha1(layout.encode()).hexdigest()[:8]
        # Read on every flush and every read: computed once.
        self.data_columns = self.columns[1:]
        self.unique_indexes = {n: i for n, i in self.indexes.items() if i.unique}
        self.references = [c for c in self.columns if c.is_reference]
        self.cached_references = [c for c in self.references if c.cached]
        self.data_column_names = frozenset(c.name for c in self.data_columns)
        self.data_column_order = tuple(c.name for c in self.data_columns)
        self.row_codec = RowCodec(self)
        self.data_column_index = {c.name: n for n, c in enumerate(self.data_columns)}

    @property
    def name(self) -> str:
        return self.entity.__name__

    def default_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for column in self.data_columns:
            if column.default is not MISSING:
                values[column.name] = column.default
            elif column.nullable:
                values[column.name] = None
            else:
                values[column.name] = column.type.zero
        return values


def _fail(cls: type, message: str) -> ConfigError:
    return ConfigError(f"{cls.__module__}.{cls.__qualname__}: {message}")


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return args[0], nullable
        return annotation, nullable  # a real union: reported as unsupported
    return annotation, False


def _column_type(cls: type, name: str, annotation: Any, spec: FieldSpec) -> ColumnType:
    origin = typing.get_origin(annotation)
    if origin is Reference:
        (target,) = typing.get_args(annotation)
        if not (isinstance(target, type) and issubclass(target, Entity)):
            raise _fail(
                cls, f"field {name!r}: Reference[...] needs an Entity class, got {target!r}"
            )
        return ReferenceType(target)
    if annotation is bool:
        return BoolType()
    if annotation is int:
        return IntType()
    if annotation is float:
        return FloatType()
    if annotation is Decimal:
        precision = spec.precision or DEFAULT_DECIMAL_PRECISION
        scale = spec.scale if spec.scale is not None else DEFAULT_DECIMAL_SCALE
        if not (0 < precision <= 65 and 0 <= scale <= 30 and scale <= precision):
            raise _fail(
                cls, f"field {name!r}: precision={precision}, scale={scale} is not a valid DECIMAL"
            )
        return DecimalType(precision, scale)
    if annotation is str:
        return StringType(spec.max_length)
    if annotation is bytes:
        return BytesType(spec.max_length)
    if annotation is datetime:
        return DateTimeType()
    if annotation is date:
        return DateType()
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        if not all(isinstance(m.value, str) for m in annotation):
            raise _fail(
                cls,
                f"field {name!r}: {annotation.__name__} needs str values to map to a MySQL ENUM",
            )
        if len(annotation) == 0:
            raise _fail(cls, f"field {name!r}: {annotation.__name__} has no members")
        return EnumType(annotation)
    raise _fail(
        cls, f"field {name!r}: unsupported annotation {annotation!r}; use {SUPPORTED_TYPES}"
    )


def _resolve_hints(cls: type[Entity], namespace: dict[str, Any]) -> dict[str, Any]:
    """The field annotations of ``cls`` and its entity bases, evaluated.

    Each class's string annotations (``from __future__ import annotations``) are evaluated in
    its own module, with the registered entities added, so forward references resolve.
    """
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is Entity or not (isinstance(klass, type) and issubclass(klass, Entity)):
            continue
        module = sys.modules.get(klass.__module__)
        globalns = dict(vars(module)) if module else {}
        localns = {**namespace, "Reference": Reference, klass.__name__: klass}
        for name, annotation in inspect.get_annotations(klass).items():
            try:
                hints[name] = _evaluate(annotation, globalns, localns)
            except Exception as e:  # NameError mostly; a broken annotation is a config error too
                raise _fail(
                    cls,
                    f"field {name!r}: cannot resolve {annotation!r} ({e}); "
                    "register the entity it names, or import the type in its module",
                ) from e
    return hints


def _evaluate(annotation: Any, globalns: dict[str, Any], localns: dict[str, Any]) -> Any:
    """``annotation`` with every string and ForwardRef in it evaluated.

    Without ``from __future__ import annotations`` a forward reference is written
    ``Reference["Node"] | None``: the string then sits as a ForwardRef *inside* an evaluated
    annotation, so evaluating top-level strings alone is not enough.
    """
    if isinstance(annotation, str):
        # eval of the class's own annotation text, in its own module: what typing does too
        annotation = eval(annotation, globalns, localns)
    if isinstance(annotation, typing.ForwardRef):
        return _evaluate(annotation.__forward_arg__, globalns, localns)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is None or not args:
        return annotation
    resolved = tuple(_evaluate(a, globalns, localns) for a in args)
    if resolved == args:
        return annotation
    if origin is Union or origin is types.UnionType:
        return Union[resolved]  # noqa: UP007 - rebuilding from a tuple of types
    if origin is Reference:
        return Reference[resolved[0]]  # type: ignore[valid-type]
    return annotation  # unsupported anyway; reported as such with its own name


def build_schema(cls: type[Entity], namespace: dict[str, Any]) -> EntitySchema:
    """Read an entity class into an EntitySchema, or raise ConfigError saying what to fix.

    ``namespace`` maps names to the other registered entities, so forward references made by
    ``from __future__ import annotations`` resolve even for classes defined in a function.
    """
    options = cls.__beeorm_options__
    if not _IDENTIFIER.match(options.table):
        raise _fail(cls, f"table name {options.table!r} is not a plain SQL identifier")
    hints = _resolve_hints(cls, namespace)
    columns = [Column("id", IdType(), nullable=False)]
    index_columns: dict[str, list[str]] = {}
    unique_names: set[str] = set()
    plain_names: set[str] = set()
    for name, annotation in hints.items():
        if name == "id" or name.startswith("_") or typing.get_origin(annotation) is typing.ClassVar:
            continue
        if not _IDENTIFIER.match(name):
            raise _fail(cls, f"field {name!r} is not a plain SQL identifier")
        raw_default = getattr(cls, name, MISSING)
        spec = raw_default if isinstance(raw_default, FieldSpec) else FieldSpec(default=raw_default)
        inner, nullable = _split_optional(annotation)
        column_type = _column_type(cls, name, inner, spec)
        _check_options(cls, name, spec, column_type, nullable)
        default = spec.default
        if default is not MISSING and not (default is None and nullable):
            if default is None:
                raise _fail(cls, f"field {name!r}: default None needs the annotation `| None`")
            try:
                default = column_type.validate(default)
            except InvalidValue as e:
                raise _fail(cls, f"field {name!r}: default {default!r:.40} is invalid: {e}") from e
        columns.append(Column(name, column_type, nullable, default, spec.required, spec.cached))
        for is_unique, option in ((True, spec.unique), (False, spec.index)):
            if option:
                index_name = name if option is True else str(option)
                index_columns.setdefault(index_name, []).append(name)
                (unique_names if is_unique else plain_names).add(index_name)
    both = unique_names & plain_names
    if both:
        raise _fail(cls, f"index {sorted(both)[0]!r} is declared both unique=... and index=...")
    indexes = _build_indexes(cls, columns, index_columns, unique_names)
    return EntitySchema(cls, options, columns, indexes)


def _check_options(
    cls: type, name: str, spec: FieldSpec, column_type: ColumnType, nullable: bool
) -> None:
    if spec.max_length is not None and not isinstance(column_type, StringType | BytesType):
        raise _fail(cls, f"field {name!r}: max_length is for str and bytes fields")
    if spec.max_length is not None and not 0 < spec.max_length <= 16383:
        raise _fail(cls, f"field {name!r}: max_length must be 1..16383 (omit it for TEXT/BLOB)")
    if (spec.precision is not None or spec.scale is not None) and not isinstance(
        column_type, DecimalType
    ):
        raise _fail(cls, f"field {name!r}: precision/scale are for Decimal fields")
    if spec.cached and not isinstance(column_type, ReferenceType):
        raise _fail(cls, f"field {name!r}: cached=True is for Reference fields")
    if spec.required and nullable:
        raise _fail(cls, f"field {name!r}: required=True on a `| None` field; drop one of them")


def _build_indexes(
    cls: type,
    columns: list[Column],
    index_columns: dict[str, list[str]],
    unique_names: set[str],
) -> dict[str, Index]:
    indexes: dict[str, Index] = {}
    for index_name, names in index_columns.items():
        if not _IDENTIFIER.match(index_name) or index_name.upper() == "PRIMARY":
            raise _fail(cls, f"index name {index_name!r} is not usable")
        for column_name in names:
            column = next(c for c in columns if c.name == column_name)
            if column.type.sql_type() in ("text", "blob"):
                raise _fail(
                    cls,
                    f"field {column_name!r}: TEXT/BLOB columns cannot be indexed; "
                    "give it a max_length",
                )
        indexes[index_name] = Index(index_name, tuple(names), index_name in unique_names)
    for column in columns:
        if column.is_reference and not any(i.columns[0] == column.name for i in indexes.values()):
            indexes[f"ref_{column.name}"] = Index(f"ref_{column.name}", (column.name,), False)
    return indexes
