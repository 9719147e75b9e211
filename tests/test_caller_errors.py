"""Redis and MySQL failures reach callers as BeeormError subclasses saying what was written.

Unreachable servers are ports nobody listens on; "out of memory" is a private redis-server with
a small ``maxmemory`` (never the shared one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from beeorm_celery import (
    BeeormError,
    CacheFullError,
    CacheUnavailableError,
    DatabaseUnavailableError,
    Engine,
    MissingTableError,
    Registry,
    ValidationError,
)
from bench.chaos_redis import PrivateRedis
from bench.private_server import free_port
from tests.support.models import Category, Note, Product
from tests.support.private_servers import private_redis
from tests.support.reply_cut import ReplyCutProxy


def test_a_wrong_id_type_is_a_validation_error(make_engine) -> None:
    engine = make_engine(Product, Category, Note)
    ctx = engine.new_context()
    note = ctx.new_entity(Note, text="x")
    ctx.flush()
    with pytest.raises(ValidationError, match=r"Note\.id: .*whole number.*'abc'"):
        ctx.get_by_id(Note, "abc")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ctx.get_by_ids(Product, [1, 2.5])  # type: ignore[list-item]
    found = ctx.get_by_id(Note, str(note.id))  # type: ignore[arg-type]
    assert found is not None and found.text == "x"


def test_a_missing_table_names_update_schema(make_engine) -> None:
    engine = make_engine(Product, Category, Note, update_schema=False)
    ctx = engine.new_context()
    for read in (
        lambda: ctx.get_by_id(Note, 1),
        lambda: ctx.search(Note),
        lambda: ctx.count(Product),
        lambda: ctx.new_entity(Note, text="x"),  # seeds the id counter from MAX(id)
    ):
        with pytest.raises(MissingTableError, match=r"update_schema\(\)") as info:
            read()
        assert info.value.table is not None
    engine.update_schema()
    note = ctx.new_entity(Note, text="x")
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE `{engine.schema(Note).table}`")
    with pytest.raises(MissingTableError, match=r"update_schema\(\)"):
        ctx.flush()
    assert note.id > 0


def _engine(mysql_url: str, redis_url: str, key_prefix: str) -> Registry:
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(Product, Category, Note)
    return registry


def _on_private_redis(base: Engine, server: PrivateRedis) -> Engine:
    registry = Registry(key_prefix=base.keys.prefix)
    registry.register_mysql(base.mysql["default"].config.safe_url)
    registry.register_redis(server.url())
    registry.register_entity(Product, Category, Note)
    return registry.validate()


def test_redis_unreachable_is_a_cache_unavailable_error(mysql_url, key_prefix) -> None:
    working = _engine(mysql_url, "redis://127.0.0.1:6379/15", key_prefix).validate()
    working.update_schema()
    working.close()
    engine = _engine(mysql_url, f"redis://127.0.0.1:{free_port()}/0", key_prefix).validate()
    try:
        ctx = engine.new_context()
        with pytest.raises(CacheUnavailableError) as info:
            ctx.new_entity(Note, text="x")
        assert info.value.written is False
        with pytest.raises(CacheUnavailableError, match="nothing was written") as info:
            ctx.get_by_id(Product, 1)
        assert info.value.written is False
    finally:
        engine.close()


def test_mysql_unreachable_is_a_database_unavailable_error(redis_url, key_prefix) -> None:
    url = f"mysql://root@127.0.0.1:{free_port()}/nowhere"
    engine = _engine(url, redis_url, key_prefix).validate()
    try:
        ctx = engine.new_context()
        for read in (lambda: ctx.search(Note), lambda: ctx.get_by_id(Product, 7)):
            with pytest.raises(DatabaseUnavailableError, match="nothing was written") as info:
                read()
            assert info.value.written is False
            assert isinstance(info.value, BeeormError)
        with pytest.raises(DatabaseUnavailableError):
            ctx.new_entity(Note, text="x")  # the id counter is seeded from MySQL
    finally:
        engine.close()


@pytest.fixture
def small_redis() -> Iterator[PrivateRedis]:
    with private_redis(maxmemory="4mb", policy="noeviction") as server:
        yield server


def _fill(server: PrivateRedis) -> int:
    """Write junk until Redis refuses with OOM; returns how many junk keys fit."""
    client = server.client()
    chunk = b"x" * 64_000
    n = 0
    while n < 10_000:
        try:
            client.set(f"junk:{n}", chunk)
        except redis.exceptions.OutOfMemoryError:
            return n
        n += 1
    raise AssertionError("Redis never ran out of memory")


def test_redis_out_of_memory_leaves_nothing_half_written(make_engine, small_redis) -> None:
    base = make_engine(Product, Category, Note)  # creates the tables on the shared servers
    engine = _on_private_redis(base, small_redis)
    try:
        client = small_redis.client()
        ctx = engine.new_context()
        product = ctx.new_entity(Product, name="before")  # its id is reserved before the fill
        note = ctx.new_entity(Note, text="n")
        assert _fill(small_redis) > 0
        keys_before = set(client.keys("*"))
        with pytest.raises(CacheFullError) as info:
            ctx.flush_async()
        assert info.value.written is False
        assert "nothing was queued or cached" in str(info.value)
        assert set(client.keys("*")) == keys_before  # no log, no cache entry, no flag
        # Memory back: the same unit of work goes through whole.
        for key in client.keys("junk:*"):
            client.delete(key)
        ctx.flush_async()
        groups = {"catalog", "notes"}
        assert sum(client.xlen(engine.keys.log(g)) for g in groups) == 2
        assert ctx.get_by_id(Product, product.id) is not None
        assert note.id > 0
    finally:
        engine.close()


def test_a_restarted_redis_costs_no_error_and_a_down_one_says_nothing_was_queued(
    make_engine,
) -> None:
    base = make_engine(Product, Category, Note)
    with private_redis() as server:
        engine = _on_private_redis(base, server)
        ctx = engine.new_context()
        ctx.new_entity(Note, text="one")
        ctx.flush_async()
        server.restart_empty()  # pooled connections now dead, the script cache empty
        ctx.new_entity(Note, text="two")
        ctx.flush_async()  # no error: a fresh connection, the script loaded again
        assert server.client().xlen(engine.keys.log("notes")) == 1
        note = ctx.new_entity(Note, text="three")
        server.crash()
        with pytest.raises(CacheUnavailableError, match="nothing was queued") as info:
            ctx.flush_async()
        assert info.value.written is False
        server.start()  # empty again (no persistence)
        ctx.flush_async()
        assert server.client().xlen(engine.keys.log("notes")) == 1
        assert note.id > 0
        engine.close()


def test_a_flush_whose_reply_is_lost_is_not_queued_twice(make_engine, redis_url) -> None:
    # The engine's clients are made without redis-py's retry (from_url's default): a retry of
    # the flush script after a lost reply would queue the same batches twice.
    base = make_engine(Product, Category, Note)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = ReplyCutProxy(port)
    registry = Registry(key_prefix=base.keys.prefix)
    registry.register_mysql(base.mysql["default"].config.safe_url)
    registry.register_redis(f"redis://127.0.0.1:{proxy.port}/{redis_url.rsplit('/', 1)[1]}")
    registry.register_entity(Product, Category, Note)
    engine = registry.validate()
    try:
        ctx = engine.new_context()
        ctx.new_entity(Note, text="once")
        ctx.flush_async()  # loads the script; from now on it goes out as EVALSHA
        ctx.new_entity(Note, text="twice?")
        proxy.cut_after(b"EVALSHA")
        with pytest.raises(CacheUnavailableError, match="may or may not") as info:
            ctx.flush_async()
        assert info.value.written is None
        assert proxy.cuts == 1
        assert base.redis("default").xlen(engine.keys.log("notes")) == 2  # not 3
    finally:
        engine.close()
        proxy.close()


def _operator_calls(engine: Engine) -> dict[str, Callable[[], object]]:
    """The public calls of the engine besides the context's: cache control, dead letters,
    stats. The dead letter id is well formed, so each call reaches its server."""
    dead = "notes/1-0"
    return {
        "clear_cache": lambda: engine.clear_cache(Product, 1),
        "verify_cache": lambda: engine.verify_cache(Product, [1]),
        "async_stats": engine.async_stats,
        "dead_letters.count": engine.dead_letters.count,
        "dead_letters.list": engine.dead_letters.list,
        "dead_letters.get": lambda: engine.dead_letters.get(dead),
        "dead_letters.retry": lambda: engine.dead_letters.retry(dead),
        "dead_letters.retry_all": engine.dead_letters.retry_all,
        "dead_letters.remove": lambda: engine.dead_letters.remove(dead),
        "dead_letters.clear": engine.dead_letters.clear,
    }


def test_a_stopped_redis_is_a_cache_unavailable_error_for_every_call(make_engine) -> None:
    base = make_engine(Product, Category, Note)
    with private_redis() as server:
        engine = _on_private_redis(base, server)
        ctx = engine.new_context()
        product = ctx.new_entity(Product, name="kept")
        ctx.flush()
        server.crash()
        # ids reserved by code of its own (as the chaos producer does), not only new_entity
        with pytest.raises(CacheUnavailableError, match="reserving an id") as info:
            engine.ids.next_id(engine.schema(Note))
        assert info.value.written is False
        # a synchronous flush checks unique values in Redis before MySQL: nothing written
        ctx.edit(product).name = "changed"
        with pytest.raises(CacheUnavailableError, match="nothing was written") as info:
            ctx.flush()
        assert info.value.written is False
        assert base.new_context().get_by_id(Product, product.id).name == "kept"  # type: ignore[union-attr]
        for name, call in _operator_calls(engine).items():
            with pytest.raises(CacheUnavailableError, match="Redis is unavailable") as info:
                call()
            assert info.value.__cause__ is not None, name
        engine.close()


def test_a_stopped_mysql_is_a_database_unavailable_error_for_every_call(
    make_engine, redis_url, key_prefix
) -> None:
    base = make_engine(Product, Category, Note)
    ctx = base.new_context()
    product = ctx.new_entity(Product, name="kept")
    ctx.flush()
    url = f"mysql://root@127.0.0.1:{free_port()}/nowhere"
    engine = _engine(url, redis_url, key_prefix).validate()
    try:
        ctx = engine.new_context()
        loaded = ctx.get_by_id(Product, product.id)  # from the Redis cache
        assert loaded is not None
        ctx.edit(loaded).name = "changed"
        with pytest.raises(DatabaseUnavailableError):
            ctx.flush()
        for name in ("clear_cache", "verify_cache", "async_stats"):
            with pytest.raises(DatabaseUnavailableError, match="MySQL pool"):
                _operator_calls(engine)[name]()
    finally:
        engine.close()
