"""``call_once``: one Redis command that must not run twice, on the lean path.

redis-py's ``execute_command`` may send a command again when its connection broke (the
client's ``Retry``). For a flush's script that is wrong once the command was sent: the server
may have run it before the link broke, and a second run would queue the batches again. Here a
command is sent again only when sending it failed (a pooled connection the server had closed;
the server saw no complete command), never after it was sent.

It is also the hot path of every ``flush_async()``: it skips the retry wrapper, the
observability hooks and the event dispatch that ``execute_command`` runs around each call.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import redis
from redis.exceptions import ResponseError


class _Link(Protocol):
    """What is used of a redis-py connection (its methods carry no type hints)."""

    def send_command(self, *args: Any) -> None: ...

    def read_response(self) -> Any: ...

    def disconnect(self) -> None: ...


def call_once(client: redis.Redis, *args: Any) -> Any:
    """Run ``args`` (a command and its arguments) on one of ``client``'s pooled connections and
    return the reply, raising what redis-py raises (``ResponseError`` and its subclasses for an
    error reply, ``ConnectionError`` / ``TimeoutError`` for a broken link)."""
    pool = client.connection_pool
    pooled = pool.get_connection()
    conn = cast(_Link, pooled)
    try:
        try:
            conn.send_command(*args)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            # Not sent whole: the server cannot have run it. Once more on a fresh connection.
            conn.disconnect()
            conn.send_command(*args)
        return conn.read_response()
    except ResponseError:
        raise  # an error reply: the connection is in step, keep it
    except BaseException:
        # the reply may still come: a connection in an unknown state goes, never back to the pool
        conn.disconnect()
        raise
    finally:
        pool.release(pooled)
