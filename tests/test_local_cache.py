"""Local caches: entities kept in the process, dropped when another process changes them."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

from beeorm_celery import Engine, Entity, Field, Registry
from beeorm_celery.local_cache import LocalCache, is_absent
from tests.support import services
from tests.support.services import wait_until

SPAWN = multiprocessing.get_context("spawn")  # a clean child: no threads or sockets inherited


class Category(Entity, redis_cache=True, local_cache=True, async_group="catalog"):
    name: str = Field(max_length=100, unique="name")


class Tag(Entity, local_cache=3):  # local cache without Redis cache, bounded to 3 entities
    name: str = Field(max_length=100)


def behind_the_orms_back(engine: Engine, redis_url: str, prefix: str, sql: str) -> None:
    """Change MySQL and drop every Redis key: only a local cache still knows the old rows."""
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(sql)
    services.delete_keys(redis_url, prefix)


# --- the LRU itself


def test_the_lru_keeps_the_most_recently_used_entries() -> None:
    cache = LocalCache(3)
    for i in (1, 2, 3):
        cache.set(i, f"e{i}")
    assert cache.get(1) == "e1"  # 1 is now the most recent
    cache.set(4, "e4")  # evicts 2, the least recently used
    assert is_absent(cache.get(2))
    assert [cache.get(i) for i in (1, 3, 4)] == ["e1", "e3", "e4"]
    cache.set(5, None)  # "known missing" is an entry too; evicts 1, used before 3 and 4
    assert cache.get(5) is None and is_absent(cache.get(1)) and len(cache) == 3
    cache.drop([3, 5, 99])
    assert is_absent(cache.get(3)) and is_absent(cache.get(5)) and len(cache) == 1
    cache.clear()
    assert len(cache) == 0


# --- in one process


def test_a_locally_cached_entity_is_served_without_redis_or_mysql(
    make_engine: Callable[..., Engine], redis_url: str, key_prefix: str
) -> None:
    engine = make_engine(Category, Tag)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    tag = ctx.new_entity(Tag, name="red")
    ctx.flush()
    reader = make_engine(Category, Tag, update_schema=False)
    assert reader.new_context().get_by_id(Category, cat.id) is not None
    assert reader.new_context().get_by_id(Tag, tag.id) is not None
    behind_the_orms_back(reader, redis_url, key_prefix, "DELETE FROM category")
    behind_the_orms_back(reader, redis_url, key_prefix, "DELETE FROM tag")
    local = reader.new_context()
    again = local.get_by_id(Category, cat.id)
    assert again is not None and again.name == "Cars"
    assert local.get_by_id(Tag, tag.id) is not None
    other = make_engine(Category, Tag, update_schema=False)  # no local copy: sees the truth
    assert other.new_context().get_by_id(Category, cat.id) is None


def test_a_local_cache_holds_at_most_its_size(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(Tag)
    ctx = engine.new_context()
    tags = [ctx.new_entity(Tag, name=f"t{i}") for i in range(5)]
    ctx.flush()
    reader = make_engine(Tag, update_schema=False)
    reader.new_context().get_by_ids(Tag, [t.id for t in tags])
    assert len(reader.local_caches["tag"]) == 3


def test_a_flush_updates_the_local_cache_of_its_own_process(
    make_engine: Callable[..., Engine], redis_url: str, key_prefix: str
) -> None:
    engine = make_engine(Category)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    ctx.flush()
    engine.new_context().get_by_id(Category, cat.id)
    for how, name in (("flush", "Autos"), ("flush_async", "Wagons")):
        ctx = engine.new_context()
        ctx.edit(cat).name = name
        getattr(ctx, how)()
        behind_the_orms_back(engine, redis_url, key_prefix, "UPDATE category SET name = 'MySQL'")
        seen = engine.new_context().get_by_id(Category, cat.id)
        assert seen is not None and seen.name == name, how  # from the local cache
    ctx = engine.new_context()
    ctx.delete(cat)
    ctx.flush()
    assert engine.new_context().get_by_id(Category, cat.id) is None


def test_another_engine_in_the_same_process_drops_what_this_one_changed(
    make_engine: Callable[..., Engine],
) -> None:
    writer = make_engine(Category)
    reader = make_engine(Category, update_schema=False)
    ctx = writer.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    ctx.flush()
    assert reader.new_context().get_by_id(Category, cat.id).name == "Cars"  # type: ignore[union-attr]
    ctx = writer.new_context()
    ctx.edit(cat).name = "Autos"
    ctx.flush()
    wait_until(
        lambda: reader.new_context().get_by_id(Category, cat.id).name == "Autos",  # type: ignore[union-attr]
        timeout_s=10,
        message="the reader's local cache kept the old name",
    )


def test_a_read_in_flight_during_an_invalidation_does_not_keep_the_old_entity(
    make_engine: Callable[..., Engine], mysql_url: str, redis_url: str, key_prefix: str
) -> None:
    """The reader's SELECT is held by a table lock while another engine changes the entity: the
    invalidation finds nothing to drop, and the old row the SELECT then returns must not settle
    in the reader's local cache for good."""
    writer = make_engine(Category)
    ctx = writer.new_context()
    cat = ctx.new_entity(Category, name="v0")
    ctx.flush()
    services.delete_keys(redis_url, key_prefix)  # the reader will have to ask MySQL
    # The edit below claims the name "v1": let the cache know it is free now, or the claim
    # would ask MySQL, which the table lock holds up.
    assert writer.new_context().get_by_unique_index(Category, "name", "v1") is None
    reader = make_engine(Category, update_schema=False)
    local = reader.local_caches["category"]
    reader.new_context().get_by_id(Category, 999_999)  # listener up, pool connected
    database = mysql_url.rsplit("/", 1)[1]
    locker = services.server_connection(mysql_url)
    in_flight: list[Any] = []
    try:
        with locker.cursor() as cursor:
            cursor.execute(f"LOCK TABLES `{database}`.`category` WRITE")
        thread = threading.Thread(
            target=lambda: in_flight.append(reader.new_context().get_by_id(Category, cat.id))
        )
        thread.start()
        wait_until(
            lambda: waiting_on_a_lock(locker, database),
            timeout_s=20,
            message="the reader's SELECT never reached MySQL",
        )
        generation = local.generation
        ctx = writer.new_context()
        ctx.edit(cat).name = "v1"
        ctx.flush_async()  # Redis only: MySQL keeps "v0" until the batch is applied
        wait_until(
            lambda: local.generation > generation,
            timeout_s=20,
            message="the invalidation never reached the reader",
        )
    finally:
        with locker.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        locker.close()
    thread.join(timeout=20)
    assert in_flight and in_flight[0].name == "v0"  # that read began before the change
    now = reader.new_context().get_by_id(Category, cat.id)
    assert now is not None and now.name == "v1"


