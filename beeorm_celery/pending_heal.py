"""Pending markers that applied batches left behind, released (``cache_patch``'s markers).

A worker releases a batch's pending markers right after its COMMIT. A worker killed between
the two (SIGKILL, OOM, a lost Redis reply) leaves them set, and the table's marker hash keeps
its TTL as long as flushes go on. Such a row was never cached again: every read went to MySQL
(still right, but silently slower), and ``verify_cache`` skipped it as "batch queued".

A marker at or before the group's applied position (``_beeorm_async_applied``, moved in the
same transaction as the rows, of the log there now: same epoch) belongs to a batch MySQL has,
since a log numbers its batches in order: releasing it is what the killed worker would have
done. The release script checks each marker again, atomically, so a row a
producer marked meanwhile (a later batch, a later id) keeps its marker. Run by the worker at
start and now and then by its sweeping thread (``GroupWorker``).

Finding them means reading the whole marker hash of a table. While its group has a backlog,
that hash holds a marker per row queued (a million for a million-row backlog) and nearly all
of them are of batches still pending: the scan would cost seconds of CPU, in the worker and
in Redis, exactly while the workers drain that backlog (it cost the bench's drain of 1M
rows about a tenth of its speed). So a hash larger than ``scan_limit`` is left alone while
its group's log is not empty: the group is ``deferred``, and the sweeping thread tries it
again at its next sweep, until the drain has shrunk the hash or emptied the log.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from beeorm_celery.asyncflush import position
from beeorm_celery.asyncflush.log import parse_id
from beeorm_celery.asyncflush.parts import Healed
from beeorm_celery.cache_patch import RELEASE_SCRIPT

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

logger = logging.getLogger(__name__)

_CHUNK = 1000  # ids per script call
# markers read at most from a table whose group has a backlog (see the module's docstring)
SCAN_LIMIT = 20_000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _at_or_before(marker: str, applied: tuple[int, int]) -> bool:
    """Whether ``marker`` (a batch id, '+' after a provisional row) is at or before ``applied``."""
    try:
        return parse_id(marker.rstrip("+")) <= applied
    except ValueError:
        return False  # not a stream id: left to the marker hash's TTL


def heal_pending(engine: Engine, groups: Collection[str], scan_limit: int = SCAN_LIMIT) -> Healed:
    """Release the markers of batches already applied in ``groups``: how many were found (the
    script may keep some: marked again meanwhile), and the groups left for later."""
    healed = Healed()
    wanted = {g: pool for g, pool in engine.async_parts.async_groups.items() if g in groups}
    if not wanted:
        return healed
    rows = position.applied_rows(engine.async_parts.mysql, wanted)
    # Only where the position is of the log there now: a log recreated after a loss numbers its
    # batches afresh, and its markers say nothing against the old log's position.
    log_redis = engine.async_parts.log_redis()
    groups_now = [g for g in rows if rows[g].get("epoch")]
    epochs = log_redis.mget([engine.keys.epoch(g) for g in groups_now]) if groups_now else []
    current = {
        g
        for g, epoch in zip(groups_now, epochs, strict=True)
        if epoch is not None and _text(epoch) == str(rows[g]["epoch"])
    }
    for schema in engine.schemas:
        group = schema.options.async_group
        pool = schema.options.redis_cache
        row = rows.get(group) if group is not None and group in current else None
        if pool is None or row is None or not row.get("last_batch_id"):
            continue
        through = str(row["last_batch_id"])
        try:
            applied = parse_id(through)
        except ValueError:
            continue
        client = engine.redis(pool)
        pending = engine.keys.pending(schema)
        if client.hlen(pending) > scan_limit and log_redis.xlen(engine.keys.log(group)) > 0:
            healed.deferred.add(group)
            continue
        prefix = engine.keys.entity_prefix(schema)
        left: list[str] = []
        for field, mark in client.hscan_iter(pending, count=_CHUNK):
            if _at_or_before(_text(mark), applied):
                left.append(_text(field))
        for start in range(0, len(left), _CHUNK):
            ids = ",".join(left[start : start + _CHUNK])
            RELEASE_SCRIPT(client, args=[pending, prefix, through, ids])
        if left:
            logger.warning(
                "%s: released %d pending marker(s) that applied batches left behind "
                "(a worker stopped between a COMMIT and its release)",
                schema.name,
                len(left),
            )
        healed.found += len(left)
    return healed
