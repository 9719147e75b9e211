"""A log Redis restarted empty while batches were pending: loud, counted, and no id reused.

The Redis is a private redis-server without persistence (restarting it empty is the fault);
MySQL is the shared server, in this test's own database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from beeorm_celery import (
    AsyncFlushSettings,
    Registry,
    TemporaryApplyError,
    consume_async_flush_events,
)
from beeorm_celery.cli import cli
from bench.chaos_redis import PrivateRedis
from tests.support.models import Counter
from tests.support.private_servers import private_redis
from tests.support.sql import query


@pytest.fixture
def bare_redis() -> Iterator[PrivateRedis]:
    with private_redis() as server:  # save "" and no AOF: a restart loses everything
        yield server


def test_a_log_lost_with_batches_pending_is_loud_counted_and_reuses_no_id(
    bare_redis, make_engine, mysql_url, key_prefix, caplog
) -> None:
    make_engine(Counter)  # the tables
    registry = Registry(
        key_prefix=key_prefix,
        async_flush=AsyncFlushSettings(
            lock_wait_timeout_s=1, retry_backoff_s=0.05, retry_backoff_max_s=0.1
        ),
    )
    registry.register_mysql(mysql_url)
    registry.register_redis(bare_redis.url())
    registry.register_entity(Counter)
    engine = registry.validate()
    try:
        ctx = engine.new_context()
        counter = ctx.new_entity(Counter, name="c", value=0)
        ctx.flush_async()
        consume_async_flush_events(engine)  # applied: the group has a position and an epoch
        applied_before = query(engine, "SELECT last_batch_id FROM _beeorm_async_applied")[0][0]

        handed_out: list[int] = []
        for value in range(1, 21):  # 20 batches: an edit and a new row each
            counter = ctx.edit(counter)
            counter.value = value
            handed_out.append(ctx.new_entity(Counter, name=f"n{value}", value=value).id)
            ctx.flush_async()

        # A worker sees them pending but cannot apply them (the row is locked in MySQL).
        with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
            conn.begin()
            cursor.execute("SELECT * FROM counter WHERE id = %s FOR UPDATE", (counter.id,))
            with pytest.raises(TemporaryApplyError):
                consume_async_flush_events(engine, retry_for_s=0.5)
            conn.rollback()

        bare_redis.restart_empty()  # the 20 acknowledged batches are gone

        after = engine.new_context()
        fresh = after.new_entity(Counter, name="after", value=1)
        assert fresh.id > max(handed_out), "an id handed out before the loss was reused"
        after.flush_async()
        with caplog.at_level(logging.ERROR, logger="beeorm_celery"):
            consume_async_flush_events(engine)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        lost = [m for m in errors if "counters" in m and "lost" in m]
        assert lost, errors
        assert applied_before in lost[0]  # the last batch it had applied
        assert "20" in lost[0]  # how many it had seen pending

        stats = engine.async_stats()["counters"]
        assert stats["log_losses"] == 1
        assert stats.pending == 0
        rows = dict(query(engine, "SELECT name, value FROM counter"))
        assert rows == {"c": 0, "after": 1}  # what was lost is lost; what came after applied

        # The count lives in MySQL: another restart of Redis does not reset it.
        bare_redis.restart_empty()
        assert engine.async_stats()["counters"]["log_losses"] == 1
        output = CliRunner().invoke(cli, ["stats"], obj=engine, env={"COLUMNS": "200"}).output
        assert "log losses" in output
    finally:
        engine.close()


def test_nothing_is_counted_when_nothing_was_lost(make_engine) -> None:
    engine = make_engine(Counter)
    ctx = engine.new_context()
    for n in range(3):
        ctx.new_entity(Counter, name=f"k{n}", value=n)
        ctx.flush_async()
    consume_async_flush_events(engine)
    assert engine.async_stats()["counters"]["log_losses"] == 0
