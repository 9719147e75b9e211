"""The applier sends a step's statements several to a packet (``asyncflush/packed.py``).

Against the real MariaDB: a batch of edits lands in a few round trips instead of one per row;
a row gone or a failing statement in the middle of a packet still dead-letters exactly its
batch (named as when statements went one at a time) and applies the others in order; and only
the applier's connections take packets, never one the pool hands to anyone else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from beeorm_celery import AsyncFlushSettings, Engine, consume_async_flush_events
from beeorm_celery.asyncflush.packed import PacketRun, packets
from beeorm_celery.asyncflush.row_guard import RowGoneError
from beeorm_celery.mysql import accepts_packets
from beeorm_celery.operations import Operation, OpKind
from tests.support.models import Category, Product
from tests.support.sql import execute, query

pytestmark = pytest.mark.services

_ROWS = 120


@pytest.fixture
def sent() -> Iterator[list[str]]:
    """Every text this process sends to MySQL as a query while the test runs (the driver's
    own ``query``, still sending it)."""
    texts: list[str] = []
    original = pymysql.connections.Connection.query

    def query_and_note(self: Any, sql: Any, unbuffered: bool = False) -> Any:
        texts.append(sql if isinstance(sql, str) else sql.decode())
        return original(self, sql, unbuffered)

    pymysql.connections.Connection.query = query_and_note  # type: ignore[method-assign]
    try:
        yield texts
    finally:
        pymysql.connections.Connection.query = original  # type: ignore[method-assign]


def _products(engine: Engine, n: int) -> list[Product]:
    ctx = engine.new_context()
    made = [ctx.new_entity(Product, name=f"p{i}", stock=i) for i in range(n)]
    ctx.flush()
    return made


def _edit_all(engine: Engine, products: list[Product], stock: Callable[[int], int]) -> None:
    ctx = engine.new_context()
    for i, product in enumerate(products):
        ctx.edit(product).stock = stock(i)
    ctx.flush_async()


def _stocks(engine: Engine) -> dict[int, int]:
    return {int(i): int(s) for i, s in query(engine, "SELECT id, stock FROM product")}


def _updates_sent(texts: list[str]) -> tuple[int, int]:
    """(queries carrying UPDATEs of product, UPDATE statements in them)."""
    carrying = [t for t in texts if "UPDATE `product`" in t]
    return len(carrying), sum(t.count("UPDATE `product`") for t in carrying)


def test_a_batch_of_edits_lands_in_one_packet(make_engine: Any, sent: list[str]) -> None:
    engine = make_engine(Product, Category)
    products = _products(engine, _ROWS)
    _edit_all(engine, products, lambda i: 1000 + i)
    sent.clear()
    consume_async_flush_events(engine)
    assert _stocks(engine) == {p.id: 1000 + i for i, p in enumerate(products)}
    assert _updates_sent(sent) == (1, _ROWS)


def test_pack_statements_false_sends_them_one_at_a_time(make_engine: Any, sent: list[str]) -> None:
    engine = make_engine(Product, Category, async_flush=AsyncFlushSettings(pack_statements=False))
    products = _products(engine, _ROWS)
    _edit_all(engine, products, lambda i: 2000 + i)
    sent.clear()
    consume_async_flush_events(engine)
    assert _stocks(engine) == {p.id: 2000 + i for i, p in enumerate(products)}
    assert _updates_sent(sent) == (_ROWS, _ROWS)


def test_a_row_gone_in_the_middle_of_a_packet_dead_letters_only_its_batch(
    make_engine: Any,
) -> None:
    engine = make_engine(Product, Category)
    products = _products(engine, 30)
    first, middle, last = products[:10], products[10:20], products[20:]
    _edit_all(engine, first, lambda i: 100 + i)
    _edit_all(engine, middle, lambda i: 200 + i)
    _edit_all(engine, last, lambda i: 300 + i)
    gone = middle[4]
    execute(engine, "DELETE FROM product WHERE id = %s", (gone.id,))  # behind the batch's back
    consume_async_flush_events(engine)

    (dead,) = engine.dead_letters.list()
    assert dead.error == f"row {gone.id} of product no longer exists"
    assert (
        dead.failing_statement is not None and f"WHERE `id` = {gone.id}" in dead.failing_statement
    )
    stocks = _stocks(engine)
    assert [stocks[p.id] for p in first] == [100 + i for i in range(10)]
    assert [stocks[p.id] for p in last] == [300 + i for i in range(10)]
    # the dead batch left nothing behind: its other rows keep the stock they were made with
    assert [stocks[p.id] for p in middle if p.id != gone.id] == [
        10 + j for j, p in enumerate(middle) if p.id != gone.id
    ]


def test_a_statement_failing_in_the_middle_of_a_packet_is_the_one_named(
    make_engine: Any,
) -> None:
    engine = make_engine(Product, Category)
    *products, spare = _products(engine, 21)
    _edit_all(engine, products[:10], lambda i: 500 + i)
    ctx = engine.new_context()
    taken = ctx.new_entity(Product, name="taken", stock=1)
    ctx.flush_async()
    _edit_all(engine, products[10:], lambda i: 600 + i)
    # behind the ORM's back, a row no batch touches takes the new entity's primary key
    execute(engine, "UPDATE product SET id = %s WHERE id = %s", (taken.id, spare.id))
    consume_async_flush_events(engine)

    (dead,) = engine.dead_letters.list()
    assert dead.error_code == 1062
    assert dead.failing_statement is not None
    assert dead.failing_statement.startswith("INSERT INTO `product`")
    stocks = _stocks(engine)
    assert [stocks[p.id] for p in products] == [500 + i for i in range(10)] + [
        600 + i for i in range(10)
    ]


def test_the_run_names_the_statement_to_blame_and_leaves_the_connection_usable(
    make_engine: Any,
) -> None:
    engine = make_engine(Product, Category)
    ids = [p.id for p in _products(engine, 3)]
    schema = engine.schema(Product)
    texts = [
        (f"UPDATE `product` SET `stock` = 7 WHERE `id` = {ids[0]}", ids[0]),
        (f"UPDATE `product` SET `stock` = 8 WHERE `id` = {ids[1]} + 1000000", ids[1]),  # no row
        # and the server refuses the statement after it (a duplicate primary key)
        (f"UPDATE `product` SET `id` = {ids[0]}, `stock` = 9 WHERE `id` = {ids[2]}", ids[2]),
    ]
    planned = [
        (sql, [Operation(OpKind.UPDATE, schema, entity_id, {"stock": 0}, {})])
        for sql, entity_id in texts
    ]
    pool = engine.mysql["default"]
    conn = pool.acquire(multi_statements=True)
    try:
        cursor = conn.cursor()
        conn.begin()
        run = PacketRun()
        (packet,) = packets(planned, 1 << 20)
        with pytest.raises(RowGoneError):
            run.run(cursor, packet)
        assert run.statement == planned[1][0]
        assert [op.id for op in run.carried] == [ids[1]]
        # sent, and the first UPDATE undone: the error of the third statement was read (and
        # dropped) by the run, not by the driver from inside rollback(), which would leave the
        # transaction open for the next BEGIN to commit
        conn.rollback()
        cursor.execute("SELECT COUNT(*) FROM product WHERE stock IN (7, 8, 9)")
        assert cursor.fetchone() == (0,)
    finally:
        pool.release(conn)


def test_only_the_appliers_connections_take_packets(make_engine: Any) -> None:
    engine = make_engine(Product, Category)
    pool = engine.mysql["default"]
    applier = pool.acquire(multi_statements=True)
    assert accepts_packets(applier)
    with applier.cursor() as cursor:
        cursor.execute("SELECT 1; SELECT 2")
        assert cursor.fetchall() == ((1,),)
        assert cursor.nextset() and cursor.fetchall() == ((2,),)
    pool.release(applier)
    # the pool keeps it apart: a connection for anyone else refuses a second statement
    with pool.connection() as conn:
        assert conn is not applier and not accepts_packets(conn)
        with conn.cursor() as cursor, pytest.raises(pymysql.err.ProgrammingError):
            cursor.execute("SELECT 1; SELECT 2")
    assert pool.acquire(multi_statements=True) is applier
    pool.release(applier)
