"""A small, fork-safe pool of PyMySQL connections for one MySQL server ("pool" in BeeORM terms)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pymysql
from pymysql.connections import Connection
from pymysql.constants import CLIENT

from beeorm_celery.defaults import (
    DEFAULT_MYSQL_CONNECT_TIMEOUT_S,
    DEFAULT_MYSQL_PING_AFTER_IDLE_S,
    DEFAULT_MYSQL_POOL_SIZE,
)
from beeorm_celery.errors import ConfigError

# Strict mode makes MySQL refuse bad data instead of truncating it silently.
_SESSION_SQL_MODE = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO"


# URL query options handed to PyMySQL, with how to read their text.
_URL_OPTIONS: dict[str, Any] = {
    "ssl_ca": str,
    "ssl_cert": str,
    "ssl_key": str,
    "ssl_disabled": "bool",
    "ssl_verify_cert": "bool",
    "ssl_verify_identity": "bool",
    "connect_timeout": float,
    "read_timeout": float,
    "write_timeout": float,
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Client errors meaning "the link broke" (server gone, lost, restarted, timed out).
_LINK_LOST = frozenset({2006, 2013, 2055, 4031})
# Room in a packet beside the statement's text: the command byte, the header, slack.
_PACKET_MARGIN = 1024
_MIN_PACKET = 4096


def _option_value(name: str, text: str) -> Any:
    kind = _URL_OPTIONS[name]
    if kind == "bool":
        if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"MySQL URL option {name}={text!r}: use true or false")
        return text.lower() in ("1", "true", "yes")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"MySQL URL option {name}={text!r} is not a {kind.__name__}") from None


@dataclass(frozen=True)
class MySQLConfig:
    name: str
    host: str
    port: int
    user: str
    password: str
    database: str
    pool_size: int = DEFAULT_MYSQL_POOL_SIZE
    connect_timeout_s: float = DEFAULT_MYSQL_CONNECT_TIMEOUT_S
    unix_socket: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str, name: str, pool_size: int = DEFAULT_MYSQL_POOL_SIZE) -> MySQLConfig:
        parsed = urlparse(url)
        if parsed.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise ConfigError(
                f"MySQL pool {name!r}: URL {url!r} must look like mysql://user:pass@host:3306/db"
            )
        database = parsed.path.lstrip("/")
        if not database:
            raise ConfigError(f"MySQL pool {name!r}: URL {url!r} names no database")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        unix_socket = query.pop("unix_socket", None)
        unknown = sorted(set(query) - set(_URL_OPTIONS))
        if unknown:
            raise ConfigError(
                f"MySQL pool {name!r}: unknown URL option {unknown[0]!r} "
                f"(known: unix_socket, {', '.join(_URL_OPTIONS)})"
            )
        return cls(
            name=name,
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 3306,
            user=unquote(parsed.username or "root"),
            password=unquote(parsed.password or ""),
            database=database,
            pool_size=pool_size,
            unix_socket=unix_socket,
            options=query,
        )

    @property
    def safe_url(self) -> str:
        """The URL without the password, for messages."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


