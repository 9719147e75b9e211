"""``engine.async_stats()``: how far behind each async group is."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.asyncflush.log import log_client, parse_id
from beeorm_celery.ddl import APPLIED_TABLE

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine


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

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def keys(self) -> list[str]:
        return list(asdict(self))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def async_stats(engine: Engine) -> dict[str, GroupStats]:
    groups = sorted(engine.async_groups)
    client = log_client(engine)
    keys = engine.keys
    pipe = client.pipeline(transaction=False)
    for group in groups:
        pipe.xlen(keys.log(group))
        pipe.xrange(keys.log(group), "-", "+", count=1)
        pipe.hlen(keys.dead(group))
        pipe.exists(keys.trigger(group))
    raw = pipe.execute()
    applied = _applied_counts(engine)
    now_ms = time.time() * 1000
    stats: dict[str, GroupStats] = {}
    for n, group in enumerate(groups):
        length, first, dead, trigger = raw[n * 4 : n * 4 + 4]
        oldest = 0.0
        if first:
            entry_id = first[0][0]
            oldest = max(0.0, (now_ms - parse_id(entry_id.decode())[0]) / 1000)
        batches, operations = applied.get(group, (0, 0))
        stats[group] = GroupStats(
            group, int(length), round(oldest, 3), int(dead), batches, operations, bool(trigger)
        )
    return stats


def _applied_counts(engine: Engine) -> dict[str, tuple[int, int]]:
    counts: dict[str, tuple[int, int]] = {}
    for pool_name in set(engine.async_groups.values()):
        try:
            with engine.mysql[pool_name].connection() as conn, conn.cursor() as cursor:
                cursor.execute(
                    "SELECT `async_group`, `applied_batches`, `applied_operations` "
                    f"FROM `{APPLIED_TABLE}`"
                )
                for group, batches, operations in cursor.fetchall():
                    if engine.async_groups.get(group) == pool_name:
                        counts[group] = (int(batches), int(operations))
        except pymysql.err.ProgrammingError:
            continue  # the table does not exist yet: nothing applied
    return counts
