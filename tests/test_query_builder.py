"""The query builder against the real MariaDB: every method, joins, groups, pages, entities,
and the async machinery (timeouts stopped by MySQL, cancels that kill, races, statistics).

The tables are plain ones made here (the builder is for any table), plus two entities for
``as_entities()``. Slow queries read the view ``slow_users``, whose select list calls
``SLEEP(5)``: the builder cannot write ``SLEEP`` itself (values are bound, names are checked),
so the slowness has to live in the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from datetime import datetime
from urllib.parse import urlparse

import pytest

from beeorm_celery import (
    AllQueriesFailedError,
    Entity,
    Field,
    QueryError,
    QueryTimeoutError,
    Registry,
    race,
)
from beeorm_celery.async_reads import Page, QueryFuture, race_future
from beeorm_celery.errors import QueryBuildError
from tests.support import services
from tests.support.services import wait_until
from tests.support.sql import execute


class Member(Entity, redis_cache=True):
    name: str = Field(max_length=50, required=True)
    level: int = 0


class Note(Entity):
    """No cache: as_entities() selects every column."""

    text: str = Field(max_length=100)
    member_id: int = 0


USERS = [
    # id, name, age, status, created_at
    (1, "ann", 34, "active", datetime(2026, 1, 5)),
    (2, "bob", 17, "active", datetime(2026, 1, 3)),
    (3, "cy", 45, "banned", datetime(2026, 1, 9)),
    (4, "dee", 18, "active", datetime(2026, 1, 1)),
    (5, "eve", None, "active", datetime(2026, 1, 7)),
    (6, "o'neil", 61, "banned", datetime(2026, 1, 2)),
]
PROFILES = [(1, 1, "likes tea"), (2, 3, "climbs"), (3, 6, "it's \\ complicated")]
POSTS = [
    (1, 1, "published"),
    (2, 1, "draft"),
    (3, 3, "published"),
    (4, 1, "published"),
    (5, 4, "published"),
]


def _create_tables(engine) -> None:
    execute(
        engine,
        "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, age INT NULL, "
        "status VARCHAR(20) NOT NULL, created_at DATETIME NOT NULL)",
    )
    execute(engine, "CREATE TABLE profiles (id INT PRIMARY KEY, user_id INT, bio TEXT)")
    execute(engine, "CREATE TABLE posts (id INT PRIMARY KEY, author_id INT, status VARCHAR(20))")
    for table, rows in (("users", USERS), ("profiles", PROFILES), ("posts", POSTS)):
        marks = ", ".join(["%s"] * len(rows[0]))
        for row in rows:
            execute(engine, f"INSERT INTO {table} VALUES ({marks})", row)
    # SLEEP runs once per row read, when the query uses `slept`: the view reads one row
    execute(
        engine,
        "CREATE VIEW slow_users AS SELECT id, name, SLEEP(5) AS slept FROM users WHERE id = 1",
    )


@pytest.fixture
def engine(mysql_url, redis_url, key_prefix):
    """An engine with a second MySQL pool "replica" (the same database under another name)."""
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_mysql(mysql_url, pool="replica")
    registry.register_redis(redis_url)
    registry.register_entity(Member, Note)
    engine = registry.validate()
    engine.update_schema()
    _create_tables(engine)
    yield engine
    engine.close()


def running_queries(mysql_url: str, like: str = "%slow_users%") -> list[int]:
    """Ids of the statements running in this test's database now, seen from outside."""
    conn = services.server_connection(mysql_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                "COMMAND = 'Query' AND INFO LIKE %s AND ID <> CONNECTION_ID()",
                (urlparse(mysql_url).path.lstrip("/"), like),
            )
            return [int(r[0]) for r in cursor.fetchall()]
    finally:
        conn.close()


def _wait_until_running(mysql_url: str) -> None:
    wait_until(lambda: running_queries(mysql_url), timeout_s=10)


# --- each method, synchronously


def test_get_returns_every_row_as_a_dict(engine):
    rows = engine.query("users").order_by("id").get()
    assert rows[0] == {
        "id": 1,
        "name": "ann",
        "age": 34,
        "status": "active",
        "created_at": datetime(2026, 1, 5),
    }
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_select_where_order_limit_offset(engine):
    q = (
        engine.query("users")
        .select("id", "name")
        .where("age", ">=", 18)
        .where("status", "active")
        .order_by("created_at", "desc")
    )
    assert q.get() == [{"id": 1, "name": "ann"}, {"id": 4, "name": "dee"}]
    assert q.limit(1).get() == [{"id": 1, "name": "ann"}]
    assert q.offset(1).get() == [{"id": 4, "name": "dee"}]
    assert q.limit(1).offset(1).get() == [{"id": 4, "name": "dee"}]
    assert q.limit(0).get() == []


