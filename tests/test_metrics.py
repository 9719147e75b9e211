"""Prometheus metrics: the CLI's real /metrics endpoint against a real backlog, what a scrape
costs on the wire, and the collector in an application's own registry."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from beeorm_celery import (
    AsyncFlushSettings,
    Engine,
    Entity,
    Field,
    Registry,
    consume_async_flush_events,
)
from beeorm_celery.metrics import AsyncFlushCollector
from tests.support import models
from tests.support.console import CONSOLE_SCRIPT, ENGINE_SPEC, REPO, console_env
from tests.support.proxy import CountingProxy
from tests.support.services import wait_until

Samples = dict[tuple[str, str], float]


def parse(text: str) -> Samples:
    """Every sample as {(name, the group or pool label): value}, via prometheus_client's parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = sample.labels.get("group") or sample.labels.get("pool") or ""
            samples[(sample.name, label)] = sample.value
    return samples


def sql(engine: Engine, statement: str, *params: object) -> None:
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.fixture
def env(mysql_url: str, redis_url: str, key_prefix: str) -> dict[str, str]:
    return console_env(mysql_url, redis_url, key_prefix, BEEORM_ENGINE=ENGINE_SPEC)


@pytest.fixture
def metrics_server(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Starts ``beeorm-celery metrics --port 0``; returns a function giving its /metrics URL."""
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "metrics", "--port", "0"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )

    served: list[str] = []

    def url() -> str:
        found = wait_until(
            lambda: re.search(r"http://\S+/metrics", stderr_path.read_text()),
            timeout_s=30,
            message=stderr_path.read_text(),
        )
        served.append(found.group(0))
        return served[-1]

    try:
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    if served:  # it started: SIGTERM is a clean stop
        assert code == 0, stderr_path.read_text()


def test_the_cli_endpoint_serves_the_figures_of_a_real_backlog(
    make_engine: Callable[..., Engine], metrics_server: Callable[[], str]
) -> None:
    engine = make_engine(*models.ALL)
    ctx = engine.new_context()
    # notes: one batch of three inserts, applied
    for text in ("a", "b", "c"):
        ctx.new_entity(models.Note, text=text)
    ctx.flush_async()
    consume_async_flush_events(engine)
    # counters: a batch MySQL refuses (the name is taken meanwhile), dead-lettered
    counter = ctx.new_entity(models.Counter, name="Cars")
    ctx.flush_async()
    sql(
        engine,
        "INSERT INTO `counter` (`id`, `name`, `value`) VALUES (%s, 'Cars', 0)",
        counter.id + 10_000,
    )
    consume_async_flush_events(engine)
    # catalog: two batches queued, not applied
    queued_at = time.time()
    ctx.new_entity(models.Category, name="Garden")
    ctx.flush_async()
    ctx.new_entity(models.Category, name="Kitchen")
    ctx.flush_async()

    response = httpx.get(metrics_server(), timeout=30)
    scraped_at = time.time()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    m = parse(response.text)
    assert m[("beeorm_async_stats_up", "")] == 1
    assert m[("beeorm_async_pending", "catalog")] == 2
    assert m[("beeorm_async_pending", "notes")] == 0
    assert m[("beeorm_async_pending", "counters")] == 0
    assert 0 < m[("beeorm_async_oldest_pending_seconds", "catalog")] <= scraped_at - queued_at + 1
    assert m[("beeorm_async_oldest_pending_seconds", "notes")] == 0
    assert m[("beeorm_async_dead_letters", "counters")] == 1
    assert m[("beeorm_async_dead_letters", "notes")] == 0
    assert m[("beeorm_async_applied_batches_total", "notes")] == 1
    assert m[("beeorm_async_applied_operations_total", "notes")] == 3
    assert m[("beeorm_async_applied_batches_total", "catalog")] == 0
    assert m[("beeorm_async_log_losses_total", "notes")] == 0
    assert m[("beeorm_async_retries_total", "notes")] == 0
    assert m[("beeorm_async_head_attempts", "catalog")] == 0
    # the CLI process ran no async read: its per-pool figures exist and are 0
    assert m[("beeorm_async_reads_queries_total", "default")] == 0
    # the same figures as async_stats(), read by another process
    for group, stats in engine.async_stats().items():
        assert m[("beeorm_async_pending", group)] == stats.pending
        assert m[("beeorm_async_dead_letters", group)] == stats.dead_letters
        assert m[("beeorm_async_applied_batches_total", group)] == stats.applied
        assert m[("beeorm_async_applied_operations_total", group)] == stats.applied_operations


def test_a_scrape_costs_one_redis_round_trip_and_one_mysql_query_whatever_the_groups(
    mysql_url: str, redis_url: str, key_prefix: str, make_engine: Callable[..., Engine]
) -> None:
    entities = [
        type(
            f"Grouped{n}",
            (Entity,),
            {"__annotations__": {"name": "str"}, "name": Field(max_length=20)},
            table=f"grouped{n}",
            async_group=f"g{n}",
        )
        for n in range(8)
    ]
    make_engine(*entities)  # the tables and the applied-position table

    costs = {}
    for count in (1, 8):
        redis_proxy = CountingProxy(*_host_port(redis_url, 6379))
        mysql_proxy = CountingProxy(*_host_port(mysql_url, 3306), mysql=True)
        try:
            registry = Registry(key_prefix=key_prefix)
            registry.register_mysql(_via(mysql_url, mysql_proxy.port))
            registry.register_redis(_via(redis_url, redis_proxy.port))
            registry.register_entity(*entities[:count])
            engine = registry.validate()
            ctx = engine.new_context()
            for entity in entities[:count]:
                ctx.new_entity(entity, name="x")
            ctx.flush_async()
            consume_async_flush_events(engine, groups=[f"g{n}" for n in range(count)][::2])
            prometheus = CollectorRegistry()
            prometheus.register(AsyncFlushCollector(engine))
            generate_latest(prometheus)  # connections opened, sessions set up
            before = (redis_proxy.round_trips, mysql_proxy.mysql_queries)

            text = generate_latest(prometheus).decode()

            costs[count] = (
                redis_proxy.round_trips - before[0],
                mysql_proxy.mysql_queries - before[1],
            )
            m = parse(text)
            assert sum(v for (n, _), v in m.items() if n == "beeorm_async_pending") == count // 2
            engine.close()
        finally:
            redis_proxy.close()
            mysql_proxy.close()

    assert costs == {1: (1, 1), 8: (1, 1)}


def test_the_collector_registers_without_a_service_and_reports_a_failing_one_as_down(
    mysql_url: str, key_prefix: str
) -> None:
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    registry.register_entity(*models.ALL)
    engine = registry.validate()
    try:
        prometheus = CollectorRegistry()
        prometheus.register(AsyncFlushCollector(engine))  # describes, reads nothing

        m = parse(generate_latest(prometheus).decode())
    finally:
        engine.close()

    assert m[("beeorm_async_stats_up", "")] == 0
    assert not any(name == "beeorm_async_pending" for name, _ in m)


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    p = urlparse(url)
    return p.hostname or "127.0.0.1", p.port or default_port


def _via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    p = urlparse(url)
    credentials = p.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunparse(p._replace(netloc=netloc))


def test_retries_and_the_failing_head_show_while_a_row_lock_holds_the_group(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(
        *models.ALL,
        async_flush=AsyncFlushSettings(
            lock_wait_timeout_s=1, retry_backoff_s=0.05, retry_backoff_max_s=0.1
        ),
    )
    ctx = engine.new_context()
    counter = ctx.new_entity(models.Counter, name="hits", value=0)
    ctx.flush()
    ctx.edit(counter).value = 1
    ctx.flush_async()
    prometheus = CollectorRegistry()
    prometheus.register(AsyncFlushCollector(engine))
    holder = engine.mysql["default"].new_connection()
    consumer: threading.Thread | None = None
    try:
        with holder.cursor() as cursor:  # a real row lock: the worker's UPDATE waits, times out
            cursor.execute("BEGIN")
            cursor.execute("SELECT * FROM `counter` WHERE `id` = %s FOR UPDATE", (counter.id,))
        consumer = threading.Thread(target=consume_async_flush_events, args=(engine,))
        consumer.start()

        def scraped() -> Samples:
            return parse(generate_latest(prometheus).decode())

        waiting = wait_until(
            lambda: (m := scraped())[("beeorm_async_retries_total", "counters")] >= 2 and m,
            timeout_s=30,
        )
        assert waiting[("beeorm_async_head_attempts", "counters")] >= 1
        assert waiting[("beeorm_async_pending", "counters")] == 1
        assert waiting[("beeorm_async_retries_total", "notes")] == 0
    finally:
        holder.rollback()
        holder.close()
        if consumer is not None:
            consumer.join(timeout=30)

    done = parse(generate_latest(prometheus).decode())
    assert done[("beeorm_async_pending", "counters")] == 0
    assert done[("beeorm_async_head_attempts", "counters")] == 0
    assert done[("beeorm_async_retries_total", "counters")] >= 2  # a counter: it stays


def test_a_lost_log_is_counted_in_log_losses_total(
    make_engine: Callable[..., Engine], redis_url: str
) -> None:
    engine = make_engine(*models.ALL)
    ctx = engine.new_context()
    ctx.new_entity(models.Note, text="applied")
    ctx.flush_async()
    consume_async_flush_events(engine)  # MySQL now holds the notes log's epoch
    keys = engine.async_parts.keys
    # the log and its epoch vanish, as when Redis restarts without its data
    redis.Redis.from_url(redis_url).delete(keys.log("notes"), keys.epoch("notes"))
    ctx.new_entity(models.Note, text="on a new log")
    ctx.flush_async()
    consume_async_flush_events(engine)  # finds another epoch: counts the loss
    prometheus = CollectorRegistry()
    prometheus.register(AsyncFlushCollector(engine))

    m = parse(generate_latest(prometheus).decode())

    assert m[("beeorm_async_log_losses_total", "notes")] == 1
    assert m[("beeorm_async_log_losses_total", "counters")] == 0
    assert engine.async_stats()["notes"].log_losses == 1
