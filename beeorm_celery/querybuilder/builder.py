"""The immutable builder: each method checks its part, renders it to SQL at once, and returns a
new builder; the statements are put together once, on the first terminal call, and kept.

``Query`` gives rows as dicts, ``EntityQuery`` (``query.as_entities()``) gives entities loaded
through the caches. Both share the building methods of ``Builder``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from beeorm_celery.async_reads.page import Page
from beeorm_celery.entity import Entity
from beeorm_celery.errors import ConfigError, QueryBuildError
from beeorm_celery.query import sql_value
from beeorm_celery.querybuilder import names
from beeorm_celery.querybuilder.names import shown

if TYPE_CHECKING:
    from typing import Self

    from beeorm_celery.async_reads import QueryFuture
    from beeorm_celery.async_reads.worker import Rows, RunSQL
    from beeorm_celery.engine import Engine
    from beeorm_celery.schema import EntitySchema

E = TypeVar("E", bound=Entity)
B = TypeVar("B", bound="Builder[Any]")
T = TypeVar("T")

# The largest LIMIT MySQL takes: how it spells "all the rows after an OFFSET".
_NO_LIMIT = 18446744073709551615

_LISTS = (list, tuple, set, frozenset)


class _Compiled:
    """The statements of one builder, made on first use."""

    __slots__ = ("count", "rows", "unlimited")

    def __init__(self, rows: str, unlimited: str, count: str) -> None:
        self.rows = rows  # what get() sends
        self.unlimited = unlimited  # the same without LIMIT, for first() and pages
        self.count = count


class Builder(Generic[E]):
    """The building methods; see ``Query``. Never changed once returned, so it may be kept,
    shared between threads, and extended in several directions."""

    __slots__ = (
        "_compiled",
        "_engine",
        "_group",
        "_joins",
        "_limit",
        "_offset",
        "_order",
        "_pool",
        "_schema",
        "_select",
        "_table",
        "_where",
    )

    _engine: Engine
    _pool: str
    _table: str  # quoted
    _schema: EntitySchema | None  # the entity of the table, when known
    _select: tuple[str, ...]
    _joins: tuple[str, ...]
    _where: tuple[tuple[str, str], ...]  # (AND | OR, condition)
    _group: tuple[str, ...]
    _order: tuple[str, ...]
    _limit: int | None
    _offset: int
    _compiled: _Compiled | None

    def __init__(self, engine: Engine, pool: str, table: str, schema: EntitySchema | None) -> None:
        self._engine = engine
        self._pool = pool
        self._table = table
        self._schema = schema
        self._select = ()
        self._joins = ()
        self._where = ()
        self._group = ()
        self._order = ()
        self._limit = None
        self._offset = 0
        self._compiled = None

    @property
    def pool(self) -> str:
        """The MySQL pool the query runs on."""
        return self._pool

    def _copy(self) -> Self:
        return self._copy_as(type(self))

    def _copy_as(self, cls: type[B]) -> B:
        """This builder's state in a new ``cls`` (another kind of builder, for as_entities)."""
        new = object.__new__(cls)
        new._engine = self._engine
        new._pool = self._pool
        new._table = self._table
        new._schema = self._schema
        new._select = self._select
        new._joins = self._joins
        new._where = self._where
        new._group = self._group
        new._order = self._order
        new._limit = self._limit
        new._offset = self._offset
        new._compiled = None
        return new

    # --- building

    def using(self, pool: str) -> Self:
        """The same query on another registered MySQL pool (a replica)."""
        _check_pool(self._engine, pool)
        new = self._copy()
        new._pool = pool
        return new

    def select(self, *columns: str) -> Self:
        """The columns to return (replacing any chosen before): ``"name"``, ``"users.name"``,
        ``"*"``, ``"profiles.*"``, ``"COUNT(*)"`` / ``SUM`` / ``AVG`` / ``MIN`` / ``MAX`` of a
        column, each with an optional ``"... AS alias"``. Default: ``*``."""
        if not columns:
            raise QueryBuildError("select() needs at least one column; nothing was sent")
        new = self._copy()
        new._select = tuple(names.select_item(c) for c in columns)
        return new

    @overload
    def where(self, column: str, value: Any, /) -> Self: ...
    @overload
    def where(self, column: str, operator: str, value: Any, /) -> Self: ...
    @overload
    def where(self, group: Callable[[Self], Builder[Any]], /) -> Self: ...
    def where(self, column: Any, *args: Any) -> Self:
        """AND a condition: ``where("age", ">=", 18)``, ``where("status", "published")``
        (``=``), or a parenthesised group ``where(lambda q: q.where(...).or_where(...))``.

        Operators: ``= != <> < <= > >= LIKE NOT LIKE``. The value is always a bound parameter.
        ``None`` with ``=`` is ``IS NULL``, with ``!=`` / ``<>`` ``IS NOT NULL``.
        """
        return self._and_or("AND", self._condition("where()", column, args))

    @overload
    def or_where(self, column: str, value: Any, /) -> Self: ...
    @overload
    def or_where(self, column: str, operator: str, value: Any, /) -> Self: ...
    @overload
    def or_where(self, group: Callable[[Self], Builder[Any]], /) -> Self: ...
    def or_where(self, column: Any, *args: Any) -> Self:
        """OR a condition (as ``where``). AND binds tighter than OR, as in SQL:
        ``where(a).or_where(b).where(c)`` is ``a OR (b AND c)``; group with a callable."""
        return self._and_or("OR", self._condition("or_where()", column, args))

    def where_in(self, column: str, values: Iterable[Any]) -> Self:
        """``column IN (values...)``; an empty ``values`` matches nothing."""
        return self._and_or("AND", self._in("where_in()", column, values, "IN", "0 = 1"))

    def where_not_in(self, column: str, values: Iterable[Any]) -> Self:
        """``column NOT IN (values...)``; an empty ``values`` matches everything."""
        return self._and_or("AND", self._in("where_not_in()", column, values, "NOT IN", "1 = 1"))

    def where_null(self, column: str) -> Self:
        return self._and_or("AND", names.column(column, "where_null()") + " IS NULL")

    def where_not_null(self, column: str) -> Self:
        return self._and_or("AND", names.column(column, "where_not_null()") + " IS NOT NULL")

    def join(self, table: str, left: str, operator: str, right: str | None = None) -> Self:
        """``INNER JOIN table ON left operator right``; ``join(table, left, right)`` means
        ``=``. ``left`` and ``right`` are columns (``"users.id"``), never values."""
        return self._join("JOIN", "join()", table, left, operator, right)

    def left_join(self, table: str, left: str, operator: str, right: str | None = None) -> Self:
        """``LEFT JOIN``, as ``join``."""
        return self._join("LEFT JOIN", "left_join()", table, left, operator, right)

    def order_by(self, column: str, direction: str = "asc") -> Self:
        """Add a sort key (after any added before): ``"asc"`` or ``"desc"``."""
        new = self._copy()
        key = names.column(column, "order_by()") + " " + names.direction(direction, "order_by()")
        new._order = (*self._order, key)
        return new

    def group_by(self, *columns: str) -> Self:
        if not columns:
            raise QueryBuildError("group_by() needs at least one column; nothing was sent")
        new = self._copy()
        new._group = (*self._group, *(names.column(c, "group_by()") for c in columns))
        return new

    def limit(self, n: int) -> Self:
        new = self._copy()
        new._limit = names.count(n, "limit()", 0)
        return new

    def offset(self, n: int) -> Self:
        new = self._copy()
        new._offset = names.count(n, "offset()", 0)
        return new

    # --- the parts

    def _and_or(self, connective: str, condition: str | None) -> Self:
        if condition is None:  # an empty group
            return self
        new = self._copy()
        new._where = (*self._where, (connective, condition))
        return new

    def _condition(self, call: str, column: Any, args: tuple[Any, ...]) -> str | None:
        if callable(column) and not args:
            return self._group_of(call, column)
        if len(args) == 1:
            op, value = "=", args[0]
        elif len(args) == 2:
            op, value = names.operator(args[0], call), args[1]
        else:
            raise QueryBuildError(
                f"{call} takes (column, value), (column, operator, value) or a callable, "
                f"got {1 + len(args)} arguments; nothing was sent"
            )
        quoted = names.column(column, call)
        if value is None:
            if op == "=":
                return quoted + " IS NULL"
            if op in ("!=", "<>"):
                return quoted + " IS NOT NULL"
            raise QueryBuildError(
                f"{call}: {column} {op} None matches no row in SQL; use where_null() or "
                "where_not_null(); nothing was sent"
            )
        if isinstance(value, _LISTS):
            raise QueryBuildError(
                f"{call}: the value for {column} is a {type(value).__name__}; use "
                "where_in() for a list of values; nothing was sent"
            )
        return f"{quoted} {op} {sql_value(value)}"

    def _group_of(self, call: str, build: Callable[[Self], Builder[Any]]) -> str | None:
        blank: Builder[Any] = Builder(self._engine, self._pool, self._table, self._schema)
        inner = build(blank._copy_as(type(self)))
        if not isinstance(inner, Builder):
            raise QueryBuildError(
                f"{call}: the group function returned {shown(inner)}, not a builder; "
                "nothing was sent"
            )
        if not inner._where:
            return None
        return "(" + _conditions(inner._where) + ")"

    def _in(self, call: str, column: str, values: Iterable[Any], op: str, empty: str) -> str:
        quoted = names.column(column, call)
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise QueryBuildError(
                f"{call}: the values for {column} must be a list (or another iterable), "
                f"not {shown(values)}; nothing was sent"
            )
        items = list(values)
        if not items:
            return empty
        for item in items:
            if isinstance(item, _LISTS):
                raise QueryBuildError(
                    f"{call}: {shown(item)} in the values for {column} is a list itself; "
                    "nothing was sent"
                )
        return f"{quoted} {op} {sql_value(items)}"

    def _join(
        self, kind: str, call: str, table: str, left: str, operator: str, right: str | None
    ) -> Self:
        if right is None:
            operator, right = "=", operator
        clause = (
            f" {kind} {names.name(table, call, 'a table')} ON {names.column(left, call)} "
            f"{names.operator(operator, call, names.COMPARISONS)} {names.column(right, call)}"
        )
        new = self._copy()
        new._joins = (*self._joins, clause)
        return new

    # --- the statements

    def _select_list(self) -> str:
        return ", ".join(self._select) if self._select else "*"

    def _compile(self) -> _Compiled:
        compiled = self._compiled
        if compiled is not None:
            return compiled
        body = " FROM " + self._table + "".join(self._joins)
        if self._where:
            body += " WHERE " + _conditions(self._where)
        grouped = ""
        if self._group:
            grouped = " GROUP BY " + ", ".join(self._group)
        ordered = " ORDER BY " + ", ".join(self._order) if self._order else ""
        unlimited = "SELECT " + self._select_list() + body + grouped + ordered
        rows = unlimited
        if self._limit is not None or self._offset:
            limit = self._limit if self._limit is not None else _NO_LIMIT
            rows += f" LIMIT {self._offset}, {limit}" if self._offset else f" LIMIT {limit}"
        if grouped:  # count the groups, not the rows
            count = f"SELECT COUNT(*) FROM (SELECT 1{body}{grouped}) AS `_beeorm_groups`"
        else:
            count = "SELECT COUNT(*)" + body
        # A benign race: two threads may both compile; they make the same strings.
        self._compiled = compiled = _Compiled(rows, unlimited, count)
        return compiled

    @property
    def sql(self) -> str:
        """The SELECT that ``get()`` sends, values escaped in place (for logs and tests)."""
        return self._compile().rows

    def _first_sql(self) -> str:
        return self._compile().unlimited + f" LIMIT {self._offset}, 1"

    def _page_sql(self, page: int, per_page: int) -> str:
        return self._compile().unlimited + f" LIMIT {(page - 1) * per_page}, {per_page}"

    # --- running (for the terminals)

    def _submit(self, job: Callable[[RunSQL], T], timeout: float | None) -> QueryFuture[T]:
        return self._engine.query_runner.submit(self._pool, job, timeout)

    def _submit_count(self, timeout: float | None) -> QueryFuture[int]:
        sql = self._compile().count
        return self._submit(lambda run: int(run(sql)[0][0]), timeout)

    def _submit_page(
        self,
        page: int,
        per_page: int,
        timeout: float | None,
        items_of: Callable[[Rows], list[T]],
    ) -> QueryFuture[Page[T]]:
        """The count, then the page's rows (skipped past the end), on one connection."""
        page = names.count(page, "paginate()", 1)
        per_page = names.count(per_page, "paginate()", 1)
        counting, selecting = self._compile().count, self._page_sql(page, per_page)
        offset = (page - 1) * per_page

        def job(run: RunSQL) -> Page[T]:
            total = int(run(counting)[0][0])
            items = items_of(run(selecting)) if offset < total else []
            return Page(items, total, page, per_page)

        return self._submit(job, timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on pool {self._pool!r}: {self.sql}>"


def _conditions(where: tuple[tuple[str, str], ...]) -> str:
    parts = [where[0][1]]
    for connective, condition in where[1:]:
        parts.append(connective)
        parts.append(condition)
    return " ".join(parts)


def start(
    engine: Engine, source: str | type[Entity], pool: str | None
) -> tuple[str, str, EntitySchema | None]:
    """(pool, quoted table, schema or None) of ``engine.query(source, pool)``."""
    schema: EntitySchema | None
    if isinstance(source, str):
        pool = pool or "default"
        table = names.name(source, "engine.query()", "a table")
        schema = engine.schema_for_table(pool, source)
    else:
        schema = engine.schema(source)  # ConfigError when it is not registered
        pool = pool or schema.options.mysql_pool
        table = f"`{schema.table}`"
    _check_pool(engine, pool)
    return pool, table, schema


def _check_pool(engine: Engine, pool: str) -> None:
    if pool not in engine.mysql:
        known = ", ".join(sorted(engine.mysql))
        raise ConfigError(
            f"MySQL pool {pool!r} is not registered (registered: {known}); call "
            f"registry.register_mysql(url, pool={pool!r})"
        )
