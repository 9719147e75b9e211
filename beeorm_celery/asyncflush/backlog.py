"""Backpressure: ``AsyncFlushSettings(max_pending_batches=...)`` bounds each group's log.

The flush script checks every group's XLEN against its limit before it writes anything (in the
same round trip), and refuses the whole flush with an error reply naming the first group over
it; ``flush_async()`` turns that into ``BacklogFullError``. So a long MySQL outage fills a
bounded amount of Redis memory, and the caller learns it at once instead of Redis running out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis

from beeorm_celery.errors import BacklogFullError

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.batch import Batch
    from beeorm_celery.asyncflush.settings import AsyncFlushSettings

_REPLY = "BACKLOG"


def limits_arg(settings: AsyncFlushSettings, batches: Sequence[Batch]) -> str:
    """The script's limits argument: one number per batch's group (0 = none), '' when none."""
    if settings.max_pending_batches is None:
        return ""
    return ",".join(str(settings.pending_limit(b.group) or 0) for b in batches)


def full_error(
    error: redis.RedisError, settings: AsyncFlushSettings, batches: Sequence[Batch]
) -> BacklogFullError | None:
    """The ``BacklogFullError`` for the script's refusal, or None for any other error."""
    parts = str(error).split()
    if not isinstance(error, redis.ResponseError) or len(parts) != 3 or parts[0] != _REPLY:
        return None
    group = batches[int(parts[1])].group
    pending = int(parts[2])
    limit = settings.pending_limit(group) or 0
    return BacklogFullError(
        f"async group {group!r} already holds {pending} pending batches "
        f"(max_pending_batches={limit}): nothing was queued or cached. The workers are behind "
        "(is MySQL down or slow? see async_stats()); try again later",
        group=group,
        pending=pending,
        limit=limit,
    )
