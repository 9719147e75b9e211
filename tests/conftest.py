"""Fixtures for real services. Each test gets its own database and Redis key prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from beeorm_celery import Engine, Entity, Registry
from tests.support import services

_UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test outside tests/unit needs the real services: mark it, so that
    ``pytest -m "not services"`` runs the unit suite alone, in seconds."""
    for item in items:
        if _UNIT not in item.path.parents:
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    try:
        with services.mysql_server() as url:
            yield url
    except services.ServiceUnavailable as e:
        pytest.exit(str(e), returncode=3)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    try:
        with services.redis_server() as url:
            yield url
    except services.ServiceUnavailable as e:
        pytest.exit(str(e), returncode=3)


@pytest.fixture
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    """The URL of a fresh database, dropped after the test."""
    url = services.new_database(mysql_server_url)
    yield url
    services.drop_database(url)


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    services.delete_keys(redis_url, prefix)


@pytest.fixture
def make_engine(mysql_url: str, redis_url: str, key_prefix: str) -> Iterator[Callable[..., Engine]]:
    """``make_engine(*entities, **registry_kwargs)``: an engine on this test's database and
    prefix, with the schema created. Closed after the test."""
    engines: list[Engine] = []

    def make(*entities: type[Entity], update_schema: bool = True, **kwargs: Any) -> Engine:
        kwargs.setdefault("key_prefix", key_prefix)
        registry = Registry(**kwargs)
        registry.register_mysql(mysql_url)
        registry.register_redis(redis_url)
        registry.register_entity(*entities)
        engine = registry.validate()
        engines.append(engine)
        if update_schema:
            engine.update_schema()
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture(scope="session")
def broker_url(redis_url: str) -> str:
    """The Celery broker: $BEEORM_TEST_BROKER_URL, by default the test Redis server's database 14
    (queues are prefixed per test)."""
    return os.environ.get("BEEORM_TEST_BROKER_URL") or redis_url.rsplit("/", 1)[0] + "/14"


def _harnesses(
    kind: type[Any], mysql_url: str, redis_url: str, broker_url: str, key_prefix: str, tmp_path: Any
) -> Iterator[Callable[..., Any]]:
    """``make(broker=, queue_prefix=, **async_options)`` for a harness class; closes them all
    and drops this test's broker keys afterwards."""
    harnesses: list[Any] = []

    def make(
        *, broker: str | None = None, queue_prefix: str = "beeorm.", **async_options: Any
    ) -> Any:
        harness = kind(
            mysql_url,
            redis_url,
            broker or broker_url,
            key_prefix,
            tmp_path,
            async_options,
            queue_prefix,
        )
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.close()
    services.delete_keys(broker_url, key_prefix)


@pytest.fixture
def celery_harness(
    mysql_url: str, redis_url: str, broker_url: str, key_prefix: str, tmp_path: Any
) -> Iterator[Callable[..., Any]]:
    """``celery_harness(**async_options)``: engine + Celery app + worker processes for this test."""
    from tests.support.workers import CeleryHarness

    yield from _harnesses(CeleryHarness, mysql_url, redis_url, broker_url, key_prefix, tmp_path)


@pytest.fixture
def dramatiq_harness(
    mysql_url: str, redis_url: str, broker_url: str, key_prefix: str, tmp_path: Any
) -> Iterator[Callable[..., Any]]:
    """``dramatiq_harness(**async_options)``: engine + Dramatiq RedisBroker + ``dramatiq``
    worker processes for this test (``broker_url=`` another broker, ``queue_prefix=``)."""
    from tests.support.workers import DramatiqHarness

    yield from _harnesses(DramatiqHarness, mysql_url, redis_url, broker_url, key_prefix, tmp_path)


@pytest.fixture(params=["celery", "dramatiq"])
def harness(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A law's test against both backends: ``harness(**async_options)`` is a CeleryHarness with
    real ``celery worker`` processes, then a DramatiqHarness with real ``dramatiq`` ones."""
    return request.getfixturevalue(f"{request.param}_harness")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """$BEEORM_TEST_RABBITMQ_URL, by default the local RabbitMQ (guest/guest); tests skip when
    it does not answer. Tests use queue names unique to them and delete them after."""
    import socket
    from urllib.parse import urlparse

    url = os.environ.get("BEEORM_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5672), 2).close()
    except OSError:
        pytest.skip(f"RabbitMQ at {parsed.hostname}:{parsed.port} does not answer")
    return url
