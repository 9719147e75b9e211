"""The age of the oldest pending batch of many groups, in one round trip and without payloads.

A rotation (``rotation.py``) asks this once per turn over its groups. ``XRANGE ... COUNT 1`` in
a pipeline would send each head batch's whole payload back (kilobytes per group, per turn);
this script returns only the entry ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from beeorm_celery.asyncflush.log import parse_id
from beeorm_celery.lua_script import LuaScript

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.parts import AsyncParts

_HEADS_SCRIPT = LuaScript(
    """
local out = {}
for i, key in ipairs(KEYS) do
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  if first[1] then out[i] = first[1][1] else out[i] = '' end
end
return out
"""
)


class Heads:
    """``Heads(parts).oldest_ms(groups)``: per group the queue time (ms) of its oldest pending
    batch, None when its log is empty."""

    def __init__(self, parts: AsyncParts) -> None:
        self.parts = parts

    def oldest_ms(self, groups: list[str]) -> list[int | None]:
        if not groups:
            return []
        keys = [self.parts.keys.log(g) for g in groups]
        raw = _HEADS_SCRIPT(self.parts.log_redis(), keys=keys)
        result: list[int | None] = []
        for value in raw:
            text = value.decode() if isinstance(value, bytes) else str(value)
            result.append(parse_id(text)[0] if text else None)
        return result
