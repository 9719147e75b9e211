"""Reaching the real MariaDB/MySQL and Redis the tests run against.

URLs come from BEEORM_TEST_MYSQL_URL and BEEORM_TEST_REDIS_URL (defaults: the local servers).
Where they do not answer and a Docker engine does, testcontainers starts them; where neither,
the run stops with a message saying what to start. It never skips.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse, urlunparse

import pymysql
import redis

DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


class ServiceUnavailable(RuntimeError):
    pass


def mysql_answers(url: str) -> bool:
    p = urlparse(url)
    try:
        conn = pymysql.connect(
            host=p.hostname or "127.0.0.1",
            port=p.port or 3306,
            user=p.username or "root",
            password=p.password or "",
            connect_timeout=3,
        )
        conn.close()
        return True
    except pymysql.MySQLError:
        return False


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except redis.RedisError:
        return False


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@contextmanager
def mysql_server() -> Iterator[str]:
    url = os.environ.get("BEEORM_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    if mysql_answers(url):
        yield url
        return
    if not _docker_answers():
        raise ServiceUnavailable(
            f"MySQL does not answer at {url} and there is no Docker engine for testcontainers. "
            "Start MariaDB (see README, 'Running the tests') or set BEEORM_TEST_MYSQL_URL."
        )
    from testcontainers.mysql import MySqlContainer  # type: ignore[import-untyped]

    with MySqlContainer("mysql:8.4", username="root", password="test", dbname="test") as c:
        yield f"mysql://root:test@{c.get_container_host_ip()}:{c.get_exposed_port(3306)}/test"


@contextmanager
def redis_server() -> Iterator[str]:
    url = os.environ.get("BEEORM_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    if redis_answers(url):
        yield url
        return
    if not _docker_answers():
        raise ServiceUnavailable(
            f"Redis does not answer at {url} and there is no Docker engine for testcontainers. "
            "Start Redis (see README, 'Running the tests') or set BEEORM_TEST_REDIS_URL."
        )
    from testcontainers.redis import RedisContainer  # type: ignore[import-untyped]

    with RedisContainer("redis:7") as c:
        yield f"redis://{c.get_container_host_ip()}:{c.get_exposed_port(6379)}/15"


def with_database(url: str, database: str) -> str:
    p = urlparse(url)
    return urlunparse(p._replace(path="/" + database))


def server_connection(url: str) -> pymysql.connections.Connection:  # type: ignore[type-arg]
    p = urlparse(url)
    return pymysql.connect(
        host=p.hostname or "127.0.0.1",
        port=p.port or 3306,
        user=p.username or "root",
        password=p.password or "",
        autocommit=True,
        charset="utf8mb4",
    )


def new_database(url: str) -> str:
    """A fresh, empty database on the server of ``url``; returns its URL."""
    name = f"bt_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = server_connection(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        conn.close()
    return with_database(url, name)


def drop_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    conn = server_connection(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def delete_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    for pattern in (f"{prefix}:*", f"{prefix}*"):
        batch = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
    client.close()


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.02, message: str = ""):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout_s}s")
        time.sleep(interval_s)
