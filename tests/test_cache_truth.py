"""The cache tells the truth (issue 8, laws 10 and 11): convergence, uniqueness decided at
flush_async(), cache control. Producers are real processes released together at a barrier;
faults are real (keys deleted, rows deleted in a second connection, a Redis out of memory)."""

from __future__ import annotations

import socket
import subprocess
from decimal import Decimal

import pytest
import redis

from beeorm_celery import (
    BeeormError,
    CacheFullError,
    DuplicateKeyError,
    Registry,
    ValidationError,
    consume_async_flush_events,
)
from beeorm_celery.cache_patch import PENDING_TABLE_FIELD
from tests.support import services
from tests.support.models import ALL, Category, Counter, Product
from tests.support.producers import claim_name, edit_rounds, run_together
from tests.support.sql import execute, query, scalar


def _drain(engine):
    consume_async_flush_events(engine)


def _refused_as_taken(engine, name, flush="flush_async"):
    """A new counter named ``name`` is refused: the name is held (DuplicateKeyError)."""
    ctx = engine.new_context()
    ctx.new_entity(Counter, name=name)
    with pytest.raises(DuplicateKeyError):
        getattr(ctx, flush)()


def _cached_row(engine, entity, entity_id):
    return engine.redis("default").get(engine.keys.entity(engine.schema(entity), entity_id))


# --- law 10: convergence


def test_processes_editing_different_fields_of_the_same_rows_converge(
    make_engine, mysql_url, redis_url, key_prefix
):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    rows = [ctx.new_entity(Product, name=f"p{n}", stock=0) for n in range(4)]
    ctx.flush()
    ids = [p.id for p in rows]
    urls = (mysql_url, redis_url, key_prefix)
    results = run_together(
        urls,
        [(edit_rounds, (ids, "stock", "s", 3)), (edit_rounds, (ids, "name", "n", 3))],
    )
    assert results == ["ok", "ok"]
    before_apply = {p.id: (p.name, p.stock) for p in engine.new_context().get_by_ids(Product, ids)}
    assert set(before_apply.values()) == {("n2", 21)}  # both last edits, read before the SQL ran
    _drain(engine)
    assert engine.verify_cache(Product) == []
    assert {r[0]: (r[1], r[2]) for r in query(engine, "SELECT id, name, stock FROM product")} == (
        before_apply
    )


def test_a_patch_keeps_the_other_columns_byte_for_byte(make_engine):
    """The patch runs in Lua without decoding the row: big integers, floats and strings full of
    JSON punctuation come back exactly."""
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    tricky = 'say "hi", [1,2] {"a": "\\\\"} \\u00e9 \U0001f600 ,]'
    product = ctx.new_entity(
        Product,
        name="tricky",
        stock=2**62 + 1,
        weight=0.1 + 0.2,
        description=tricky,
        price=Decimal("12345678.91"),
    )
    ctx.flush_async()
    raw_before = _cached_row(engine, Product, product.id)
    ctx = engine.new_context()
    ctx.edit(product).active = False
    ctx.flush_async()
    raw_after = _cached_row(engine, Product, product.id)
    assert raw_after == raw_before.replace(b",true,", b",false,", 1)
    read = engine.new_context().get_by_id(Product, product.id)
    assert (read.stock, read.weight, read.description, read.active) == (
        2**62 + 1,
        0.1 + 0.2,
        tricky,
        False,
    )
    _drain(engine)
    assert engine.verify_cache(Product) == []


