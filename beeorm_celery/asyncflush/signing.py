"""Does this worker's ``signing_secret`` match what the producers sign with? Asked at start.

One misconfigured worker of a fleet would otherwise only show itself through the batches it
refuses. At start it compares its secrets with the newest entry of each group's log: a batch a
producer queued recently tells which secret (or none) the producers use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import redis

from beeorm_celery.asyncflush.batch import PAYLOAD_FIELD, SIGNATURE_FIELD, verifies

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.parts import AsyncParts

logger = logging.getLogger(__name__)


def secret_mismatch(
    group: str, entry_id: str, fields: dict[bytes, bytes], secrets: Sequence[bytes]
) -> str | None:
    """Why ``secrets`` do not fit the log entry ``fields`` (None: they fit, or no payload)."""
    payload = fields.get(PAYLOAD_FIELD)
    if not isinstance(payload, bytes):
        return None
    signature = fields.get(SIGNATURE_FIELD)
    if not secrets:
        if signature is None:
            return None
        return (
            f"async group {group!r}: producers sign their batches (newest: {entry_id}) but this "
            "worker has no signing_secret, so it would accept unsigned or forged ones: set it"
        )
    if signature is None:
        return (
            f"async group {group!r}: the newest batch ({entry_id}) is not signed but this worker "
            "requires signing_secret: the producers lack it? Such batches hold their group "
            "(ERROR on every attempt) until the limit, then wait in the dead letters"
        )
    if verifies(payload, signature, secrets):
        return None
    return (
        f"async group {group!r}: this worker's signing_secret differs from the producers' (the "
        f"newest batch, {entry_id}, verifies with none of its {len(secrets)} secret(s)): fix "
        "the configuration; meanwhile their batches hold the group and nothing is lost"
    )


def check_secrets(
    client: redis.Redis, log_keys: dict[str, str], secrets: Sequence[bytes]
) -> list[str]:
    """The mismatch messages for each group's newest log entry (one Redis round trip)."""
    pipe = client.pipeline(transaction=False)
    groups = sorted(log_keys)
    for group in groups:
        pipe.xrevrange(log_keys[group], count=1)
    found: list[str] = []
    for group, newest in zip(groups, pipe.execute(), strict=True):
        for raw_id, fields in cast(list[tuple[Any, dict[bytes, bytes]]], newest or []):
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            message = secret_mismatch(group, entry_id, fields, secrets)
            if message is not None:
                found.append(message)
    return found


def warn_at_worker_start(parts: AsyncParts) -> list[str]:
    """Log a WARNING for each group whose newest batch this worker's secrets do not fit."""
    log_keys = {g: parts.keys.log(g) for g in parts.async_groups}
    try:
        found = check_secrets(parts.log_redis(), log_keys, parts.settings.secrets)
    except redis.RedisError as e:
        logger.warning("could not compare signing_secret with the producers' (Redis: %s)", e)
        return []
    for message in found:
        logger.warning(message)
    return found
