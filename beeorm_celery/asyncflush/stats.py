"""``engine.async_stats()``: how far behind each async group is, and who will apply it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from beeorm_celery.asyncflush import position
from beeorm_celery.asyncflush.log import parse_id

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.parts import AsyncParts

# What ``GroupStats.wake`` says.
WAKE_IDLE = "idle"  # nothing pending, nobody on it
WAKE_ON_ITS_WAY = "on its way"  # the trigger flag is set: a task is queued or a worker applies it
WAKE_SWEEP = "waiting for a sweep"  # pending, no flag: the next worker sweep wakes it


@dataclass(frozen=True)
class GroupStats:
    """One group's figures; also readable as a mapping (``stats["pending"]``)."""

    group: str
    pending: int  # batches queued and not applied
    oldest_pending_seconds: float  # age of the oldest of them (0 when none)
    dead_letters: int
    applied: int  # batches applied since the group's row was created
    applied_operations: int
    trigger_set: bool  # a task is on its way or running
    # WAKE_ON_ITS_WAY, WAKE_SWEEP (pending, and only a worker's periodic sweep will wake it:
    # queued by a process without an adapter installed, or its wake-up failed), or WAKE_IDLE
    wake: str = WAKE_IDLE
    log_losses: int = 0  # times a worker found this group's log lost (kept in MySQL)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def keys(self) -> list[str]:
        return list(asdict(self))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def async_stats(parts: AsyncParts) -> dict[str, GroupStats]:
    groups = sorted(parts.async_groups)
    keys = parts.keys
    pipe = parts.log_redis().pipeline(transaction=False)
    for group in groups:
        pipe.xlen(keys.log(group))
        pipe.xrange(keys.log(group), "-", "+", count=1)
        pipe.hlen(keys.dead(group))
        pipe.exists(keys.trigger(group))
    raw = pipe.execute()
    rows = position.applied_rows(parts.mysql, parts.async_groups)
    now_ms = time.time() * 1000
    stats: dict[str, GroupStats] = {}
    for n, group in enumerate(groups):
        length, first, dead, trigger = raw[n * 4 : n * 4 + 4]
        oldest = 0.0
        if first:
            entry_id = first[0][0]
            oldest = max(0.0, (now_ms - parse_id(entry_id.decode())[0]) / 1000)
        row = rows.get(group, {})
        batches = int(row.get("applied_batches") or 0)
        operations = int(row.get("applied_operations") or 0)
        wake = WAKE_ON_ITS_WAY if trigger else WAKE_SWEEP if int(length) else WAKE_IDLE
        stats[group] = GroupStats(
            group,
            int(length),
            round(oldest, 3),
            int(dead),
            batches,
            operations,
            bool(trigger),
            wake,
            log_losses=int(row.get("log_losses") or 0),
        )
    return stats