def test_operators_like_and_values_with_quotes_and_backslashes(engine):
    users = engine.query("users").select("id")
    assert users.where("name", "LIKE", "%e%").order_by("id").get() == [
        {"id": 4},
        {"id": 5},
        {"id": 6},
    ]
    assert users.where("name", "NOT LIKE", "%e%").count() == 3
    assert users.where("name", "o'neil").get() == [{"id": 6}]
    assert users.where("name", "!=", "ann").count() == 5
    assert users.where("name", "<>", "ann").count() == 5
    assert users.where("age", "<", 18).get() == [{"id": 2}]
    assert users.where("age", "<=", 18).count() == 2
    assert users.where("age", ">", 45).get() == [{"id": 6}]
    bios = engine.query("profiles").select("user_id")
    assert bios.where("bio", "it's \\ complicated").get() == [{"user_id": 6}]
    assert bios.where("bio", "x' OR '1'='1").get() == []  # a value is only ever a value


def test_or_where_groups_in_and_null(engine):
    users = engine.query("users").select("id").order_by("id")
    assert users.where("age", "<", 18).or_where("age", ">", 60).get() == [{"id": 2}, {"id": 6}]
    grouped = users.where("status", "active").where(
        lambda g: g.where("age", "<", 18).or_where("age", None)
    )
    assert grouped.get() == [{"id": 2}, {"id": 5}]
    assert users.where_in("name", ["bob", "cy", "zed"]).get() == [{"id": 2}, {"id": 3}]
    assert users.where_in("name", []).get() == []
    assert users.where_not_in("id", [1, 2, 3, 4]).get() == [{"id": 5}, {"id": 6}]
    assert len(users.where_not_in("id", []).get()) == 6
    assert users.where_null("age").get() == [{"id": 5}]
    assert users.where("age", None).get() == [{"id": 5}]
    assert users.where_not_null("age").count() == 5
    assert users.where("age", "!=", None).count() == 5


def test_first_gives_a_dict_or_none(engine):
    users = engine.query("users").select("name").order_by("id")
    assert users.first() == {"name": "ann"}
    assert users.offset(2).first() == {"name": "cy"}
    assert users.where("id", 99).first() is None


def test_inner_and_left_joins_across_two_tables(engine):
    bio = (
        engine.query("users")
        .select("users.id", "profiles.bio")
        .left_join("profiles", "users.id", "=", "profiles.user_id")
    )
    assert bio.where("users.id", 1).first() == {"id": 1, "bio": "likes tea"}
    assert bio.where("users.id", 2).first() == {"id": 2, "bio": None}  # left: kept, no profile
    assert bio.count() == 6
    inner = (
        engine.query("users")
        .select("users.name", "posts.id AS post_id")
        .join("posts", "users.id", "posts.author_id")
        .where("posts.status", "published")
        .order_by("posts.id")
    )
    assert inner.get() == [
        {"name": "ann", "post_id": 1},
        {"name": "cy", "post_id": 3},
        {"name": "ann", "post_id": 4},
        {"name": "dee", "post_id": 5},
    ]
    assert inner.count() == 4
    # A name selected twice keeps one value; aliases keep both
    both = engine.query("users").select("users.id", "profiles.id AS profile_id")
    both = both.join("profiles", "users.id", "profiles.user_id").where("users.id", 3)
    assert both.first() == {"id": 3, "profile_id": 2}


def test_group_by_with_aggregates_and_a_count_of_groups(engine):
    per_author = (
        engine.query("posts")
        .select("author_id", "COUNT(*) AS posts", "MAX(id) AS last")
        .where("status", "published")
        .group_by("author_id")
        .order_by("posts", "desc")
        .order_by("author_id")
    )
    assert per_author.get() == [
        {"author_id": 1, "posts": 2, "last": 4},
        {"author_id": 3, "posts": 1, "last": 3},
        {"author_id": 4, "posts": 1, "last": 5},
    ]
    assert per_author.count() == 3  # groups, not rows (4)
    assert per_author.limit(1).count() == 3  # count ignores limit and order
    page = per_author.paginate(2, 2)
    assert (page.items, page.total, page.last_page) == (
        [{"author_id": 4, "posts": 1, "last": 5}],
        3,
        2,
    )
    by_status = engine.query("users").group_by("status").count()
    assert by_status == 2


