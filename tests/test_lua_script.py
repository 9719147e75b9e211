"""``LuaScript``: one EVALSHA per call, and a server that does not know the script (new,
restarted, or its scripts flushed) gets it loaded and runs it once, not twice."""

from __future__ import annotations

import pytest

from beeorm_celery.lua_script import LuaScript
from tests.support.private_servers import private_redis

_COUNT = LuaScript("return redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])")


@pytest.mark.services
def test_a_script_the_server_lost_is_loaded_and_runs_once() -> None:
    with private_redis() as server:
        client = server.client()
        assert _COUNT(client, keys=["n"], args=[10]) == 11
        assert client.script_exists(_COUNT.sha) == [True]
        client.script_flush()  # as after a restart: the server no longer knows the hash
        assert _COUNT(client, keys=["n"], args=[10]) == 12
        assert client.get("n") == b"2"  # NOSCRIPT ran nothing: the retry is the only run
        server.restart_empty()
        client = server.client()
        assert _COUNT(client, keys=["n"], args=[0]) == 1
        calls = client.info("commandstats")
        assert calls["cmdstat_evalsha"]["calls"] == 2  # the refused one and the retry
        assert "cmdstat_eval" not in calls  # never sent as source


def test_the_hash_is_the_sha1_redis_computes() -> None:
    # what SCRIPT LOAD answers for the same source
    assert LuaScript("return 1").sha == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
