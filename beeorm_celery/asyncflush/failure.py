"""What ``flush_async()`` raises when Redis fails, saying what was queued."""

from __future__ import annotations

import redis

from beeorm_celery.errors import CacheUnavailableError
from beeorm_celery.failures import redis_error


def log_write_failed(error: redis.RedisError, groups: list[str]) -> CacheUnavailableError:
    """The one script that queues the batches failed: it runs whole or not at all."""
    return redis_error(
        error,
        f"queuing batches of group(s) {', '.join(groups)}",
        False,
        "nothing was queued or cached: the flush can be repeated",
        lost=(
            None,
            "the batches may or may not be queued (the link broke after sending): look at the "
            "rows before repeating the flush",
        ),
    )


def cache_write_failed(error: redis.RedisError, pools: list[str]) -> CacheUnavailableError:
    return redis_error(
        error,
        f"updating the caches in Redis pool(s) {', '.join(pools)} after queuing",
        True,
        "the batches are queued and will be applied, but those caches were not updated: they "
        "may serve the old rows until the entries are dropped (beeorm-celery cache clear)",
    )