def waiting_on_a_lock(conn: Any, database: str) -> bool:
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = %s AND STATE LIKE 'Waiting for table%%'",
            (database,),
        )
        row = cursor.fetchone()
        return bool(row and row[0])


# --- across processes


def watch_in_child(
    mysql_url: str, redis_url: str, prefix: str, entity_id: int, commands: Any, replies: Any
) -> None:
    """Read the entity into this process's local cache, then wait for each value announced."""
    registry = Registry(key_prefix=prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(Category)
    engine = registry.validate()
    local = engine.local_caches["category"]

    def name_now() -> str | None:
        entity = engine.new_context().get_by_id(Category, entity_id)
        return None if entity is None else entity.name

    try:
        replies.put(("ready", name_now(), not is_absent(local.get(entity_id))))
        for expected in iter(commands.get, "stop"):
            wait_until(lambda e=expected: name_now() == e, timeout_s=30, interval_s=0.05)
            replies.put(("saw", name_now(), not is_absent(local.get(entity_id))))
    except BaseException as e:  # the parent reports it
        replies.put(("error", repr(e), False))
    finally:
        engine.close()


def test_another_process_sees_edits_and_deletes_of_an_entity_it_cached_locally(
    make_engine: Callable[..., Engine], mysql_url: str, redis_url: str, key_prefix: str
) -> None:
    engine = make_engine(Category)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="v0")
    ctx.flush()
    commands, replies = SPAWN.Queue(), SPAWN.Queue()
    child = SPAWN.Process(
        target=watch_in_child,
        args=(mysql_url, redis_url, key_prefix, cat.id, commands, replies),
    )
    child.start()
    try:
        assert replies.get(timeout=60) == ("ready", "v0", True)  # in the child's local cache
        for how, name in (("flush", "v1"), ("flush_async", "v2"), ("flush", "v3")):
            ctx = engine.new_context()
            ctx.edit(cat).name = name
            getattr(ctx, how)()
            commands.put(name)
            # it saw the new value, and the new value is what its local cache holds now
            assert replies.get(timeout=60) == ("saw", name, True), how
        ctx = engine.new_context()
        ctx.delete(cat)
        ctx.flush_async()
        commands.put(None)
        assert replies.get(timeout=60) == ("saw", None, True)  # "missing" is cached too
        commands.put("stop")
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
