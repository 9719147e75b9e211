"""The log's Redis never evicts, and a log Redis without persistence is said out loud.

Each test runs its own redis-server (never the shared one: its policy is not ours to change).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from beeorm_celery import ConfigError, Registry, consume_async_flush_events
from beeorm_celery.cli import cli
from bench.chaos_redis import PrivateRedis
from tests.support.models import Counter


@pytest.fixture
def servers() -> Iterator[list[PrivateRedis]]:
    started: list[PrivateRedis] = []
    yield started
    for server in started:
        server.close()


def _registry(mysql_url: str, redis_url: str, key_prefix: str) -> Registry:
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(Counter)
    return registry


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_an_evicting_policy_is_refused_at_validate(
    servers, mysql_url, key_prefix, policy: str
) -> None:
    server = PrivateRedis(policy=policy)
    servers.append(server)
    server.start()
    with pytest.raises(ConfigError, match=f"maxmemory-policy is '{policy}'") as info:
        _registry(mysql_url, server.url(), key_prefix).validate()
    assert "maxmemory-policy noeviction" in str(info.value)
    assert "docs/redis.md" in str(info.value)


def test_an_evicting_policy_found_at_the_first_flush_async_queues_nothing(
    servers, make_engine, mysql_url, key_prefix
) -> None:
    make_engine(Counter)  # the table
    server = PrivateRedis(policy="allkeys-lru")
    servers.append(server)
    engine = _registry(mysql_url, server.url(), key_prefix).validate()  # Redis not started yet
    try:
        server.start()
        ctx = engine.new_context()
        ctx.new_entity(Counter, name="lost?", value=1)
        with pytest.raises(ConfigError, match="allkeys-lru"):
            ctx.flush_async()
        assert server.client().xlen(engine.keys.log("counters")) == 0
        # Fixed on the server: the next flush asks again and goes through.
        server.client().config_set("maxmemory-policy", "noeviction")
        ctx.flush_async()
        assert server.client().xlen(engine.keys.log("counters")) == 1
    finally:
        engine.close()


def test_no_persistence_warns_at_worker_start_and_in_stats(
    servers, make_engine, mysql_url, key_prefix, caplog
) -> None:
    make_engine(Counter)
    bare = PrivateRedis()  # save "" and no AOF
    durable = PrivateRedis(aof=True)
    servers += [bare, durable]
    for server in servers:
        server.start()
    bare_engine = _registry(mysql_url, bare.url(), key_prefix).validate()
    durable_engine = _registry(mysql_url, durable.url(), key_prefix).validate()
    try:
        with caplog.at_level(logging.WARNING, logger="beeorm_celery"):
            consume_async_flush_events(bare_engine)
        warned = [r for r in caplog.records if "without persistence" in r.getMessage()]
        assert warned and warned[0].levelno == logging.WARNING
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="beeorm_celery"):
            consume_async_flush_events(durable_engine)
        assert not [r for r in caplog.records if "persistence" in r.getMessage()]

        bare_stats = CliRunner().invoke(cli, ["stats"], obj=bare_engine, env={"COLUMNS": "200"})
        assert bare_stats.exit_code == 0, bare_stats.output
        assert "maxmemory-policy noeviction, persistence none" in bare_stats.output
        durable_stats = CliRunner().invoke(
            cli, ["stats"], obj=durable_engine, env={"COLUMNS": "200"}
        )
        assert "persistence AOF" in durable_stats.output
    finally:
        bare_engine.close()
        durable_engine.close()


def test_a_celery_worker_warns_at_start_when_the_log_redis_keeps_nothing(
    servers, mysql_url, broker_url, key_prefix, tmp_path
) -> None:
    from tests.support.services import wait_until
    from tests.support.workers import CeleryHarness

    bare = PrivateRedis()
    servers.append(bare)
    bare.start()
    harness = CeleryHarness(mysql_url, bare.url(), broker_url, key_prefix, tmp_path, {})
    try:
        worker = harness.start_worker(concurrency=1)
        wait_until(lambda: "without persistence" in worker.log(), timeout_s=10)
    finally:
        harness.close()
