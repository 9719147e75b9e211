"""The demo's own corner of MySQL and Redis: reset it, look into it directly, remove it."""

from __future__ import annotations

from typing import Any

import pymysql
import redis

from demo.config import DemoConfig, MySQLServer


class ServiceProblem(Exception):
    """MySQL or Redis does not answer, or refuses what the demo needs."""


def _server_connection(server: MySQLServer, database: str | None) -> pymysql.Connection[Any]:
    try:
        return pymysql.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
        )
    except pymysql.MySQLError as e:
        raise ServiceProblem(
            f"cannot use MySQL at {server.host}:{server.port} as {server.user!r}: {e}. "
            "Is MariaDB/MySQL running (see BEEORM_DEMO_MYSQL_URL)?"
        ) from e


def _redis(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as e:
        raise ServiceProblem(
            f"cannot reach Redis at {url}: {str(e).rstrip('.')}. Is redis-server running?"
        ) from e
    return client


def _delete_prefixed(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN, never KEYS: the server stays responsive)."""
    client = _redis(url)
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(client.delete(*batch))
            batch.clear()
    if batch:
        removed += int(client.delete(*batch))
    client.close()
    return removed


def _delete_owned_keys(config: DemoConfig) -> int:
    removed = _delete_prefixed(config.redis_url, f"{config.key_prefix}:")
    if config.broker_url != config.redis_url:
        removed += _delete_prefixed(config.broker_url, config.broker_key_prefix)
    return removed


def reset(config: DemoConfig) -> int:
    """Drop and recreate the demo database and delete the demo's keys; returns keys removed."""
    server = config.mysql
    conn = _server_connection(server, None)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{server.database}`")
            cursor.execute(f"CREATE DATABASE `{server.database}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return _delete_owned_keys(config)


def remove(config: DemoConfig) -> None:
    """Leave nothing behind: the database and every key the demo wrote."""
    server = config.mysql
    conn = _server_connection(server, None)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{server.database}`")
    finally:
        conn.close()
    _delete_owned_keys(config)


class MySQLProbe:
    """A plain PyMySQL connection to the demo database: what MySQL itself holds, no caches."""

    def __init__(self, server: MySQLServer) -> None:
        self.conn = _server_connection(server, server.database)

    def _one(self, sql: str, *args: Any) -> Any:
        with self.conn.cursor() as cursor:
            cursor.execute(sql, args)
            row = cursor.fetchone()
        return row[0] if row else None

    def count(self, table: str) -> int:
        return int(self._one(f"SELECT COUNT(*) FROM `{table}`"))

    def has_row(self, table: str, entity_id: int) -> bool:
        return bool(self._one(f"SELECT COUNT(*) FROM `{table}` WHERE `id` = %s", entity_id) == 1)

    def column(self, table: str, entity_id: int, column: str) -> Any:
        return self._one(f"SELECT `{column}` FROM `{table}` WHERE `id` = %s", entity_id)

    def execute(self, sql: str, *args: Any) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(sql, args)

    def close(self) -> None:
        self.conn.close()
