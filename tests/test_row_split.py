"""The flush scripts' row split (``cache_patch.bo_split``) runs in Redis's Lua: its fast path
(one pattern match per item) must give exactly what the walk over every delimiter
(``bo_split_any``) gives, for the rows orjson makes (escapes, nesting, any text) and for
text that is not JSON at all. Both run side by side on the real Redis, in one script."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beeorm_celery.cache_patch import LUA_HELPERS

# Per argument: 'n' when a split gives nil, else the items joined by NUL and their count; the
# first of two such lines from the fast path, the second from the walk.
_COMPARE = (
    LUA_HELPERS
    + """
local out = {}
local function shown(items)
  if not items then return 'n' end
  return table.concat(items, '\\0') .. '#' .. #items
end
for i = 1, #ARGV do
  local walk = nil
  if string.byte(ARGV[i], 1) == 91 then walk = bo_split_any(ARGV[i]) end
  out[#out + 1] = shown(bo_split(ARGV[i]))
  out[#out + 1] = shown(walk)
end
return out
"""
)

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
_rows = st.lists(_json, max_size=7).map(orjson.dumps)
# not JSON: any mix of the characters the split treats specially, opened by '['
_garbage = st.text(alphabet='[]{},"\\ a1', max_size=14).map(lambda t: ("[" + t).encode())


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def _splits(client: redis.Redis, rows: list[bytes]) -> list[tuple[Any, Any]]:
    out = client.eval(_COMPARE, 0, *rows)
    return list(zip(out[::2], out[1::2], strict=True))


def test_fast_path_splits_plain_rows(client: redis.Redis) -> None:
    row = orjson.dumps(["a, b]", "50.00", 7, True, None, "2026-01-01T00:00:05", -1.5])
    fast, walk = _splits(client, [row])[0]
    assert (
        fast
        == walk
        == b'"a, b]"\x00"50.00"\x007\x00true\x00null\x00"2026-01-01T00:00:05"\x00-1.5#7'
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(_rows | _garbage, min_size=1, max_size=40))
def test_fast_path_equals_the_walk(client: redis.Redis, rows: list[bytes]) -> None:
    for fast, walk in _splits(client, rows):
        assert fast == walk
