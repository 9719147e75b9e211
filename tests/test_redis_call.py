"""``call_once`` / ``OnceCaller``: a command that was sent is never sent again (a flush's script
queues batches), and the lean connections stay in step through timeouts, error replies, a
server that drops its clients or restarts, and ``fork()``.

redis-py's ``execute_command`` may retry a command whose reply did not come: for the flush
script that would queue the same batches again. These run against a private redis-server (a
script there blocks it for a moment) and check what the server did.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from beeorm_celery import AsyncFlushSettings, ConfigError
from beeorm_celery.redis_call import OnceCaller, call_once
from tests.support.private_servers import private_redis

pytestmark = pytest.mark.services

# Counts its runs, then keeps the server busy past the client's socket timeout.
_SLOW_COUNT = """
redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local until_us = t[1] * 1000000 + t[2] + 300000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return 'the slow reply'
"""

Call = Callable[..., Any]


def _plain(client: redis.Redis) -> Call:
    return lambda *args: call_once(client, *args)


def _lean(client: redis.Redis) -> Call:
    return OnceCaller(client).call


def _spinning(client: redis.Redis) -> Call:
    # polls for each reply first, as flush_async() does by default (reply_spin_us)
    return OnceCaller(client, spin_us=500).call


both = pytest.mark.parametrize(
    "make_call",
    [_plain, _lean, _spinning],
    ids=["call_once", "OnceCaller", "OnceCaller polling"],
)


@both
def test_a_reply_that_does_not_come_is_not_sent_again(make_call: Callable[..., Call]) -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url(), socket_timeout=0.1)
        checker = redis.Redis.from_url(server.url())  # no timeout: waits for the scripts
        call = make_call(client)
        try:
            with pytest.raises(redis.TimeoutError):
                call("EVAL", _SLOW_COUNT, 1, "runs")
            # the script ran, once: the timed-out call was not sent again
            assert int(checker.get("runs") or 0) == 1
            # and the connection that timed out is not used again with the late reply waiting
            assert call("INCR", "after") == 1
            assert call("GET", "after") == b"1"
        finally:
            client.close()
            checker.close()


@both
def test_replies_errors_and_a_connection_the_server_closed(
    make_call: Callable[..., Call],
) -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url())
        call = make_call(client)
        try:
            assert call("SET", "k", "v") == b"OK"
            with pytest.raises(redis.exceptions.NoScriptError):
                call("EVALSHA", "0" * 40, 0)
            assert call("GET", "k") == b"v"  # in step after an error reply
            assert call("MGET", "k", "none") == [b"v", None]
            # the server drops every client: the idle connection is replaced on checkout
            admin = redis.Redis.from_url(server.url())
            admin.client_kill_filter(_type="normal", skipme=True)
            admin.close()
            assert call("GET", "k") == b"v"
            # a restart (empty): the same, the new server answers
            server.restart_empty()
            assert call("GET", "k") is None
        finally:
            client.close()


def test_a_slow_reply_is_waited_for_blocked_once_the_polling_budget_is_spent() -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url())
        caller = OnceCaller(client, spin_us=1000)
        pusher = redis.Redis.from_url(server.url())
        try:
            # a reply that comes at once, polled for
            assert caller.call("SET", "k", "v") == b"OK"
            # BLPOP answers after its own timeout (a nil) or when an element comes
            wall, cpu = time.perf_counter(), time.process_time()
            assert caller.call("BLPOP", "nothing", "0.3") is None
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert wall >= 0.25
            # polled for 1 ms, then asleep on the socket: not 300 ms of CPU
            assert cpu < wall / 3, (cpu, wall)
            pusher.rpush("queue", "item")
            assert caller.call("BLPOP", "queue", "5") == [b"queue", b"item"]
            assert caller.call("GET", "k") == b"v"  # in step
        finally:
            caller.close()
            client.close()
            pusher.close()


# Keeps the server busy for about 15 ms, and returns the size of its argument (a large flush's
# request is large and its script long).
_BUSY_15MS = """
local t = redis.call('TIME')
local until_us = t[1] * 1000000 + t[2] + 15000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return #ARGV[1]
"""


def test_a_reply_known_to_come_late_is_blocked_on_at_once_a_quick_one_is_polled_for() -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url())
        caller = OnceCaller(client, spin_us=5000)
        large = b"x" * 50_000
        try:
            assert caller.call("EVAL", _BUSY_15MS, 0, large) == len(large)  # polled, then learnt
            cpu = time.process_time()
            for _ in range(10):
                assert caller.call("EVAL", _BUSY_15MS, 0, large) == len(large)
            cpu = time.process_time() - cpu
            # polling first would have spent each call's 5 ms budget: 50 ms of CPU in all
            assert cpu < 0.015, cpu
            assert caller.spin_plan.spin_ns(len(large)) == 0
            for _ in range(5):
                assert caller.call("SET", "k", "v") == b"OK"
            assert caller.spin_plan.spin_ns(40) == 5_000_000  # a quick reply: polled for
            assert caller.call("GET", "k") == b"v"  # in step
        finally:
            caller.close()
            client.close()


def test_a_negative_polling_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="spin_us"):
        OnceCaller(redis.Redis(), spin_us=-1)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "200"])
def test_the_flush_polling_budget_setting_is_checked(bad: Any) -> None:
    with pytest.raises(ConfigError, match="reply_spin_us"):
        AsyncFlushSettings(reply_spin_us=bad)


def _child_calls(url: str, caller: OnceCaller, out: Any) -> None:
    try:
        out.put([caller.call("INCR", "child") for _ in range(50)])
    except BaseException as e:  # reported to the parent, which fails the test with it
        out.put(repr(e))


def test_a_forked_child_never_uses_its_parents_connections() -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url())
        caller = OnceCaller(client)
        try:
            assert caller.call("SET", "parent", "p") == b"OK"  # a connection is now idle
            fork = multiprocessing.get_context("fork")
            out = fork.Queue()
            child = fork.Process(target=_child_calls, args=(server.url(), caller, out))
            child.start()
            # the parent keeps calling while the child does: any shared socket would mix the
            # replies (a child's INCR answered to the parent's GET, or the other way round)
            for _ in range(200):
                assert caller.call("GET", "parent") == b"p"
            child.join(timeout=30)
            assert out.get(timeout=5) == list(range(1, 51))
            assert caller.call("GET", "parent") == b"p"
        finally:
            caller.close()
            client.close()


def test_clients_it_cannot_drive_take_redis_pys_connections() -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url(), decode_responses=True)
        caller = OnceCaller(client)
        try:
            assert caller.call("SET", "k", "v") == "OK"
            assert caller.call("GET", "k") == "v"  # decoded, as the client asked
        finally:
            caller.close()
            client.close()
