"""The terminals: ``Query`` gives rows as dicts, ``EntityQuery`` entities through the caches.

Every terminal runs on ``engine.query_runner``: the ``*_async`` ones return its ``QueryFuture``
(``timeout=`` enforced by MySQL, ``cancel()`` kills the query, ``race()``, ``query_stats()``),
and the plain ones wait for that future, so both kinds share the time limit, the statistics and
the slow-query log.
"""

from __future__ import annotations

from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeVar

from beeorm_celery.entity import Entity
from beeorm_celery.errors import QueryBuildError
from beeorm_celery.querybuilder.builder import Builder, start
from beeorm_celery.reads import Reader, uses_cache

if TYPE_CHECKING:
    from typing import Self

    from beeorm_celery.async_reads import Page, QueryFuture
    from beeorm_celery.async_reads.worker import Rows, RunSQL
    from beeorm_celery.engine import Engine

E = TypeVar("E", bound=Entity)
T = TypeVar("T")

Row = dict[str, Any]


class Query(Builder[E]):
    """A SELECT on one table (and its joins), built a call at a time; rows come as dicts.

    ::

        adults = (engine.query("users").select("id", "name").where("age", ">=", 18)
                  .order_by("created_at", "desc").limit(20).get_async(timeout=2))

    Made by ``engine.query(table_or_entity, pool=None)``. Each building method returns a new
    builder and leaves this one as it was; a mistake (a bad name, operator or value) raises
    ``QueryBuildError`` in that call, before anything is sent.
    """

    __slots__ = ()

    @classmethod
    def start(cls, engine: Engine, source: str | type[E], pool: str | None = None) -> Query[E]:
        return cls(engine, *start(engine, source, pool))

    # --- async terminals

    def get_async(self, *, timeout: float | None = None) -> QueryFuture[list[Row]]:
        """Every row, as ``{column: value}`` (a name selected twice keeps the last value:
        alias one of them)."""
        sql = self._compile().rows
        return self._submit(lambda run: _dicts(run(sql)), timeout)

    def first_async(self, *, timeout: float | None = None) -> QueryFuture[Row | None]:
        """The first row (after ``offset``), or None."""
        sql = self._first_sql()

        def job(run: RunSQL) -> Row | None:
            rows = _dicts(run(sql))
            return rows[0] if rows else None

        return self._submit(job, timeout)

    def count_async(self, *, timeout: float | None = None) -> QueryFuture[int]:
        """How many rows match (of a grouped query: how many groups); ``select``,
        ``order_by``, ``limit`` and ``offset`` do not change it."""
        return self._submit_count(timeout)

    def paginate_async(
        self, page: int, per_page: int, *, timeout: float | None = None
    ) -> QueryFuture[Page[Row]]:
        """A ``Page`` of dicts: the count, then page ``page`` (from 1) of ``per_page`` rows, on
        one connection; ``timeout`` covers both. The builder's own limit/offset are ignored."""
        return self._submit_page(page, per_page, timeout, _dicts)

    # --- waiting terminals

    def get(self, *, timeout: float | None = None) -> list[Row]:
        return wait(self.get_async(timeout=timeout))

    def first(self, *, timeout: float | None = None) -> Row | None:
        return wait(self.first_async(timeout=timeout))

    def count(self, *, timeout: float | None = None) -> int:
        return wait(self.count_async(timeout=timeout))

    def paginate(self, page: int, per_page: int, *, timeout: float | None = None) -> Page[Row]:
        return wait(self.paginate_async(page, per_page, timeout=timeout))

    def as_entities(self) -> EntityQuery[E]:
        """The same query giving the table's entities (read-only, loaded through their caches
        as ``ctx.search`` loads them) instead of dicts. Needs the table of a registered entity
        on this pool: ``engine.query(Product)`` (or its table name on its pool)."""
        if self._schema is None:
            raise QueryBuildError(
                f"as_entities(): table {self._table} on pool {self._pool!r} is not the table of "
                "a registered entity; build it with engine.query(EntityClass) "
                "(pool=... for a replica); nothing was sent"
            )
        return self._copy_as(EntityQuery)


class EntityQuery(Builder[E]):
    """``query.as_entities()``: the terminals give entities. Joins and conditions work as in
    ``Query``; the select list is the entity's own (``select()`` is refused). A join that
    repeats a row repeats its entity."""

    __slots__ = ()

    def select(self, *columns: str) -> Self:
        raise QueryBuildError(
            "select() on as_entities(): entities load their own columns; select before "
            "as_entities() is ignored, and rows of other columns come from a Query's get()"
        )

    def _select_list(self) -> str:
        schema = self._schema
        assert schema is not None  # as_entities() checked it
        table = self._table
        if uses_cache(schema):  # ids: the rows come from the caches, as for ctx.search
            return f"{table}.`id`"
        return ", ".join(f"{table}.`{c.name}`" for c in schema.columns)

    def _entities(self, rows: Rows) -> list[E]:
        assert self._schema is not None
        entities = Reader(self._engine).entities_from_search_rows(self._schema, rows)
        return entities  # type: ignore[return-value]

    def get_async(self, *, timeout: float | None = None) -> QueryFuture[list[E]]:
        sql = self._compile().rows
        return self._submit(lambda run: self._entities(run(sql)), timeout)

    def first_async(self, *, timeout: float | None = None) -> QueryFuture[E | None]:
        sql = self._first_sql()

        def job(run: RunSQL) -> E | None:
            entities = self._entities(run(sql))
            return entities[0] if entities else None

        return self._submit(job, timeout)

    def count_async(self, *, timeout: float | None = None) -> QueryFuture[int]:
        return self._submit_count(timeout)

    def paginate_async(
        self, page: int, per_page: int, *, timeout: float | None = None
    ) -> QueryFuture[Page[E]]:
        return self._submit_page(page, per_page, timeout, self._entities)

    def get(self, *, timeout: float | None = None) -> list[E]:
        return wait(self.get_async(timeout=timeout))

    def first(self, *, timeout: float | None = None) -> E | None:
        return wait(self.first_async(timeout=timeout))

    def count(self, *, timeout: float | None = None) -> int:
        return wait(self.count_async(timeout=timeout))

    def paginate(self, page: int, per_page: int, *, timeout: float | None = None) -> Page[E]:
        return wait(self.paginate_async(page, per_page, timeout=timeout))


def _dicts(rows: Rows) -> list[Row]:
    # map/zip in C: a keyword such as zip(strict=...) would cost more than the dict itself,
    # and rows always hold one value per column
    return list(map(dict, map(zip, repeat(rows.columns), rows)))


def wait(future: QueryFuture[T]) -> T:
    """The result of a terminal's future; an interrupt while waiting kills the query too."""
    try:
        return future.result()
    except BaseException:
        future.cancel()  # False (and harmless) when the future itself failed
        raise
