"""Entity ids: set by ``new_entity`` before any flush, from a Redis counter per table seeded
from MAX(id), and never handed out twice, also by processes seeding at the same moment."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest

from beeorm_celery import Engine, Entity, Field, Registry

SPAWN = multiprocessing.get_context("spawn")  # a clean child: no threads or sockets inherited


class Ticket(Entity, redis_cache=True, async_group="tickets"):
    title: str = Field(max_length=50, default="t")


class Receipt(Entity, async_group="tickets"):  # no redis_cache: the counter still lives in Redis
    title: str = Field(max_length=50, default="r")


def insert_rows(engine: Engine, table: str, ids: list[int]) -> None:
    """Rows written behind the ORM's back (an import, another application)."""
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        sql = f"INSERT INTO `{table}` (id, title) VALUES (%s, 'x')"
        cursor.executemany(sql, [(i,) for i in ids])


def forget_counter(engine: Engine, entity: type[Entity]) -> None:
    engine.redis("default").delete(engine.keys.id_counter(engine.schema(entity)))


def test_new_entity_has_its_id_before_any_flush(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(Ticket, Receipt)
    ctx = engine.new_context()
    tickets = [ctx.new_entity(Ticket) for _ in range(3)]
    receipt = ctx.new_entity(Receipt)
    assert [t.id for t in tickets] == [1, 2, 3]
    assert receipt.id == 1  # one counter per table
    assert engine.new_context().count(Ticket) == 0  # nothing in MySQL yet
    ctx.flush()
    assert sorted(t.id for t in engine.new_context().get_all(Ticket)) == [1, 2, 3]


def test_a_lost_counter_is_seeded_above_every_id_that_may_still_land(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Ticket, Receipt)
    insert_rows(engine, "ticket", [5, 1000])
    insert_rows(engine, "receipt", [70])
    ctx = engine.new_context()
    assert ctx.new_entity(Ticket).id == 1001  # a first counter starts right after MAX(id)
    assert ctx.new_entity(Receipt).id == 71
    ctx.flush()
    # Handed out, not flushed yet: another process may still flush it after the counter is lost.
    held = engine.new_context().new_entity(Ticket).id
    forget_counter(engine, Ticket)
    again = [engine.new_context().new_entity(Ticket).id for _ in range(2)]
    assert again[0] > held and again[1] == again[0] + 1
    # Rows written behind the ORM's back above the mark: MAX(id) still counts.
    insert_rows(engine, "ticket", [10_000_000])
    forget_counter(engine, Ticket)
    assert engine.new_context().new_entity(Ticket).id == 10_000_001


def test_the_ceiling_is_recorded_in_mysql_before_ids_under_it_are_handed_out(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Ticket, id_block_size=7)
    ctx = engine.new_context()
    ids = [ctx.new_entity(Ticket).id for _ in range(30)]
    mark = engine.mysql["default"].read_all(
        "SELECT reserved_upto FROM _beeorm_id_reserved WHERE table_name = 'ticket'"
    )
    assert mark and int(mark[0][0]) >= max(ids) + 7  # the whole block held in this process
    redis_ceiling = engine.redis("default").get(engine.keys.id_ceiling(engine.schema(Ticket)))
    assert redis_ceiling is not None and int(redis_ceiling) <= int(mark[0][0])


def test_ids_of_queued_inserts_are_not_handed_out_again_when_the_counter_is_lost(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(Ticket, Receipt)
    ctx = engine.new_context()
    queued = [ctx.new_entity(Ticket).id for _ in range(3)]
    ctx.flush_async()  # in the log, not in MySQL
    assert engine.new_context().count(Ticket) == 0
    forget_counter(engine, Ticket)
    assert engine.new_context().new_entity(Ticket).id > max(queued)
    # Even without the high-water mark (ids handed out before it existed) the log counts.
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute("DELETE FROM _beeorm_id_reserved")
    forget_counter(engine, Ticket)
    assert engine.new_context().new_entity(Ticket).id == max(queued) + 1


def test_a_block_of_ids_is_used_in_order_and_shared_with_no_one(
    make_engine: Callable[..., Engine],
) -> None:
    first = make_engine(Ticket, id_block_size=10)
    second = make_engine(Ticket, id_block_size=10, update_schema=False)
    a = first.new_context()
    b = second.new_context()
    got_a = [a.new_entity(Ticket).id for _ in range(3)]
    got_b = [b.new_entity(Ticket).id for _ in range(3)]
    got_a += [a.new_entity(Ticket).id for _ in range(10)]
    assert got_a[:3] == [1, 2, 3] and got_b == [11, 12, 13]
    assert got_a[3:] == [4, 5, 6, 7, 8, 9, 10, 21, 22, 23]


def allocate_in_child(
    mysql_url: str,
    redis_url: str,
    prefix: str,
    block_size: int,
    count: int,
    barrier: Barrier,
    results: Any,
) -> None:
    registry = Registry(key_prefix=prefix, id_block_size=block_size)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(Ticket)
    engine = registry.validate()
    try:
        ctx = engine.new_context()
        schema = engine.schema(Ticket)
        engine.redis("default").ping()  # connect before the race, so the race is the seeding
        barrier.wait(timeout=60)
        first = ctx.new_entity(Ticket).id
        results.put([first] + [engine.ids.next_id(schema) for _ in range(count - 1)])
    except BaseException as e:  # the parent reports it
        results.put(repr(e))
    finally:
        engine.close()


@pytest.mark.parametrize("block_size", [1, 7])
def test_processes_seeding_the_counter_at_the_same_moment_never_share_an_id(
    make_engine: Callable[..., Engine],
    mysql_url: str,
    redis_url: str,
    key_prefix: str,
    block_size: int,
) -> None:
    engine = make_engine(Ticket)
    insert_rows(engine, "ticket", [1, 2, 500])
    forget_counter(engine, Ticket)
    processes, count = 3, 300
    barrier = SPAWN.Barrier(processes)
    results = SPAWN.Queue()
    children = [
        SPAWN.Process(
            target=allocate_in_child,
            args=(mysql_url, redis_url, key_prefix, block_size, count, barrier, results),
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        got = [results.get(timeout=120) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
    for one in got:
        assert isinstance(one, list), one
        assert len(one) == count
    every = [i for one in got for i in one]
    assert len(set(every)) == len(every), "an id was handed out twice"
    assert min(every) == 501  # seeded from MAX(id), once
    if block_size == 1:
        assert sorted(every) == list(range(501, 501 + processes * count))  # no gaps either
    for one in got:
        assert one == sorted(one)  # each process sees its own ids grow
