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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from beeorm_celery.asyncflush.batch import SCHEMA_AHEAD
from beeorm_celery.asyncflush.mysql_errors import ErrorClass, classify, error_code, error_message
from beeorm_celery.errors import SchemaLagError, SignatureError

if TYPE_CHECKING:
    import redis

    from beeorm_celery.asyncflush.log import GroupLog, HeadFailure
    from beeorm_celery.asyncflush.settings import AsyncFlushSettings

logger = logging.getLogger(__name__)

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


def hold_for(error: BaseException) -> Hold | None:
    """The hold a failed head batch is under (None: no outside fix expected)."""
    if isinstance(error, SignatureError):
        return Hold(HoldKind.SIGNATURE, "signature", str(error))
    if isinstance(error, SchemaLagError):
        return Hold(HoldKind.SCHEMA_LAG, error.cause, str(error))
    if classify(error) is ErrorClass.SCHEMA_LAG:
        message = f"{error_message(error)} ({SCHEMA_AHEAD})"
        return Hold(
            HoldKind.SCHEMA_LAG, f"mysql {error_code(error)}: {error_message(error)}", message
        )
    return None


def wait_or_give_up(
    group: str,
    batch_id: str,
    hold: Hold,
    error: BaseException,
    settings: AsyncFlushSettings,
    log: GroupLog,
    expired: ExpiredCauses,
    wait: Callable[[], object],
) -> HeadFailure:
    """Record one more failed attempt of the head batch ``batch_id``; while it keeps waiting,
    say so (WARNING for schema lag, ERROR for a signature) and call ``wait`` (which raises the
    temporary error). Returns the failure record once the batch is to be dead-lettered."""
    failure = log.record_failure(batch_id, error_code(error), hold.message)
    waited = failure.last_failed_at - failure.first_failed_at
    limit = hold.limit_s(settings)
    cause_expired = hold.cause in expired
    level = logging.ERROR if hold.kind is HoldKind.SIGNATURE else logging.WARNING
    if keeps_waiting(waited, limit, cause_expired):
        logger.log(
            level,
            "async group %r: batch %s holds its group (attempt %d, %.0fs of %.0fs): %s",
            group,
            batch_id,
            failure.attempts,
            waited,
            limit,
            hold.message,
        )
        wait()
        raise AssertionError("wait() raises the temporary error")
    if not cause_expired:
        expired.add(hold.cause)
    logger.error(
        "async group %r: batch %s dead-lettered (replayable) after %s: %s",
        group,
        batch_id,
        "its cause already waited out the limit" if cause_expired else f"{waited:.0f}s",
        hold.message,
    )
    return failure
