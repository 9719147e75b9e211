"""A worker says what is wrong when it starts: the checks against the real MySQL and Redis, then
real Celery worker processes logging them (or refusing to start)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from beeorm_celery import Engine, Registry
from beeorm_celery.startup import refuses_to_start, startup_problems
from tests.support import models, services
from tests.support.services import wait_until, with_database

PREFIX = "beeorm."
ALL_QUEUES = [PREFIX + g for g in models.GROUPS]


def engine_on(mysql_url: str, redis_url: str, key_prefix: str) -> Engine:
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(*models.ALL)
    return registry.validate()


def test_a_worker_with_tables_redis_and_its_queues_has_nothing_to_say(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL)

    assert startup_problems(engine, ALL_QUEUES, PREFIX) == []
    assert startup_problems(engine, ["celery", "beeorm.notes"], PREFIX) == []  # one is enough


def test_consuming_no_group_queue_is_a_warning_naming_the_queues_to_consume(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL)

    [problem] = startup_problems(engine, ["celery"], PREFIX)

    assert not problem.fatal
    assert "consumes no async flush queue (it consumes: celery)" in problem.message
    assert "-Q beeorm.catalog,beeorm.counters,beeorm.notes" in problem.message


def test_missing_tables_are_a_warning_naming_them_and_update_schema(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL, update_schema=False)

    [problem] = startup_problems(engine, ALL_QUEUES, PREFIX)

    assert not problem.fatal
    for table in ("category", "counter", "note", "product"):
        assert repr(table) in problem.message
    assert "engine.update_schema()" in problem.message


def test_a_database_that_does_not_exist_refuses_the_start_with_the_fix(
    mysql_url: str, redis_url: str, key_prefix: str
) -> None:
    missing = with_database(mysql_url, "bt_no_such_database_here")
    engine = engine_on(missing, redis_url, key_prefix)
    try:
        problems = startup_problems(engine, ALL_QUEUES, PREFIX)
    finally:
        engine.close()

    [problem] = problems
    assert refuses_to_start(problems)
    assert "database 'bt_no_such_database_here' does not exist" in problem.message
    assert "CREATE DATABASE `bt_no_such_database_here`" in problem.message


def test_a_redis_that_does_not_answer_is_a_warning_naming_the_pool(
    mysql_url: str, key_prefix: str, make_engine: Callable[..., Engine]
) -> None:
    make_engine(*models.ALL)  # the tables: only Redis is wrong
    engine = engine_on(mysql_url, "redis://127.0.0.1:1/0", key_prefix)  # nothing on port 1
    try:
        problems = startup_problems(engine, ALL_QUEUES, PREFIX)
    finally:
        engine.close()

    [problem] = problems
    assert not refuses_to_start(problems)
    assert "Redis pool 'default'" in problem.message
    assert "does not answer" in problem.message


# --- real worker processes (tests/support/workers.py); `harness`: Celery, then Dramatiq


def test_a_worker_consuming_only_the_celery_queue_warns_and_names_the_queues(
    harness: Callable[..., Any],
) -> None:
    h = harness()

    worker = h.start_worker(concurrency=1, queue_names="celery")

    log = worker.log()
    assert "WARNING" in log
    assert "consumes no async flush queue (it consumes: celery)" in log
    assert "-Q beeorm.catalog,beeorm.counters,beeorm.notes" in log
    assert "--queues beeorm.catalog beeorm.counters beeorm.notes" in log


def test_a_worker_on_its_queues_with_everything_in_place_says_nothing(
    harness: Callable[..., Any],
) -> None:
    h = harness()

    worker = h.start_worker(concurrency=1)

    assert "beeorm worker start" not in worker.log()


def test_a_worker_whose_database_does_not_exist_refuses_to_start_saying_the_fix(
    harness: Callable[..., Any], mysql_url: str
) -> None:
    h = harness()
    missing = with_database(mysql_url, "bt_no_such_database_here")

    worker = h.start_worker(concurrency=1, wait=False, env={"BEEORM_TEST_DB_URL": missing})

    assert worker.process.wait(timeout=60) != 0
    log = worker.log()
    assert "database 'bt_no_such_database_here' does not exist" in log
    assert "CREATE DATABASE `bt_no_such_database_here`" in log
    assert " ready." not in log


def test_a_worker_on_a_database_without_the_tables_warns_naming_update_schema(
    celery_harness: Callable[..., Any], mysql_server_url: str
) -> None:
    h = celery_harness()
    empty = services.new_database(mysql_server_url)
    try:
        worker = h.start_worker(concurrency=1, env={"BEEORM_TEST_DB_URL": empty})
        log = worker.log()
    finally:
        h.close()  # stop the worker before its database goes
        services.drop_database(empty)

    assert "has no table" in log and "'product'" in log
    assert "engine.update_schema()" in log


def test_a_worker_whose_redis_does_not_answer_warns_naming_the_pool(
    celery_harness: Callable[..., Any],
) -> None:
    h = celery_harness()

    worker = h.start_worker(
        concurrency=1, wait=False, env={"BEEORM_TEST_REDIS_URL": "redis://127.0.0.1:1/0"}
    )

    wait_until(lambda: "does not answer" in worker.log(), timeout_s=60, message=worker.log())
    assert "Redis pool 'default', which holds the async flush logs, does not answer" in (
        worker.log()
    )