def test_an_entry_deleted_while_its_batch_waits_is_not_refilled_with_the_old_row(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    product = ctx.new_entity(Product, name="v0", stock=1)
    ctx.flush()
    ctx = engine.new_context()
    ctx.edit(product).stock = 2
    ctx.flush_async()  # no worker yet: MySQL still says 1
    engine.redis("default").delete(engine.keys.entity(engine.schema(Product), product.id))
    other = make_engine(*ALL, update_schema=False)  # another process's reader
    assert other.new_context().get_by_id(Product, product.id).stock == 1  # MySQL's, not cached
    assert _cached_row(engine, Product, product.id) is None
    ctx = engine.new_context()
    ctx.edit(product).name = "v1"  # nothing to patch, a batch pending: not cached until applied
    ctx.flush_async()
    assert _cached_row(engine, Product, product.id) in (None, b"?")  # no row from a copy
    _drain(engine)
    assert engine.verify_cache(Product) == []
    seen = other.new_context().get_by_id(Product, product.id)
    assert (seen.name, seen.stock) == ("v1", 2)


def test_clear_cache_while_a_batch_waits_converges_too(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    product = ctx.new_entity(Product, name="a", stock=1)
    ctx.flush()
    ctx = engine.new_context()
    ctx.edit(product).stock = 5
    ctx.flush_async()
    engine.clear_cache(Product, product.id)
    assert engine.new_context().get_by_id(Product, product.id).stock == 1  # not cached
    _drain(engine)
    assert engine.new_context().get_by_id(Product, product.id).stock == 5
    assert engine.verify_cache(Product) == []


def test_an_update_of_a_row_deleted_behind_the_batch_is_dead_lettered_and_dropped(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    product = ctx.new_entity(Product, name="gone soon", stock=1)
    ctx.flush()
    ctx = engine.new_context()
    ctx.edit(product).stock = 2
    ctx.flush_async()
    execute(engine, "DELETE FROM product WHERE id = %s", (product.id,))  # a second connection
    _drain(engine)
    (dead,) = engine.dead_letters.list()
    assert dead.error == f"row {product.id} of product no longer exists"
    assert dead.error_code == 1032
    services.wait_until(
        lambda: engine.new_context().get_by_id(Product, product.id) is None, timeout_s=15
    )
    assert engine.verify_cache(Product) == []


def test_an_update_that_changes_nothing_in_mysql_is_not_mistaken_for_a_missing_row(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    product = ctx.new_entity(Product, name="same", stock=1)
    ctx.flush()
    execute(engine, "UPDATE product SET stock = 7 WHERE id = %s", (product.id,))
    ctx = engine.new_context()
    ctx.edit(product).stock = 7  # MySQL already has 7: 0 rows changed, 1 matched
    ctx.flush_async()
    ctx = engine.new_context()
    ctx.edit(product).name = "again"
    ctx.flush()  # the same through flush()
    _drain(engine)
    assert engine.dead_letters.count() == 0


def test_edits_of_deleted_or_never_flushed_entities_are_refused(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    product = ctx.new_entity(Product, name="r")
    ctx.flush()
    copy = engine.new_context().get_by_id(Product, product.id)  # process A reads R
    ctx = engine.new_context()
    ctx.delete(product)
    ctx.flush_async()  # B deletes R
    stale = engine.new_context()
    stale.edit(copy).stock = 3
    with pytest.raises(ValidationError, match="no longer exists"):
        stale.flush_async()
    with pytest.raises(ValidationError, match="no longer exists"):
        stale.flush()
    assert engine.new_context().get_by_id(Product, product.id) is None
    # an entity created by another context and never flushed
    unflushed = engine.new_context().new_entity(Product, name="never")
    with pytest.raises(ValidationError, match="never flushed"):
        engine.new_context().edit(unflushed)
    # delete then edit in one context
    ctx = engine.new_context()
    other = ctx.new_entity(Product, name="o")
    ctx.flush()
    ctx = engine.new_context()
    ctx.delete(other)
    with pytest.raises(ValidationError, match="deleted in this context"):
        ctx.edit(other)
    _drain(engine)
    assert engine.dead_letters.count() == 0


def test_references_to_deleted_or_never_flushed_entities_are_refused(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    doomed = ctx.new_entity(Category, name="doomed")
    ctx.flush()
    ctx = engine.new_context()
    ctx.delete(doomed)
    ctx.flush_async()
    ctx = engine.new_context()
    ctx.new_entity(Product, name="orphan", category=doomed.id)
    with pytest.raises(ValidationError, match="deleted row"):
        ctx.flush_async()
    unflushed = engine.new_context().new_entity(Category, name="elsewhere")
    ctx = engine.new_context()
    ctx.new_entity(Product, name="orphan 2", category=unflushed)
    with pytest.raises(ValidationError, match="never flushed"):
        ctx.flush_async()
    ctx = engine.new_context()
    same = ctx.new_entity(Category, name="same flush")
    ctx.new_entity(Product, name="fine", category=same)  # inserted by this very flush
    ctx.flush_async()
    _drain(engine)
    assert engine.dead_letters.count() == 0


# --- law 11: uniqueness decided at flush_async()


def test_of_processes_racing_for_one_unique_value_exactly_one_wins(
    make_engine, mysql_url, redis_url, key_prefix
):
    engine = make_engine(*ALL)
    urls = (mysql_url, redis_url, key_prefix)
    results = run_together(urls, [(claim_name, ("Bikes",))] * 3)
    won = [r for r in results if r[0] == "won"]
    lost = [r for r in results if r[0] == "duplicate"]
    assert len(won) == 1 and len(lost) == 2, results
    winner = won[0][1]
    assert all(r[1:] == (winner, "Category", "name", ("Bikes",)) for r in lost)
    _drain(engine)
    assert engine.dead_letters.count() == 0
    assert query(engine, "SELECT id, name FROM category") == [(winner, "Bikes")]


def test_a_value_only_mysql_knows_is_refused_with_one_query_per_index(make_engine):
    engine = make_engine(*ALL)
    execute(engine, "INSERT INTO category (id, name) VALUES (900, 'Sql')")
    pool = engine.mysql["default"]
    real = pool.read_all
    queries: list[str] = []

    def counting(sql, *args, **kwargs):
        if "FROM `category`" in sql:  # (new ids have their own bookkeeping queries)
            queries.append(sql)
        return real(sql, *args, **kwargs)

    pool.read_all = counting  # type: ignore[method-assign]
    ctx = engine.new_context()
    for n in range(20):
        ctx.new_entity(Category, name=f"fresh {n}")
    ctx.new_entity(Category, name="SQL")  # the collation says it equals 'Sql'
    with pytest.raises(DuplicateKeyError) as info:
        ctx.flush_async()
    assert len(queries) == 1 and " IN (" in queries[0]
    error = info.value
    assert (error.entity, error.index, error.value, error.holder_id) == (
        "Category",
        "name",
        ("SQL",),
        900,
    )
    assert "900" in str(error) and "Category.name" in str(error)
    assert sum(engine.async_stats()[g]["pending"] for g in engine.async_groups) == 0
    assert engine.new_context().get_by_unique_index(Category, "name", "fresh 1") is None
    # the lookup filled the cache: the same flush again asks MySQL only whether the holder,
    # which is not cached, still holds the value (one query for the one value)
    queries.clear()
    with pytest.raises(DuplicateKeyError):
        ctx.flush_async()
    assert len(queries) == 1 and "IN ('SQL')" in queries[0]


def test_renames_and_deletes_release_their_values_at_once(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    first = ctx.new_entity(Counter, name="alpha")
    doomed = ctx.new_entity(Counter, name="beta")
    ctx.flush_async()
    ctx = engine.new_context()
    ctx.edit(first).name = "gamma"
    ctx.delete(doomed)
    ctx.flush_async()
    ctx = engine.new_context()
    ctx.new_entity(Counter, name="alpha")  # freed by the rename, still queued
    ctx.new_entity(Counter, name="beta")  # freed by the delete, still queued
    ctx.flush_async()
    _refused_as_taken(engine, "gamma")
    _drain(engine)
    assert engine.dead_letters.count() == 0
    assert sorted(r[0] for r in query(engine, "SELECT name FROM counter")) == [
        "alpha",
        "beta",
        "gamma",
    ]
    assert engine.verify_cache(Counter) == []


def test_a_stale_copy_cannot_release_a_unique_value_it_no_longer_holds(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    counter = ctx.new_entity(Counter, name="old")
    ctx.flush_async()
    stale = engine.new_context().get_by_id(Counter, counter.id)  # "old"
    ctx = engine.new_context()
    ctx.edit(counter).name = "new"
    ctx.flush_async()
    ctx = engine.new_context()
    ctx.edit(stale).name = "newer"  # would release "old" and keep "new" claimed
    with pytest.raises(ValidationError, match="changed since this copy was read"):
        ctx.flush_async()
    ctx = engine.new_context()
    ctx.delete(stale)
    with pytest.raises(ValidationError, match="changed since this copy was read"):
        ctx.flush_async()
    # with the row not cached the copy cannot be checked, and "new" stays claimed by the row
    # while its batches are pending (nobody can tell yet what the row will hold)
    engine.redis("default").delete(engine.keys.entity(engine.schema(Counter), counter.id))
    ctx = engine.new_context()
    ctx.edit(stale).name = "newest"
    ctx.flush_async()
    _refused_as_taken(engine, "new")
    # once applied, MySQL says "new" is free: the claim left behind is taken over
    _drain(engine)
    ctx = engine.new_context()
    other = ctx.new_entity(Counter, name="new")
    ctx.flush_async()
    _drain(engine)
    assert engine.dead_letters.count() == 0
    assert dict(query(engine, "SELECT id, name FROM counter")) == {
        counter.id: "newest",
        other.id: "new",
    }
    assert engine.verify_cache(Counter) == []


def test_flush_and_flush_async_keep_one_index(make_engine):
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    ctx.new_entity(Counter, name="queued")
    ctx.flush_async()  # not in MySQL yet
    _refused_as_taken(engine, "queued", flush="flush")
    ctx = engine.new_context()
    ctx.new_entity(Counter, name="direct")
    ctx.flush()
    _refused_as_taken(engine, "direct")
    _drain(engine)
    assert engine.dead_letters.count() == 0
    assert scalar(engine, "SELECT COUNT(*) FROM counter") == 2


# --- cache control


def test_the_missing_marker_expires_and_clear_cache_drops_it(make_engine):
    engine = make_engine(*ALL, missing_ttl_s=1)
    assert engine.new_context().get_by_id(Counter, 5000) is None
    key = engine.keys.entity(engine.schema(Counter), 5000)
    assert engine.redis("default").ttl(key) in (0, 1)  # "missing", for a second only
    execute(engine, "INSERT INTO counter (id, name, value) VALUES (5000, 'by SQL', 1)")
    engine.clear_cache(Counter, 5000)
    assert engine.new_context().get_by_id(Counter, 5000).name == "by SQL"
    assert engine.new_context().get_by_id(Counter, 5001) is None
    execute(engine, "INSERT INTO counter (id, name, value) VALUES (5001, 'later', 1)")
    services.wait_until(
        lambda: engine.new_context().get_by_id(Counter, 5001) is not None, timeout_s=5
    )
    with pytest.raises(BeeormError):
        Registry(missing_ttl_s=0)


def test_verify_cache_finds_sql_changes_and_clear_cache_fixes_them(make_engine):
    engine = make_engine(*ALL)
    reader = make_engine(*ALL, update_schema=False)
    ctx = engine.new_context()
    cat = ctx.new_entity(Category, name="Cars")
    product = ctx.new_entity(Product, name="x", stock=1, category=cat)
    ctx.flush()
    reader.new_context().get_by_id(Category, cat.id)  # in the reader's local cache too
    execute(engine, "UPDATE product SET stock = 9 WHERE id = %s", (product.id,))
    execute(engine, "UPDATE category SET name = 'Autos' WHERE id = %s", (cat.id,))
    (row,) = engine.verify_cache(Product)
    assert (row.id, row.kind, row.cached, row.mysql) == (
        product.id,
        "row",
        {"stock": 1},
        {"stock": 9},
    )
    kinds = sorted(m.kind for m in engine.verify_cache(Category))
    assert kinds == ["row", "unique:name"]
    engine.clear_cache(Category, cat.id)
    engine.clear_cache(Product, product.id)
    assert engine.verify_cache(Product) == [] and engine.verify_cache(Category) == []
    services.wait_until(
        lambda: reader.new_context().get_by_id(Category, cat.id).name == "Autos", timeout_s=5
    )
    assert engine.new_context().get_by_unique_index(Category, "name", "Autos").id == cat.id
    assert engine.new_context().get_by_unique_index(Category, "name", "Cars") is None


# --- flush() when the cache write fails after the COMMIT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flush_under_redis_memory_pressure_says_the_data_is_committed(
    mysql_url, key_prefix, tmp_path
):
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    client = redis.Redis(port=port)
    try:
        services.wait_until(lambda: services.redis_answers(f"redis://127.0.0.1:{port}/0"))
        registry = Registry(key_prefix=key_prefix)
        registry.register_mysql(mysql_url)
        registry.register_redis(f"redis://127.0.0.1:{port}/0")
        registry.register_entity(*ALL)
        engine = registry.validate()
        engine.update_schema()
        ctx = engine.new_context()
        product = ctx.new_entity(Product, name="before", stock=1)
        ctx.flush()
        engine.new_context().get_by_id(Product, product.id)
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", client.info("memory")["used_memory"] + 200_000)
        with pytest.raises(redis.ResponseError):
            for n in range(10_000):
                client.set(f"ballast:{n}", b"x" * 1000)
        ctx = engine.new_context()
        ctx.edit(product).stock = 2
        with pytest.raises(CacheFullError, match="IS committed") as info:
            ctx.flush()
        assert info.value.written is True and "keys were dropped" in str(info.value)
        assert scalar(engine, "SELECT stock FROM product WHERE id = %s", (product.id,)) == 2
        assert _cached_row(engine, Product, product.id) is None  # dropped, not stale
        assert engine.new_context().get_by_id(Product, product.id).stock == 2
        engine.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_real_worker_applies_while_producers_edit_and_the_cache_converges(
    celery_harness, mysql_url, redis_url, key_prefix, broker_url
):
    h = celery_harness()
    ctx = h.engine.new_context()
    rows = [ctx.new_entity(Product, name=f"w{n}", stock=0) for n in range(3)]
    ctx.flush()
    ids = [p.id for p in rows]
    h.start_worker(concurrency=2)
    urls = (mysql_url, redis_url, key_prefix, broker_url)
    results = run_together(
        urls, [(edit_rounds, (ids, "stock", "a", 4)), (edit_rounds, (ids, "name", "b", 4))]
    )
    assert results == ["ok", "ok"]
    services.wait_until(
        lambda: all(s["pending"] == 0 for s in h.engine.async_stats().values()),
        timeout_s=30,
        message="the worker never drained the group",
    )
    # the worker releases the rows (pending markers) right after its COMMIT; verify_cache
    # would skip rows still marked
    markers = h.engine.keys.pending(h.engine.schema(Product))
    services.wait_until(
        lambda: h.engine.redis("default").hkeys(markers) in ([], [PENDING_TABLE_FIELD.encode()]),
        timeout_s=10,
    )
    assert h.engine.verify_cache(Product) == []
    assert h.engine.dead_letters.count() == 0
