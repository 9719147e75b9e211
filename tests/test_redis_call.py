"""``call_once``: a command that was sent is never sent again (a flush's script queues batches).

redis-py's ``execute_command`` may retry a command whose reply did not come: for the flush
script that would queue the same batches again. These run against a private redis-server (a
script there blocks it for a moment) and check what the server did.
"""

from __future__ import annotations

import pytest
import redis

from beeorm_celery.redis_call import call_once
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


def test_a_reply_that_does_not_come_is_not_sent_again() -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url(), socket_timeout=0.1)
        checker = redis.Redis.from_url(server.url())  # no timeout: waits for the scripts
        try:
            with pytest.raises(redis.TimeoutError):
                call_once(client, "EVAL", _SLOW_COUNT, 1, "runs")
            # the script ran, once: the timed-out call was not sent again
            assert int(checker.get("runs") or 0) == 1
            # and the connection that timed out is not handed out again with the late reply
            assert call_once(client, "INCR", "after") == 1
        finally:
            client.close()
            checker.close()


def test_replies_errors_and_a_connection_the_server_closed() -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url())
        try:
            assert call_once(client, "SET", "k", "v") == b"OK"
            with pytest.raises(redis.exceptions.NoScriptError):
                call_once(client, "EVALSHA", "0" * 40, 0)
            assert call_once(client, "GET", "k") == b"v"  # in step after an error reply
            # the server drops every client: the pooled connection is replaced on checkout
            admin = redis.Redis.from_url(server.url())
            admin.client_kill_filter(_type="normal", skipme=True)
            admin.close()
            assert call_once(client, "GET", "k") == b"v"
        finally:
            client.close()
