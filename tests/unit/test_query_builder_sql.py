"""The query builder's SQL and its refusals, without any server: the engine below points at a
port nobody listens on, and nothing here runs a terminal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from beeorm_celery import ConfigError, Engine, Entity, Field, QueryError, Registry, Where
from beeorm_celery.errors import QueryBuildError
from beeorm_celery.query import bind
from beeorm_celery.querybuilder import EntityQuery

NOWHERE = "mysql://root@127.0.0.1:1/nothing"


class Gadget(Entity, redis_cache=True):
    name: str = Field(max_length=50)


class Plain(Entity):
    name: str = Field(max_length=50)


@pytest.fixture
def engine() -> Iterator[Engine]:
    registry = Registry()
    registry.register_mysql(NOWHERE)
    registry.register_mysql(NOWHERE, pool="replica")
    registry.register_redis("redis://127.0.0.1:1/0")
    registry.register_entity(Gadget, Plain)
    engine = registry.validate()
    yield engine
    engine.close()


# --- what each method writes


def test_a_bare_query_selects_every_column(engine: Engine) -> None:
    assert engine.query("users").sql == "SELECT * FROM `users`"


def test_select_quotes_columns_tables_stars_aggregates_and_aliases(engine: Engine) -> None:
    q = engine.query("users").select(
        "id", "users.name", "profiles.*", "count(*) as n", "SUM(users.age) AS total", " x  AS  y "
    )
    assert q.sql == (
        "SELECT `id`, `users`.`name`, `profiles`.*, COUNT(*) AS `n`, SUM(`users`.`age`) AS "
        "`total`, `x` AS `y` FROM `users`"
    )
    assert engine.query("t").select("*").sql == "SELECT * FROM `t`"


def test_select_replaces_an_earlier_select(engine: Engine) -> None:
    assert engine.query("t").select("a").select("b").sql == "SELECT `b` FROM `t`"


def test_where_takes_a_value_or_an_operator_and_a_value(engine: Engine) -> None:
    q = engine.query("users").where("status", "published").where("age", ">=", 18)
    assert q.sql == "SELECT * FROM `users` WHERE `status` = 'published' AND `age` >= 18"


@pytest.mark.parametrize(
    ("op", "written"),
    [
        ("=", "="),
        ("!=", "!="),
        ("<>", "<>"),
        ("<", "<"),
        ("<=", "<="),
        (">", ">"),
        (">=", ">="),
        ("like", "LIKE"),
        ("LIKE", "LIKE"),
        ("not like", "NOT LIKE"),
        ("NOT   Like", "NOT LIKE"),
    ],
)
def test_every_operator_of_the_list_is_accepted(engine: Engine, op: str, written: str) -> None:
    assert (
        engine.query("t").where("c", op, "x%").sql == f"SELECT * FROM `t` WHERE `c` {written} 'x%'"
    )


def test_none_compares_as_is_null(engine: Engine) -> None:
    q = engine.query("t")
    assert q.where("c", None).sql.endswith("WHERE `c` IS NULL")
    assert q.where("c", "!=", None).sql.endswith("WHERE `c` IS NOT NULL")
    assert q.where("c", "<>", None).sql.endswith("WHERE `c` IS NOT NULL")
    assert (
        q.where_null("c").where_not_null("d").sql.endswith("WHERE `c` IS NULL AND `d` IS NOT NULL")
    )


def test_values_of_every_kind_become_escaped_literals(engine: Engine) -> None:
    q = (
        engine.query("t")
        .where("a", "it's a \\ back\0slash")
        .where("b", True)
        .where("c", Decimal("1.50"))
        .where("d", date(2026, 1, 2))
        .where("e", 2.5)
        .where("f", b"\x00'")
    )
    assert q.sql == (
        "SELECT * FROM `t` WHERE `a` = 'it\\'s a \\\\ back\\0slash' AND `b` = 1 AND "
        "`c` = 1.50 AND `d` = '2026-01-02' AND `e` = 2.5e0 AND `f` = _binary X'0027'"
    )


def test_or_where_and_groups(engine: Engine) -> None:
    q = engine.query("t").where("a", 1).or_where("b", 2).where("c", 3)
    assert q.sql.endswith("WHERE `a` = 1 OR `b` = 2 AND `c` = 3")  # SQL's precedence, as said
    grouped = engine.query("t").where("c", 3).where(lambda g: g.where("a", 1).or_where("b", 2))
    assert grouped.sql.endswith("WHERE `c` = 3 AND (`a` = 1 OR `b` = 2)")
    either = engine.query("t").where("c", 3).or_where(lambda g: g.where("a", 1).where("b", 2))
    assert either.sql.endswith("WHERE `c` = 3 OR (`a` = 1 AND `b` = 2)")
    assert engine.query("t").or_where("a", 1).sql.endswith("WHERE `a` = 1")
    assert engine.query("t").where(lambda g: g).sql == "SELECT * FROM `t`"  # an empty group


def test_where_in_and_not_in(engine: Engine) -> None:
    q = engine.query("t")
    assert q.where_in("id", [1, 2, "x"]).sql.endswith("WHERE `id` IN (1, 2, 'x')")
    assert q.where_in("id", (i for i in range(2))).sql.endswith("WHERE `id` IN (0, 1)")
    assert q.where_not_in("id", {7}).sql.endswith("WHERE `id` NOT IN (7)")
    assert q.where_in("id", []).sql.endswith("WHERE 0 = 1")  # matches nothing
    assert q.where_not_in("id", []).sql.endswith("WHERE 1 = 1")  # excludes nothing


def test_joins(engine: Engine) -> None:
    q = (
        engine.query("users")
        .join("posts", "users.id", "posts.author_id")
        .left_join("profiles", "users.id", "=", "profiles.user_id")
        .join("badges", "badges.level", "<=", "users.level")
    )
    assert q.sql == (
        "SELECT * FROM `users` JOIN `posts` ON `users`.`id` = `posts`.`author_id` "
        "LEFT JOIN `profiles` ON `users`.`id` = `profiles`.`user_id` "
        "JOIN `badges` ON `badges`.`level` <= `users`.`level`"
    )


def test_order_group_limit_offset(engine: Engine) -> None:
    q = (
        engine.query("t")
        .select("kind", "COUNT(*) AS n")
        .where("x", ">", 0)
        .group_by("kind", "t.sub")
        .order_by("n", "DESC")
        .order_by("kind")
        .limit(10)
        .offset(20)
    )
    assert q.sql == (
        "SELECT `kind`, COUNT(*) AS `n` FROM `t` WHERE `x` > 0 GROUP BY `kind`, `t`.`sub` "
        "ORDER BY `n` DESC, `kind` ASC LIMIT 20, 10"
    )
    assert engine.query("t").limit(5).sql.endswith(" LIMIT 5")
    assert engine.query("t").limit(0).sql.endswith(" LIMIT 0")
    assert engine.query("t").offset(5).sql.endswith(" LIMIT 5, 18446744073709551615")


def test_count_first_and_page_statements(engine: Engine) -> None:
    q = engine.query("t").select("a").where("x", 1).order_by("a").limit(3).offset(4)
    compiled = q._compile()
    assert compiled.count == "SELECT COUNT(*) FROM `t` WHERE `x` = 1"
    assert q._first_sql() == "SELECT `a` FROM `t` WHERE `x` = 1 ORDER BY `a` ASC LIMIT 4, 1"
    assert q._page_sql(3, 20) == "SELECT `a` FROM `t` WHERE `x` = 1 ORDER BY `a` ASC LIMIT 40, 20"
    grouped = engine.query("t").join("u", "t.id", "u.t_id").group_by("t.kind").where("x", 1)
    assert grouped._compile().count == (
        "SELECT COUNT(*) FROM (SELECT 1 FROM `t` JOIN `u` ON `t`.`id` = `u`.`t_id` "
        "WHERE `x` = 1 GROUP BY `t`.`kind`) AS `_beeorm_groups`"
    )


# --- immutable, compiled once


def test_each_call_returns_a_new_builder_and_leaves_the_old_one_as_it_was(engine: Engine) -> None:
    base = engine.query("users").where("age", ">=", 18)
    before = base.sql
    adults_by_name = base.order_by("name")
    minors = base.where("age", "<", 65).limit(3)
    assert base.sql == before
    assert adults_by_name is not base and minors is not base
    assert adults_by_name.sql == before + " ORDER BY `name` ASC"
    assert minors.sql == before + " AND `age` < 65 LIMIT 3"


def test_the_sql_is_compiled_once_per_builder(engine: Engine) -> None:
    q = engine.query("users").where("age", ">=", 18)
    assert q.sql is q.sql
    assert q._compile() is q._compile()


def test_an_entity_class_gives_its_table_and_pool(engine: Engine) -> None:
    assert engine.query(Gadget).sql == "SELECT * FROM `gadget`"
    assert engine.query(Gadget).pool == "default"
    assert engine.query(Gadget, pool="replica").pool == "replica"
    assert engine.query("t").pool == "default"
    moved = engine.query("t").where("a", 1).using("replica")
    assert (moved.pool, moved.sql) == ("replica", "SELECT * FROM `t` WHERE `a` = 1")
    with pytest.raises(ConfigError, match="'nope' is not registered"):
        moved.using("nope")


def test_as_entities_selects_ids_for_cached_entities_and_every_column_otherwise(
    engine: Engine,
) -> None:
    cached = engine.query(Gadget).where("name", "x").as_entities()
    assert isinstance(cached, EntityQuery)
    assert cached.sql == "SELECT `gadget`.`id` FROM `gadget` WHERE `name` = 'x'"
    plain = engine.query("plain").join("t", "t.plain_id", "plain.id").as_entities()
    assert plain.sql == (
        "SELECT `plain`.`id`, `plain`.`name` FROM `plain` JOIN `t` ON `t`.`plain_id` = `plain`.`id`"
    )
    assert isinstance(plain.where("id", 1), EntityQuery)  # building goes on
    with pytest.raises(QueryBuildError, match="select"):
        plain.select("name")


def test_as_entities_needs_an_entity_table(engine: Engine) -> None:
    with pytest.raises(QueryBuildError, match="`users` on pool 'default' is not the table"):
        engine.query("users").as_entities()
    with pytest.raises(QueryBuildError, match="not the table"):
        engine.query("plain", pool="replica").as_entities()  # Plain lives on "default"
    assert isinstance(engine.query(Plain, pool="replica").as_entities(), EntityQuery)


def test_an_unknown_pool_or_entity_is_refused_at_once(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="'nope' is not registered"):
        engine.query("users", pool="nope")

    class Stranger(Entity):
        name: str = ""

    with pytest.raises(ConfigError, match="Stranger is not registered"):
        engine.query(Stranger)


# --- refusals: each names the bad part and the call


BAD_NAMES = [
    "",
    "a b",
    "a`b",
    "a'b",
    'a"b',
    "a;b",
    "a.b.c",
    ".a",
    "a.",
    "a-b",
    "x" * 65,
    "é",
    "id\n",
    "1 OR 1=1",
    "id`; DROP TABLE users; --",
    "a\0",
    "(a)",
    "*",
]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_bad_column_is_refused_by_every_method(engine: Engine, bad: str) -> None:
    q = engine.query("t")
    calls: list[tuple[str, Any]] = [
        ("where()", lambda: q.where(bad, 1)),
        ("or_where()", lambda: q.or_where(bad, "=", 1)),
        ("where_in()", lambda: q.where_in(bad, [1])),
        ("where_not_in()", lambda: q.where_not_in(bad, [1])),
        ("where_null()", lambda: q.where_null(bad)),
        ("where_not_null()", lambda: q.where_not_null(bad)),
        ("order_by()", lambda: q.order_by(bad)),
        ("group_by()", lambda: q.group_by(bad)),
        ("join()", lambda: q.join("u", bad, "u.id")),
        ("left_join()", lambda: q.left_join("u", "u.id", "=", bad)),
    ]
    for call, build in calls:
        with pytest.raises(QueryBuildError) as caught:
            build()
        message = str(caught.value)
        assert message.startswith(call), message
        assert "nothing was sent" in message
        assert repr(bad)[:40] in message


@pytest.mark.parametrize("bad", [*BAD_NAMES[:-1], "a.b"])
def test_a_bad_table_is_refused(engine: Engine, bad: str) -> None:
    with pytest.raises(QueryBuildError, match=r"engine\.query\(\): .* is not a table"):
        engine.query(bad)
    with pytest.raises(QueryBuildError, match=r"join\(\): .* is not a table"):
        engine.query("t").join(bad, "t.id", "x.id")


@pytest.mark.parametrize(
    "bad", ["==", "LIKE;", "IN", "REGEXP", "=1 OR 1", "", "l\u0131ke", ";", "IS", "<=>", None, 1]
)
def test_an_operator_off_the_list_is_refused(engine: Engine, bad: Any) -> None:
    with pytest.raises(QueryBuildError, match=r"where\(\): .* is not an operator"):
        engine.query("t").where("a", bad, 1)


def test_like_is_not_a_join_operator(engine: Engine) -> None:
    with pytest.raises(QueryBuildError, match="is not an operator"):
        engine.query("t").join("u", "t.a", "LIKE", "u.b")


@pytest.mark.parametrize(
    "bad",
    [
        "*, secret",
        "a, b",
        "COUNT(DISTINCT id)",
        "CONCAT(a)",
        "SLEEP(5)",
        "COUNT(*) AS n m",
        "a AS `b`",
        "a AS b c",
        "SUM(*)",
        "a.b.*",
        "(SELECT 1)",
        "a -- ",
        "a /* */",
        "",
        "  ",
    ],
)
def test_a_bad_select_item_is_refused(engine: Engine, bad: str) -> None:
    with pytest.raises(QueryBuildError, match=r"^select\(\): "):
        engine.query("t").select(bad)


@pytest.mark.parametrize("bad", ["up", "ascending", "desc;", "", None, "DESC, a"])
def test_a_bad_direction_is_refused(engine: Engine, bad: Any) -> None:
    with pytest.raises(QueryBuildError, match=r"order_by\(\): .* is not a direction"):
        engine.query("t").order_by("a", bad)


@pytest.mark.parametrize("bad", [-1, True, 1.5, "10", None])
def test_a_bad_limit_offset_or_page_is_refused(engine: Engine, bad: Any) -> None:
    q = engine.query("t")
    with pytest.raises(QueryBuildError, match=r"limit\(\)"):
        q.limit(bad)
    with pytest.raises(QueryBuildError, match=r"offset\(\)"):
        q.offset(bad)
    with pytest.raises(QueryBuildError, match=r"paginate\(\)"):
        q.paginate_async(bad, 10)
    with pytest.raises(QueryBuildError, match=r"paginate\(\)"):
        q.paginate_async(1, bad)
    with pytest.raises(QueryBuildError, match=r"paginate\(\)"):
        q.paginate_async(0, 10)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda q: q.where("a", "<", None), "matches no row"),
        (lambda q: q.where("a", "LIKE", None), "matches no row"),
        (lambda q: q.where("a", [1, 2]), "use where_in"),
        (lambda q: q.where("a", "=", (1,)), "use where_in"),
        (lambda q: q.where("a", float("nan")), "NaN"),
        (lambda q: q.where("a", object()), "cannot use a object"),
        (lambda q: q.where("a", "\ud800"), "lone surrogate"),
        (lambda q: q.where("a"), "takes"),
        (lambda q: q.where("a", "=", 1, 2), "takes"),
        (lambda q: q.where_in("a", "abc"), "must be a list"),
        (lambda q: q.where_in("a", 5), "must be a list"),
        (lambda q: q.where_in("a", [[1]]), "is a list itself"),
        (lambda q: q.where_in("a", [float("inf")]), "infinity"),
        (lambda q: q.where(lambda g: "a = 1"), "not a builder"),
        (lambda q: q.select(), "at least one"),
        (lambda q: q.group_by(), "at least one"),
    ],
)
def test_bad_values_and_calls_are_refused(engine: Engine, build: Any, match: str) -> None:
    with pytest.raises(QueryBuildError, match=match):
        build(engine.query("t"))


def test_a_long_value_is_shortened_in_the_message(engine: Engine) -> None:
    with pytest.raises(QueryBuildError) as caught:
        engine.query("t").where("x" * 10_000, 1)
    assert len(str(caught.value)) < 300


def test_query_build_error_is_a_query_error() -> None:
    assert issubclass(QueryBuildError, QueryError)


# --- ? placeholders (Where, and query_runner.select)


def test_bind_replaces_placeholders_outside_quotes_only() -> None:
    sql = "SELECT '?', \"?\", `?`, 'it\\'s ?' FROM t WHERE a = ? AND b IN ?"
    assert bind(sql, ("x'y", [1, 2]), "select()") == (
        "SELECT '?', \"?\", `?`, 'it\\'s ?' FROM t WHERE a = 'x\\'y' AND b IN (1, 2)"
    )


@pytest.mark.parametrize(("sql", "params"), [("a = ?", ()), ("a = ?", (1, 2)), ("a = 1", (1,))])
def test_bind_refuses_a_count_mismatch(sql: str, params: tuple[Any, ...]) -> None:
    with pytest.raises(QueryBuildError, match=re.escape("select('x')")):
        bind(sql, params, "select('x')")
    with pytest.raises(QueryError, match="placeholders"):  # Where keeps raising a QueryError
        Where(sql, *params)
