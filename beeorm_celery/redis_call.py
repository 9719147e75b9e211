"""``call_once``: one Redis command that must not run twice, on the lean path.

redis-py's ``execute_command`` may send a command again when its connection broke (the
client's ``Retry``). For a flush's script that is wrong once the command was sent: the server
may have run it before the link broke, and a second run would queue the batches again. Here a
command is sent again only when sending it failed (a pooled connection the server had closed;
the server saw no complete command), never after it was sent.

It is also the hot path of every ``flush_async()``. ``OnceCaller`` keeps connections of its own
for it, made and authenticated by redis-py (the client's connection class and settings), then
driven directly: the command packed by hiredis, one ``sendall``, replies read into one buffer.
Measured on loopback, that is 26-37 µs less per call (a 1.5 KB SET) than redis-py's pooled
path, and 17-22 µs less per 10-entity ``flush_async()`` (bench/README.md). redis-py checks each
connection out with a ``poll``, waits on a socket with a Python-level timeout (a ``poll``
before every read and write) and runs its observability hooks around each command. The
timeout here is the kernel's (``SO_RCVTIMEO`` / ``SO_SNDTIMEO``), and an idle connection is
checked on checkout with one poll. Clients this cannot drive the same way (TLS,
RESP3, decoded replies) take ``call_once``, redis-py's connections without its retry.

The reply is first waited for by polling the socket (polls of no timeout) for up to ``spin_us``,
then by a blocking read. A thread that blocks puts its CPU to sleep, and waking an idle CPU
when the reply lands costs tens of microseconds, most of all in a virtual machine (measured
here: a PING answered in 67-74 µs blocking, 22-33 µs polling). A small flush's reply usually
comes within that budget; the price is that much CPU per call, spent where the caller waits
anyway. A large flush's reply does not, and polling for it took the CPU Redis needed to run the
script: such a call blocks at once (``reply_wait.SpinPlan`` learns which calls those are).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from typing import Any, Protocol, cast

import hiredis
import redis
from redis._parsers import BaseParser
from redis.exceptions import InvalidResponse, ResponseError

from beeorm_celery.reply_wait import SpinPlan

# what a lean connection reads into per recv; a flush's reply is far smaller
_READ_SIZE = 65536


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


class OnceCaller:
    """``call(*args)``: ``call_once`` on ``client``'s server, over connections of its own.

    Thread-safe (a connection serves one call at a time) and fork-safe (a child never uses its
    parent's connections). ``close()`` closes the idle ones. ``spin_us``: how long a call
    polls for its reply before it blocks (0: it blocks at once); a call whose reply is expected
    well after that blocks at once (``reply_wait.SpinPlan``).
    """

    def __init__(self, client: redis.Redis, spin_us: int = 0) -> None:
        if spin_us < 0:
            raise ValueError(f"spin_us must be 0 or more, got {spin_us!r}")
        self._client = client
        self.spin_plan = SpinPlan(int(spin_us) * 1000)
        self._lean = _drivable(client.connection_pool)
        self._pid = os.getpid()
        self._idle: list[_LeanLink] = []

    def call(self, *args: Any) -> Any:
        if not self._lean:
            return call_once(self._client, *args)
        if self._pid != os.getpid():
            # forked: the sockets are shared with the parent; a child's use would interleave
            # with the parent's replies. Forgotten here, never closed (that is the parent's).
            self._idle = []
            self._pid = os.getpid()
        packed = hiredis.pack_command(args)
        link = self._checkout()
        if link is None:
            return call_once(self._client, *args)
        plan = self.spin_plan
        size = len(packed)
        try:
            try:
                sent_ns = time.perf_counter_ns()
                link.send(packed)
            except (redis.ConnectionError, redis.TimeoutError):
                # Not sent whole: the server cannot have run it. Once more on a fresh connection.
                link.close()
                link = _LeanLink(self._client.connection_pool)
                sent_ns = time.perf_counter_ns()
                link.send(packed)
            reply = link.read(plan.spin_ns(size))
            plan.observed(size, time.perf_counter_ns() - sent_ns)
        except BaseException:
            # the reply may still come: a connection in an unknown state goes
            link.close()
            raise
        self._idle.append(link)
        if isinstance(reply, ResponseError):
            raise reply  # an error reply: the connection is in step, kept
        return reply

    def close(self) -> None:
        idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for link in idle:
                link.close()

    def _checkout(self) -> _LeanLink | None:
        """An idle connection still open, or a new one; None: redis-py's path from now on."""
        while True:
            try:
                link = self._idle.pop()
            except IndexError:
                try:
                    return _LeanLink(self._client.connection_pool)
                except _NotDrivable:
                    self._lean = False
                    return None
            if link.usable():
                return link
            link.close()  # closed by the server (a restart, a timeout, CLIENT KILL)


def _drivable(pool: redis.ConnectionPool) -> bool:
    """Whether ``pool``'s connections are plain sockets speaking RESP2 with bytes replies."""
    kwargs = pool.connection_kwargs
    return (
        pool.connection_class in (redis.Connection, redis.UnixDomainSocketConnection)
        and str(kwargs.get("protocol") or 2) == "2"
        and not kwargs.get("decode_responses")
        and hasattr(select, "poll")
        and hasattr(socket, "SO_RCVTIMEO")
    )


class _NotDrivable(redis.ConnectionError):
    """redis-py's connection has no socket where this module looks for it (another version).
    A ``ConnectionError``: where it is not caught (a retry's fresh connection), the flush fails
    as for any connection that could not be made, before anything was sent."""


class _LeanLink:
    """One connection, set up by redis-py (connect, AUTH, SELECT, client name), then driven
    here: hiredis parses its replies, the kernel times its reads and writes out."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        conn = pool.connection_class(**pool.connection_kwargs)
        conn.connect()
        # redis-py keeps the connected socket here (``_sock``) in every version we support
        sock = getattr(conn, "_sock", None)
        if not isinstance(sock, socket.socket):
            conn.disconnect()
            raise _NotDrivable
        self._conn = conn
        self._sock = sock
        timeout = conn.socket_timeout
        if timeout is not None:
            # Blocking mode with the kernel's timeouts: Python's own timeout polls before every
            # read and write. A timed-out read or write raises BlockingIOError (EAGAIN).
            seconds = int(timeout)
            timeval = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            except OSError:
                pass  # refused here: Python's own timeout, as redis-py set it, stays
            else:
                sock.settimeout(None)
        # Polling needs a socket in blocking mode: on one with Python's own timeout every read
        # polls (waits) first, so such a link only blocks.
        self._can_spin = sock.gettimeout() is None
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error
        )
        self._buffer = bytearray(_READ_SIZE)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        # ``_readable(0)``: a list of events, empty while there is nothing to read
        self._readable = poller.poll

    def usable(self) -> bool:
        """True while the server has not closed the connection and nothing unread waits."""
        # Anything to read (the server's close, a reply nobody asked for: out of step) or an
        # error on the socket: not usable. A poll, not a non-blocking peek: the peek's
        # BlockingIOError in the usual case cost three times as much, on every flush.
        return not self._readable(0)

    def send(self, packed: bytes) -> None:
        try:
            self._sock.sendall(packed)
        except (BlockingIOError, TimeoutError):  # the kernel's timeout, or Python's
            raise redis.TimeoutError("Timeout writing to socket") from None
        except OSError as e:
            raise redis.ConnectionError(f"Error while writing to socket: {e}") from None

    def read(self, spin_ns: int = 0) -> Any:
        """The next reply; polls for it up to ``spin_ns`` before the first blocking read."""
        reader, buffer = self._reader, self._buffer
        deadline = time.perf_counter_ns() + spin_ns if spin_ns and self._can_spin else 0
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            try:
                n = self._poll(buffer, deadline) if deadline else self._sock.recv_into(buffer)
            except (BlockingIOError, TimeoutError):  # the kernel's timeout, or Python's
                raise redis.TimeoutError("Timeout reading from socket") from None
            except OSError as e:
                raise redis.ConnectionError(f"Error while reading from socket: {e}") from None
            if n == 0:
                raise redis.ConnectionError("Connection closed by server.")
            # hiredis reads any buffer (its stub says bytes only): no copy of the bytes read
            reader.feed(cast(bytes, buffer), 0, n)

    def _poll(self, buffer: bytearray, deadline: int) -> int:
        """Read what has come, polling until ``deadline`` (perf_counter_ns), then blocking."""
        readable = self._readable
        while not readable(0) and time.perf_counter_ns() < deadline:
            pass
        return self._sock.recv_into(buffer)  # returns at once once the poll saw data

    def close(self) -> None:
        cast(_Link, self._conn).disconnect()