def test_paginate_gives_the_page_type_of_paginate_async(engine):
    adults = engine.query("users").select("id").where("age", ">=", 18).order_by("id")
    page = adults.paginate(1, 2)
    assert isinstance(page, Page)
    assert page.items == [{"id": 1}, {"id": 3}]
    assert (page.total, page.page, page.per_page, page.last_page, page.has_next) == (
        4,
        1,
        2,
        2,
        True,
    )
    last = adults.paginate(2, 2)
    assert last.items == [{"id": 4}, {"id": 6}] and not last.has_next
    assert adults.limit(1).offset(3).paginate(2, 2).items == last.items  # its own limit wins
    beyond = adults.paginate(7, 2)
    assert (beyond.items, beyond.total, beyond.last_page) == ([], 4, 2)
    nothing = adults.where("id", 0).paginate(1, 2)
    assert (nothing.items, nothing.total, nothing.last_page, nothing.has_next) == ([], 0, 1, False)


def test_a_builder_is_immutable_and_reusable(engine):
    adults = engine.query("users").select("id").where("age", ">=", 18)
    banned = adults.where("status", "banned")
    assert adults.count() == 4
    assert banned.count() == 2
    assert adults.count() == 4


# --- entities


def test_as_entities_loads_entities_through_the_caches_like_search(engine):
    ctx = engine.new_context()
    members = [ctx.new_entity(Member, name=f"m{i}", level=i % 3) for i in range(6)]
    for i in range(4):
        ctx.new_entity(Note, text=f"note {i}", member_id=members[i].id)
    ctx.flush()
    high = engine.query(Member).where("level", ">=", 1).order_by("id").as_entities()
    found = high.get()
    assert all(isinstance(m, Member) for m in found)
    assert [m.id for m in found] == [m.id for m in members if m.level >= 1]
    assert high.count() == 4
    assert high.first() == found[0]
    assert high.where("id", 0).first() is None
    page = high.paginate(2, 3)
    assert [m.id for m in page] == [found[3].id] and page.total == 4
    # Cached: the row comes from Redis. Change MySQL behind the cache's back: still cached.
    execute(engine, "UPDATE `member` SET `name` = 'changed' WHERE `id` = %s", (found[0].id,))
    assert high.first().name == found[0].name
    # Uncached, with a join: every column from the SELECT itself
    joined = (
        engine.query(Note)
        .join("member", "member.id", "note.member_id")
        .where("member.level", 0)
        .order_by("note.id")
        .as_entities()
    )
    assert [n.text for n in joined.get()] == ["note 0", "note 3"]  # members 0 and 3: level 0
    assert isinstance(joined.get_async().result(10)[0], Note)


# --- async: futures, asyncio, timeouts, cancel, race, stats


def test_async_terminals_return_query_futures_with_the_same_answers(engine):
    q = engine.query("users").select("id").where("status", "active").order_by("id")
    futures = [q.get_async(), q.first_async(), q.count_async(), q.paginate_async(2, 2)]
    assert all(isinstance(f, QueryFuture) and f.pool == "default" for f in futures)
    got, first, count, page = (f.result(10) for f in futures)
    assert got == q.get() and first == q.first() and count == q.count() == 4
    assert page.items == q.paginate(2, 2).items == [{"id": 4}, {"id": 5}]


def test_a_builder_future_can_be_awaited_and_gathered(engine):
    async def main():
        return await asyncio.gather(
            asyncio.wrap_future(engine.query("users").count_async()),
            asyncio.wrap_future(engine.query("posts").where("status", "draft").get_async()),
            asyncio.wrap_future(engine.query("profiles").select("bio").first_async()),
        )

    users, drafts, profile = asyncio.run(main())
    assert users == 6
    assert drafts == [{"id": 2, "author_id": 1, "status": "draft"}]
    assert profile == {"bio": "likes tea"}


def test_queries_run_in_parallel(engine, mysql_url):
    execute(
        engine,
        "CREATE VIEW half_second AS SELECT id, SLEEP(0.5) AS slept FROM users WHERE id = 1",
    )
    started = time.monotonic()
    futures = [engine.query("half_second").get_async() for _ in range(4)]
    assert [len(f.result(10)) for f in futures] == [1, 1, 1, 1]
    assert time.monotonic() - started < 1.8  # one after another would be 2 s


def test_a_timeout_is_stopped_by_mysql_and_raises_query_timeout_error(engine, mysql_url):
    slow = engine.query("slow_users").where("slept", 0)
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError) as caught:
        slow.get_async(timeout=0.3).result(10)
    assert caught.value.code == 1969  # MariaDB's max_statement_time: the server stopped it
    assert time.monotonic() - started < 2.0
    assert running_queries(mysql_url) == []
    with pytest.raises(QueryTimeoutError):
        slow.count(timeout=0.3)  # the waiting terminals take a timeout too
    with pytest.raises(QueryTimeoutError):
        slow.paginate(1, 10, timeout=0.3)
    assert engine.query_stats()["default"].timeouts == 3
    assert engine.query("users").count(timeout=5) == 6  # the connection serves the next one


