"""Queue keys of the wrong type in the Redis broker: logged, moved aside, never fatal.

kombu reads all of a worker's queues with one ``BRPOP``. If any of those keys holds something
other than a list (``SET beeorm.catalog x`` by a script gone wrong, a key name clash), Redis
answers the whole command with ``WRONGTYPE`` and kombu's consumer loop dies with it: every
worker on that queue exits, and restarts into the same error. ``set_aside`` finds the keys that
are not lists and renames each to ``<key>.garbage.<ms>`` (kept for an operator to read; the
queue itself is free again, so producers can publish to it), and logs an ERROR for each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import redis

logger = logging.getLogger(__name__)

GARBAGE_SUFFIX = ".garbage."


def is_wrong_type(error: BaseException) -> bool:
    return isinstance(error, redis.ResponseError) and str(error).startswith("WRONGTYPE")


def set_aside(client: Any, keys: Iterable[str]) -> list[str]:
    """Rename every key of ``keys`` that exists and is not a list; returns the new names.

    ``keys`` are full key names (with kombu's ``global_keyprefix``, which kombu's client does
    not add to TYPE and RENAME).
    """
    moved: list[str] = []
    for key in keys:
        try:
            kind = client.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind in ("list", "none"):
                continue
            aside = f"{key}{GARBAGE_SUFFIX}{int(time.time() * 1000)}"
            client.rename(key, aside)
        except redis.RedisError as e:
            logger.error(
                "broker queue key %r holds a %s, and could not be moved aside: %s",
                key,
                "non-list value",
                e,
            )
            continue
        logger.error(
            "broker queue key %r held a %s, not a list of messages: moved aside to %r "
            "(read it, then delete it); the worker goes on",
            key,
            kind,
            aside,
        )
        moved.append(aside)
    return moved
