"""``LuaScript``: a Lua script run by its hash, loaded on a server that does not know it yet.

Made once per script, at import, as a constant: its hash is computed then, and each call is one
EVALSHA. A new or restarted server answers NOSCRIPT once; the script is loaded and run again
(it had not run: NOSCRIPT means nothing was executed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis


@dataclass(frozen=True)
class LuaScript:
    source: str
    sha: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    def __call__(
        self, client: redis.Redis, keys: Sequence[Any] = (), args: Sequence[Any] = ()
    ) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)
