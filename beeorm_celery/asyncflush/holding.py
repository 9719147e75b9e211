"""How long a head batch waits for a fix that comes from outside: a deploy, a migration, a secret.

A batch naming a column this worker or the table lacks (schema lag), or signed with a secret
this worker does not hold, is not wrong: the upgrade, ``update_schema()`` or the configuration
fix is on its way. So the batch holds its group like a temporary error, up to a configured
limit, and is then dead-lettered replayably. Once one head batch has waited the whole limit for
a cause, the next batches with that cause go to the dead letters at once: a group stalls for one
limit per cause, not one per batch. The causes whose wait ran out are kept in Redis, shared by
every worker of the group, for a day after the last one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

    from beeorm_celery.asyncflush.settings import AsyncFlushSettings

EXPIRED_CAUSES_TTL_S = 24 * 3600


class HoldKind(StrEnum):
    SCHEMA_LAG = "schema_lag"
    SIGNATURE = "signature"


@dataclass(frozen=True)
class Hold:
    """Why the head batch cannot be applied yet: ``cause`` is the same for every batch it hits."""

    kind: HoldKind
    cause: str
    message: str

    def limit_s(self, settings: AsyncFlushSettings) -> float:
        if self.kind is HoldKind.SIGNATURE:
            return settings.bad_signature_dead_letter_after_s
        return settings.schema_lag_dead_letter_after_s


def keeps_waiting(waited_s: float, limit_s: float, cause_expired: bool) -> bool:
    """Whether a head batch that has waited ``waited_s`` keeps holding its group."""
    return not cause_expired and waited_s < limit_s


class ExpiredCauses:
    """The causes of one group whose wait ran out (a Redis hash: cause -> when)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    def __contains__(self, cause: object) -> bool:
        return isinstance(cause, str) and bool(self.client.hexists(self.key, cause))

    def add(self, cause: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key, cause, repr(time.time()))
        pipe.expire(self.key, EXPIRED_CAUSES_TTL_S)
        pipe.execute()