def test_cancel_kills_the_running_query_in_mysql(engine, mysql_url):
    future = engine.query("slow_users").select("id").where("slept", 0).get_async()
    _wait_until_running(mysql_url)
    started = time.monotonic()
    assert future.cancel() is True
    assert running_queries(mysql_url) == []  # gone from the server when cancel() returns
    assert time.monotonic() - started < 3.0
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(1)
    assert engine.query_stats()["default"].cancellations == 1


def test_cancelling_an_awaiting_task_kills_the_query(engine, mysql_url):
    async def main():
        await asyncio.wait_for(
            asyncio.wrap_future(engine.query("slow_users").first_async()), timeout=0.5
        )

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    wait_until(lambda: running_queries(mysql_url) == [], timeout_s=5)


def test_race_takes_the_fast_one_and_kills_the_slow_one(engine, mysql_url):
    slow = engine.query("slow_users", pool="replica").where("slept", 0).count_async()
    _wait_until_running(mysql_url)
    fast = engine.query("users").count_async()
    assert race(slow, fast, timeout=10) == 6
    assert slow.cancelled()
    assert running_queries(mysql_url) == []
    assert engine.query_stats()["replica"].cancellations == 1

    async def main():
        return await asyncio.wrap_future(
            race_future(engine.query("users", pool="replica").count_async(), fast)
        )

    assert asyncio.run(main()) == 6


def test_race_of_failing_builder_queries_names_every_error(engine):
    with pytest.raises(AllQueriesFailedError) as caught:
        race(
            engine.query("users").where("nope", 1).count_async(),
            engine.query("missing_table").count_async(),
            timeout=10,
        )
    assert [e.code for e in caught.value.errors] == [1054, 1146]


def test_query_stats_count_builder_queries(engine):
    before = engine.query_stats()["default"]
    q = engine.query("users").where("age", ">", 1)
    q.get()
    q.first_async().result(10)
    q.count()
    q.paginate(1, 2)  # two statements
    q.paginate(9, 2)  # past the end: the count only
    with pytest.raises(QueryError):
        engine.query("users").where("nope", 1).get()
    with pytest.raises(QueryBuildError):
        engine.query("users").where("no pe", 1).get()  # refused: never sent, never counted
    after = engine.query_stats()["default"]
    assert after.queries - before.queries == 7
    assert after.errors - before.errors == 1


def test_the_slow_query_log_names_builder_queries(engine, caplog):
    execute(
        engine,
        "CREATE VIEW tenth AS SELECT id, SLEEP(0.2) AS slept FROM users WHERE id = 1",
    )
    with engine.query_runner.log_slow_queries(threshold_s=0.1):
        engine.query("tenth").where("slept", 0).get()
        engine.query("users").get()
    slow = [r.getMessage() for r in caplog.records if r.name == "beeorm_celery.queries"]
    assert len(slow) == 1
    assert "SELECT * FROM `tenth` WHERE `slept` = 0" in slow[0]


def test_a_mysql_error_arrives_as_query_error_with_its_code(engine):
    with pytest.raises(QueryError) as caught:
        engine.query("users").where("nope", 1).get_async().result(10)
    assert caught.value.code == 1054
    assert "nope" in str(caught.value)
    with pytest.raises(QueryError) as caught:
        engine.query("users").where("id", 1).first(timeout=5)  # ok
        engine.query("users").join("nope", "users.id", "nope.id").first()
    assert caught.value.code == 1146


def test_query_runner_select_binds_question_marks(engine):
    runner = engine.query_runner
    rows = runner.select(
        "SELECT `id`, `name` FROM `users` WHERE `name` IN (?, ?) AND `status` = ? ORDER BY `id`",
        "o'neil",
        "cy",
        "banned",
    ).result(10)
    assert rows == [(3, "cy"), (6, "o'neil")]
    assert rows.columns == ["id", "name"]
    assert runner.select("SELECT '?' AS `q` FROM `users` WHERE `id` = ?", 1).result(10) == [("?",)]
    assert runner.select("SELECT COUNT(*) FROM `users`").result(10) == [(6,)]  # as before
    before = engine.query_stats()["default"].queries
    with pytest.raises(QueryBuildError, match="2 parameters"):
        runner.select("SELECT 1 FROM `users` WHERE `id` = ?", 1, 2)
    assert engine.query_stats()["default"].queries == before  # nothing was sent
