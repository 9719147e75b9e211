"""What a builder call may name: tables, columns, select items, operators, directions.

Each check returns the piece as it goes into the SQL (identifiers backtick-quoted, keywords
upper case) or raises ``QueryBuildError`` naming the call and the bad part. Identifiers are
ASCII letters, digits and ``_`` (at most 64, MySQL's limit), with at most one ``.`` between a
table and a column; nothing else can reach the SQL text, so no quoting can be escaped.
"""

from __future__ import annotations

import re

from beeorm_celery.errors import QueryBuildError

_PART = r"[A-Za-z0-9_]{1,64}"
_NAME = re.compile(_PART)
_COLUMN = re.compile(rf"{_PART}(?:\.{_PART})?")
_ALIASED = re.compile(r"(.+?)\s+[Aa][Ss]\s+(\S+)")
_AGGREGATE = re.compile(r"([A-Za-z]+)\(\s*([^()]*?)\s*\)")

COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
OPERATORS = COMPARISONS | {"LIKE", "NOT LIKE"}
AGGREGATES = frozenset({"COUNT", "SUM", "AVG", "MIN", "MAX"})
DIRECTIONS = frozenset({"ASC", "DESC"})

_NAME_RULE = "ASCII letters, digits and _, at most 64"
_SHOWN_CHARS = 80


def shown(value: object) -> str:
    """``repr(value)``, cut short: a message must not carry a megabyte of input."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _refuse(call: str, what: str, value: object, rule: str) -> QueryBuildError:
    return QueryBuildError(f"{call}: {shown(value)} is not {what} ({rule}); nothing was sent")


def name(value: object, call: str, what: str = "a name") -> str:
    """A single identifier (a table, an alias), quoted."""
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise _refuse(call, what, value, _NAME_RULE)
    return f"`{value}`"


def column(value: object, call: str) -> str:
    """``column`` or ``table.column``, quoted."""
    if not isinstance(value, str) or _COLUMN.fullmatch(value) is None:
        raise _refuse(call, "a column", value, f"{_NAME_RULE}, with one '.' after a table")
    return "`" + value.replace(".", "`.`") + "`"


def select_item(value: object) -> str:
    """A column, ``*``, ``table.*`` or ``COUNT|SUM|AVG|MIN|MAX(column)`` (``COUNT(*)``),
    each optionally followed by ``AS alias``."""
    call = "select()"
    if not isinstance(value, str):
        raise _refuse(call, "a column", value, "a str")
    if _COLUMN.fullmatch(value) is not None:  # the common case, quickly
        return "`" + value.replace(".", "`.`") + "`"
    expression, alias = value.strip(), ""
    aliased = _ALIASED.fullmatch(expression)
    if aliased is not None:
        expression = aliased.group(1)
        alias = " AS " + name(aliased.group(2), call, "an alias")
    return _expression(expression, value) + alias


def _expression(text: str, item: str) -> str:
    call = "select()"
    if text == "*":
        return "*"
    if text.endswith(".*"):
        return name(text[:-2], call, "a table") + ".*"
    match = _AGGREGATE.fullmatch(text)
    if match is None:
        return column(text, call)
    function, argument = match.group(1).upper(), match.group(2)
    if function not in AGGREGATES:
        raise _refuse(call, "an aggregate", item, ", ".join(sorted(AGGREGATES)))
    if argument == "*" and function == "COUNT":
        return "COUNT(*)"
    return f"{function}({column(argument, call)})"


def operator(value: object, call: str, allowed: frozenset[str] = OPERATORS) -> str:
    if type(value) is str and value in allowed:  # written as we write it: the common case
        return value
    if isinstance(value, str) and value.isascii():
        normal = " ".join(value.split()).upper()
        if normal in allowed:
            return normal
    raise _refuse(call, "an operator", value, "one of " + " ".join(sorted(allowed)))


def direction(value: object, call: str) -> str:
    if isinstance(value, str) and value.isascii() and value.upper() in DIRECTIONS:
        return value.upper()
    raise _refuse(call, "a direction", value, "'asc' or 'desc'")


def count(value: object, call: str, minimum: int) -> int:
    """A row count or position (``limit``, ``offset``, a page): an int, at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _refuse(call, "a number", value, f"an int >= {minimum}")
    return value