class MySQLPool:
    """Hands out connections, at most ``pool_size`` at once; a waiting caller blocks.

    After ``fork()`` the child never touches the parent's sockets: it starts with no idle
    connections (Celery's prefork workers import the engine in the parent).
    """

    def __init__(self, config: MySQLConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.pool_size)
        self._idle: list[tuple[Connection[Any], float]] = []
        # the applier's connections, which take several statements per packet: kept apart, so
        # a connection handed to anyone else never does (a query built from untrusted text
        # could not stack a second statement behind it)
        self._idle_packets: list[tuple[Connection[Any], float]] = []
        self._pid = os.getpid()
        self._server_is_mariadb: bool | None = None
        self._max_allowed_packet: int | None = None
        self._refused_bytes: int | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return self.config.name

    def new_connection(self, multi_statements: bool = False, **overrides: Any) -> Connection[Any]:
        """A connection outside the pool (the caller closes it); see ``acquire`` for
        ``multi_statements``."""
        c = self.config
        kwargs: dict[str, Any] = {
            "host": c.host,
            "port": c.port,
            "user": c.user,
            "password": c.password,
            "database": c.database,
            "charset": "utf8mb4",
            "autocommit": True,
            "connect_timeout": c.connect_timeout_s,
            "init_command": f"SET SESSION sql_mode='{_SESSION_SQL_MODE}'",
            # An UPDATE reports the rows it matched, not the rows it changed: 0 then means
            # "no such row" (noticed by flush and the applier), never "nothing to change".
            "client_flag": CLIENT.FOUND_ROWS,
        }
        if c.unix_socket:
            kwargs["unix_socket"] = c.unix_socket
        # PyMySQL tries TLS whenever the server offers it, which costs ~25 ms per connection.
        # Over loopback or a socket it protects nothing: off unless the URL asks for it.
        if not any(k.startswith("ssl") for k in c.options) and (
            c.unix_socket or c.host in _LOOPBACK
        ):
            kwargs["ssl_disabled"] = True
        kwargs.update({k: _option_value(k, v) for k, v in c.options.items()})
        kwargs.update(overrides)
        if multi_statements:
            kwargs["client_flag"] = kwargs.get("client_flag", 0) | CLIENT.MULTI_STATEMENTS
        return pymysql.connect(**kwargs)

    def _reset_after_fork(self) -> None:
        # The parent's sockets belong to the parent: forget them, never close them from here.
        self._pid = os.getpid()
        self._idle = []
        self._idle_packets = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.config.pool_size)

    def acquire(
        self, timeout_s: float | None = None, multi_statements: bool = False
    ) -> Connection[Any]:
        """A connection of the pool; ``multi_statements``: one that takes several statements in
        one packet (the applier's: ``asyncflush/packed.py``), never handed out otherwise."""
        if self._pid != os.getpid():
            self._reset_after_fork()
        if self._closed:
            raise ConfigError(f"MySQL pool {self.name!r} is closed (engine.close() was called)")
        if not self._slots.acquire(timeout=timeout_s if timeout_s is not None else -1):
            raise TimeoutError(f"no free connection in MySQL pool {self.name!r} after {timeout_s}s")
        try:
            idle = self._idle_packets if multi_statements else self._idle
            with self._lock:
                entry = idle.pop() if idle else None
            if entry is None:
                return self.new_connection(multi_statements=multi_statements)
            conn, idle_since = entry
            if time.monotonic() - idle_since > DEFAULT_MYSQL_PING_AFTER_IDLE_S:
                conn.ping(reconnect=True)
            return conn
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: Connection[Any], broken: bool = False) -> None:
        if self._pid != os.getpid():
            return  # a connection from before fork: not ours to pool
        try:
            if broken or not conn.open or self._closed:
                _close_quietly(conn)
            else:
                with self._lock:
                    (self._idle_packets if accepts_packets(conn) else self._idle).append(
                        (conn, time.monotonic())
                    )
        finally:
            self._slots.release()

    @contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """A pooled connection; an error inside rolls back, a broken link is thrown away."""
        conn = self.acquire()
        broken = False
        try:
            yield conn
        except BaseException as e:
            broken = isinstance(e, pymysql.err.OperationalError | pymysql.err.InterfaceError)
            if not broken:
                try:
                    conn.rollback()
                except Exception:
                    broken = True
            raise
        finally:
            self.release(conn, broken)

    def read_all(self, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement.

        A pooled connection can be dead without knowing it (the server restarted since it was
        last used): a read that loses its link is run once more on a new connection. Only reads
        are repeated; writes never are.
        """
        for attempt in (1, 2):
            try:
                with self.connection() as conn, conn.cursor() as cursor:
                    cursor.execute(sql, args)
                    return list(cursor.fetchall())
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as e:
                code = e.args[0] if e.args else None
                if attempt == 2 or not (
                    code in _LINK_LOST or isinstance(e, pymysql.err.InterfaceError)
                ):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def is_mariadb(self) -> bool:
        if self._server_is_mariadb is None:
            with self.connection() as conn:
                info = str(conn.get_server_info())  # type: ignore[no-untyped-call]
                self._server_is_mariadb = "mariadb" in info.lower()
        return self._server_is_mariadb

    def statement_limit(self, conn: Connection[Any]) -> int:
        """How many bytes one statement may take on this server (law 14).

        The server's ``max_allowed_packet`` less a margin, read once on ``conn`` (a connection
        of this pool the caller holds: asking for a second one could wait for ever on a full
        pool), and below half of any statement the server refused for its size.
        """
        if self._max_allowed_packet is None:
            with conn.cursor() as cursor:
                # A session keeps the value of when it connected: the smaller of the two holds.
                cursor.execute(
                    "SELECT LEAST(@@SESSION.max_allowed_packet, @@GLOBAL.max_allowed_packet)"
                )
                row = cursor.fetchone()
            self._max_allowed_packet = int(row[0]) if row else _MIN_PACKET
        limit = self._max_allowed_packet - _PACKET_MARGIN
        if self._refused_bytes is not None:
            limit = min(limit, self._refused_bytes // 2)
        return max(limit, _MIN_PACKET - _PACKET_MARGIN)

    @property
    def known_max_allowed_packet(self) -> int | None:
        """``max_allowed_packet`` as last read (None: not read yet, or forgotten)."""
        return self._max_allowed_packet

    def statement_refused(self, statement_bytes: int) -> None:
        """The server refused a statement this large for its size: read the limit again, and
        keep later statements under half of it whatever the server says."""
        self._max_allowed_packet = None
        if self._refused_bytes is None or statement_bytes < self._refused_bytes:
            self._refused_bytes = statement_bytes

    def close(self) -> None:
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle + self._idle_packets, []
            self._idle_packets = []
        if self._pid == os.getpid():
            for conn, _ in idle:
                _close_quietly(conn)


def accepts_packets(conn: Connection[Any]) -> bool:
    """Whether ``conn`` was opened to take several statements in one packet."""
    return bool(getattr(conn, "client_flag", 0) & CLIENT.MULTI_STATEMENTS)


def _close_quietly(conn: Connection[Any]) -> None:
    with contextlib.suppress(Exception):
        conn.close()
