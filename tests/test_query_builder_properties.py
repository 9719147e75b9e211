"""The query builder is safe by construction, checked on generated queries (hypothesis).

Each example builds a query from random column names, operators, directions, limits and values
(quotes, backslashes, NULs, emoji, very long strings), then:

- the builder refuses it with ``QueryBuildError`` exactly when a part breaks the documented
  rules (names: ASCII letters, digits, ``_``, one ``.``; operators from the fixed list; ...),
  and then **no statement reaches MySQL**;
- otherwise it runs, and answers what the same query written by hand with PyMySQL ``%s``
  parameters answers (the same rows, or a ``QueryError`` with the same MySQL error code), and
  **exactly one statement reaches MySQL**.

Statements are counted by MySQL itself, privately: the session status ``Questions`` of the one
connection the runner has (``query_workers=1``), read on that same connection, together with
its ``CONNECTION_ID()`` so that a reconnect cannot hide a statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from beeorm_celery import QueryError
from beeorm_celery.errors import QueryBuildError
from tests.support.sql import execute

COLUMNS = ("id", "name", "note", "n", "things.name", "things.n")
OPERATORS = ("=", "!=", "<>", "<", "<=", ">", ">=", "LIKE", "NOT LIKE")
TRICKY = (
    "'",
    "''",
    '"',
    "\\",
    "\\'",
    "\0",
    "a\0b",
    "`",
    "%",
    "_",
    "?",
    "%s",
    "😀",
    "naïve",
    "' OR '1'='1",
    "\\' OR 1=1 -- ",
    "'; DROP TABLE things; --",
    "\n\r\t\x1a",
    "x" * 3000,
)
SEED_NAMES = (*TRICKY[:-1], "plain", "😀😀", "O'Brien", "back\\slash", "x" * 255)
_VALID_NAME = re.compile(r"[A-Za-z0-9_]{1,64}(\.[A-Za-z0-9_]{1,64})?")
_STATUS = (
    "SELECT CONNECTION_ID(), VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
    "WHERE VARIABLE_NAME = 'QUESTIONS'"
)


def bounded(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )


# --- what is generated


def mostly(good: st.SearchStrategy[Any], *others: st.SearchStrategy[Any]) -> Any:
    """``good`` nine times in ten, so that most generated queries run."""
    rest = st.one_of(*others)
    return st.integers(0, 9).flatmap(lambda k: good if k else rest)


texts = st.one_of(
    st.sampled_from(TRICKY),
    st.sampled_from(SEED_NAMES),
    st.text(max_size=20),
    st.builds(lambda s, k: s * k, st.sampled_from(TRICKY[:-1]), st.integers(100, 3000)),
)
values = st.one_of(
    texts,
    mostly(st.sampled_from(SEED_NAMES), st.none()),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
)


columns = mostly(
    st.sampled_from(COLUMNS),
    st.sampled_from(("nope", "things.nope", "other.name", "1", "_")),  # valid, unknown to MySQL
    st.sampled_from(("name`", "`name`", "name; --", "a.b.c", "name ", "na me", "x" * 65, "é")),
    st.text(max_size=12),
)
operators = mostly(
    st.sampled_from((*OPERATORS, "like", "not  like", " >= ")),
    st.sampled_from(("==", "IN", "<=>", "= 1 OR 1 =", "LIKE;", "IS", "REGEXP", "l\u0131ke")),
    st.text(max_size=6),
)


@dataclass
class Condition:
    kind: str  # where, where2 (no operator), or_where, in, not_in, null, not_null
    column: Any
    operator: Any = None
    value: Any = None


conditions = st.one_of(
    st.builds(Condition, st.sampled_from(("where", "or_where")), columns, operators, values),
    st.builds(Condition, st.just("where2"), columns, st.none(), values),
    st.builds(
        Condition,
        st.sampled_from(("in", "not_in")),
        columns,
        st.none(),
        st.lists(values, max_size=4),
    ),
    st.builds(Condition, st.sampled_from(("null", "not_null")), columns),
)


@dataclass
class Spec:
    conditions: list[Condition]
    order: tuple[Any, Any] | None
    limit: int | None
    terminal: str
    problems: list[str] = field(default_factory=list)


specs = st.builds(
    Spec,
    st.lists(conditions, max_size=4),
    st.none()
    | st.tuples(columns, st.sampled_from(("asc", "DESC", "Desc", "desc", "up", "desc;", ""))),
    st.none() | st.integers(-2, 8),
    st.sampled_from(("get", "first", "count")),
)


# --- the query by hand, and whether the rules allow it


def _name_ok(column: Any) -> bool:
    return isinstance(column, str) and _VALID_NAME.fullmatch(column) is not None


def _quoted(column: str) -> str:
    return "`" + column.replace(".", "`.`") + "`"


def _operator(op: Any) -> str | None:
    if not isinstance(op, str) or not op.isascii():
        return None
    normal = " ".join(op.split()).upper()
    return normal if normal in OPERATORS else None


def by_hand(spec: Spec) -> tuple[bool, str, list[Any]]:
    """(allowed, sql, params): the statement written by hand, with PyMySQL parameters."""
    allowed = True
    parts: list[str] = []
    params: list[Any] = []
    for c in spec.conditions:
        allowed &= _name_ok(c.column)
        if not allowed:
            break
        column = _quoted(c.column)
        joiner = "OR" if c.kind == "or_where" else "AND"
        if c.kind in ("null", "not_null"):
            text = f"{column} IS {'NOT ' if c.kind == 'not_null' else ''}NULL"
        elif c.kind in ("in", "not_in"):
            negate = "NOT " if c.kind == "not_in" else ""
            if c.value:
                text = f"{column} {negate}IN ({', '.join(['%s'] * len(c.value))})"
                params.extend(c.value)
            else:
                text = "TRUE" if negate else "FALSE"
        else:
            op = "=" if c.kind == "where2" else _operator(c.operator)
            if op is None:
                allowed = False
                break
            if c.value is None:
                if op not in ("=", "!=", "<>"):
                    allowed = False
                    break
                text = f"{column} IS {'' if op == '=' else 'NOT '}NULL"
            else:
                text = f"{column} {op} %s"
                params.append(c.value)
        parts.append(text if not parts else f"{joiner} {text}")
    sql = "SELECT `id`, `name`, `note`, `n` FROM `things`"
    if spec.terminal == "count":
        sql = "SELECT COUNT(*) FROM `things`"
    if parts:
        sql += " WHERE " + " ".join(parts)
    if spec.order is not None:
        column, direction = spec.order
        allowed &= _name_ok(column) and direction.upper() in ("ASC", "DESC")
        if allowed and spec.terminal != "count":
            sql += f" ORDER BY {_quoted(column)} {direction.upper()}, `id`"
    elif spec.terminal != "count":
        sql += " ORDER BY `id`"
    if spec.limit is not None:
        allowed &= spec.limit >= 0
        if spec.terminal == "get":
            sql += f" LIMIT {spec.limit}"
    if spec.terminal == "first":
        sql += " LIMIT 1"
    return allowed, sql, params


def by_builder(engine: Any, spec: Spec) -> Any:
    """The builder query of ``spec`` (raising QueryBuildError while building, if it does)."""
    q = engine.query("things").select("id", "name", "note", "n")
    for c in spec.conditions:
        if c.kind in ("where", "or_where"):
            q = getattr(q, c.kind)(c.column, c.operator, c.value)
        elif c.kind == "where2":
            q = q.where(c.column, c.value)
        elif c.kind in ("in", "not_in"):
            q = (q.where_in if c.kind == "in" else q.where_not_in)(c.column, c.value)
        else:
            q = (q.where_null if c.kind == "null" else q.where_not_null)(c.column)
    if spec.order is not None:
        q = q.order_by(*spec.order)
    q = q.order_by("id")
    if spec.limit is not None:
        q = q.limit(spec.limit)
    return q


# --- the fixture: one table of awkward rows, an engine with one runner connection


@pytest.fixture
def setup(make_engine, mysql_url):
    engine = make_engine(query_workers=1)
    execute(
        engine,
        "CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(255) NULL, note TEXT NULL, "
        "n BIGINT NULL) CHARACTER SET utf8mb4",
    )
    for i, name in enumerate(SEED_NAMES, start=1):
        note = None if i % 4 == 0 else name * 3
        number = None if i % 5 == 0 else (i * 7919) % 23 - 11
        execute(engine, "INSERT INTO things VALUES (%s, %s, %s, %s)", (i, name, note, number))
    pool = engine.mysql["default"]
    reference = pool.new_connection()  # the same settings (sql_mode, charset) as the runner's
    yield engine, reference
    reference.close()


def statements_so_far(engine: Any) -> tuple[int, int]:
    """(connection id, Questions) of the runner's only connection, read on it."""
    rows = engine.query_runner.select(_STATUS).result(10)
    return int(rows[0][0]), int(rows[0][1])


