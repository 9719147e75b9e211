"""``Where`` and ``Pager``: BeeORM's query pieces."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any

from pymysql.converters import escape_item, escape_string

from beeorm_celery.entity import Entity, Reference
from beeorm_celery.errors import QueryBuildError


def sql_value(value: Any) -> str:
    """The SQL literal of one parameter, escaped by PyMySQL; a list becomes ``(a, b, ...)``."""
    kind = type(value)  # the two commonest first: a builder call pays for every check
    if kind is int:
        return str(value)
    if kind is str and value.isascii():
        return "'" + escape_string(value) + "'"  # what escape_item does for a str
    if kind is bool:
        return "1" if value else "0"
    if value is None:
        return "NULL"
    if isinstance(value, Entity | Reference):
        return str(int(value.id))
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if not items:
            return "(NULL)"  # `x IN (NULL)` matches nothing, like an empty list should
        return "(" + ", ".join(sql_value(v) for v in items) + ")"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and not math.isfinite(value):
        # PyMySQL would refuse it with its own ProgrammingError, far from the Where(...) call
        raise QueryBuildError(f"{value} cannot be a query parameter (MySQL has no NaN or infinity)")
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # PyMySQL would fail while sending, or pass the surrogate on as a raw byte
            raise QueryBuildError(
                f"{value!r:.60} is not valid Unicode (it holds a lone surrogate) and cannot be "
                "a query parameter"
            ) from None
    if isinstance(value, int | float | Decimal | str | bytes | date):
        return str(escape_item(value, "utf8mb4"))
    raise QueryBuildError(
        f"cannot use a {type(value).__name__} as a query parameter: {value!r:.60}"
    )


def bind(sql: str, params: Sequence[Any], label: str) -> str:
    """``sql`` with each ``?`` outside quotes replaced by the next of ``params``, escaped.

    The values are escaped as PyMySQL escapes its ``%s`` parameters (connections never run with
    NO_BACKSLASH_ESCAPES). ``label`` names the call in errors, which are raised before anything
    is sent.
    """
    out: list[str] = []
    values = iter(params)
    used = 0
    quote: str | None = None
    escaped = False
    for char in sql:
        if quote is not None:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\" and quote != "`":
                # MySQL strings take backslash escapes: 'it\'s ?' is one string, and the
                # ? in it is text, not a placeholder (identifiers in backticks do not)
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in ("'", '"', "`"):
            quote = char
            out.append(char)
        elif char == "?":
            try:
                out.append(sql_value(next(values)))
            except StopIteration:
                raise QueryBuildError(
                    f"{label} has more ? placeholders than the {len(params)} parameters given"
                ) from None
            used += 1
        else:
            out.append(char)
    if used != len(params):
        raise QueryBuildError(f"{label} has {used} ? placeholders but {len(params)} parameters")
    return "".join(out)


class Where:
    """A WHERE clause with BeeORM's ``?`` placeholders::

        Where("`price` > ? AND `stock` > ?", 10, 0)
        Where("`id` IN ?", [1, 2, 3])          # a list expands to (1, 2, 3)

    Values are escaped by PyMySQL. A ``?`` inside a quoted string is left alone.
    """

    __slots__ = ("params", "sql")

    def __init__(self, sql: str = "1", *params: Any) -> None:
        self.sql = sql
        self.params = params
        self.render()  # fail here, where the mistake was made

    def render(self) -> str:
        """The clause with every placeholder replaced by an escaped literal."""
        return bind(self.sql, self.params, f"Where({self.sql!r})")

    def __repr__(self) -> str:
        return f"Where({self.sql!r}, {', '.join(repr(p) for p in self.params)})"


@dataclass(frozen=True)
class Pager:
    """Page ``page`` (from 1) of ``per_page`` rows."""

    page: int = 1
    per_page: int = 50

    def __post_init__(self) -> None:
        if self.page < 1 or self.per_page < 1:
            raise QueryBuildError(
                f"Pager(page={self.page}, per_page={self.per_page}): both must be >= 1"
            )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def limit_sql(self) -> str:
        return f" LIMIT {self.offset}, {self.per_page}"


def where_sql(where: Where | None) -> str:
    return " WHERE " + where.render() if where is not None else ""


def ids_in(ids: Sequence[int] | Iterable[int]) -> str:
    return ", ".join(str(int(i)) for i in ids)