@bounded(1000)
@given(spec=specs)
def test_a_generated_query_runs_as_written_by_hand_or_is_refused_unsent(setup, spec):
    engine, reference = setup
    allowed, sql, params = by_hand(spec)
    before = statements_so_far(engine)
    sent = 0
    outcome: Any
    try:
        query = by_builder(engine, spec)
    except QueryBuildError:
        assert not allowed, f"refused a query the rules allow: {spec}"
        outcome = "refused"
    else:
        assert allowed, f"built a query the rules refuse: {query.sql!r:.300}"
        sent = 1
        try:
            outcome = getattr(query, spec.terminal)(timeout=30)
        except QueryBuildError:
            raise
        except QueryError as e:
            assert e.code is not None  # an error from MySQL, after sending
            outcome = ("error", e.code)
    after = statements_so_far(engine)
    assert after[0] == before[0], "the runner reconnected: the count would not be exact"
    assert after[1] - before[1] == sent + 1, (
        f"{after[1] - before[1] - 1} statements reached MySQL, expected {sent}"
    )
    if outcome == "refused":
        event("refused before sending")
        return
    try:
        with reference.cursor() as cursor:
            cursor.execute(sql, params)
            rows = list(cursor.fetchall())
    except pymysql.MySQLError as e:
        expected: Any = ("error", e.args[0])
    else:
        names = ("id", "name", "note", "n")
        if spec.terminal == "count":
            expected = int(rows[0][0])
        elif spec.terminal == "first":
            expected = dict(zip(names, rows[0], strict=True)) if rows else None
        else:
            expected = [dict(zip(names, row, strict=True)) for row in rows]
    assert outcome == expected
    if isinstance(outcome, tuple):
        event(f"MySQL error {outcome[1]}")
    else:
        event(f"ran: {spec.terminal}, " + ("some rows" if outcome else "no rows"))


def test_the_seeded_rows_can_be_found_by_their_awkward_values(setup):
    # Not left to chance: every tricky name finds its own row, through = and IN
    engine, _ = setup
    q = engine.query("things").select("id")
    for i, name in enumerate(SEED_NAMES, start=1):
        assert {"id": i} in q.where("name", name).get(), name
        assert {"id": i} in q.where_in("name", [name, "zzz"]).get(), name
        assert q.where("name", "LIKE", name).count() >= 1 or "\\" in name, name
