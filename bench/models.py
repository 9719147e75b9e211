"""The bench's entities. Producers and the bench worker both import this module.

Every entity has the same five data columns (a small product-like row), so the applied
throughput and the raw and naive baselines write rows of one shape into tables of one layout.
``ROWS`` holds 64 entities, one per async group, for the runs over 1, 4, 16 and 64 groups.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from beeorm_celery import Entity, Field

MAX_GROUPS = 64
LATENCY_GROUP = "latency"
READS_GROUP = "reads"


class RowFields(Entity, table="bench_row_fields"):
    """The columns every bench entity shares; never registered itself."""

    name: str = Field(max_length=100, required=True)
    price: Decimal = Field(precision=10, scale=2, default=Decimal("0.00"))
    stock: int = 0
    active: bool = True
    created_at: datetime | None = None


def _row_entity(n: int) -> type[RowFields]:
    # Generated rather than written out 16 times; the class keywords reach Entity's
    # __init_subclass__ through type()'s keyword arguments.
    return type(
        f"Row{n:02d}",
        (RowFields,),
        {"__module__": __name__},
        table=f"bench_row_{n:02d}",
        redis_cache=True,
        async_group=group_name(n),
    )


def group_name(n: int) -> str:
    return f"g{n:02d}"


ROWS: tuple[type[RowFields], ...] = tuple(_row_entity(n) for n in range(MAX_GROUPS))


class LatencyRow(RowFields, table="bench_latency", redis_cache=True, async_group=LATENCY_GROUP):
    """Flushed one and ten at a time, by flush() and flush_async(), while a worker applies."""


UNIQUE_GROUP = "unique"


class UniqueRow(RowFields, table="bench_unique", redis_cache=True, async_group=UNIQUE_GROUP):
    """Flushed 100 at a time with a unique name: the claim at flush_async (bench/unique.py)."""

    name: str = Field(max_length=100, required=True, unique="name")


class LocalItem(
    RowFields, table="bench_read_local", redis_cache=True, local_cache=True, async_group=READS_GROUP
):
    """Read from the process's local cache."""


class RedisItem(RowFields, table="bench_read_redis", redis_cache=True, async_group=READS_GROUP):
    """Read from Redis (no local cache)."""


class PlainItem(RowFields, table="bench_read_mysql", async_group=READS_GROUP):
    """No cache at all: every read is a SELECT."""


ENTITIES: tuple[type[Entity], ...] = (
    *ROWS,
    LatencyRow,
    UniqueRow,
    LocalItem,
    RedisItem,
    PlainItem,
)

# Tables the baselines write, created LIKE a row table so the layout is the same.
RAW_TABLE = "bench_raw"
NAIVE_TABLE = "bench_naive"
PEER_TABLE = "bench_peer"
COLUMNS = ("id", "name", "price", "stock", "active", "created_at")
_EPOCH = datetime(2026, 1, 1)


def row_values(i: int) -> dict[str, Any]:
    """The field values of the i-th generated row (deterministic, varied enough to be real)."""
    return {
        "name": f"bench row {i}",
        "price": Decimal(i % 100_000) / 100,
        "stock": i % 1_000,
        "active": i % 3 != 0,
        "created_at": _EPOCH + timedelta(seconds=i),
    }


def sql_row(entity_id: int, i: int) -> tuple[Any, ...]:
    """The same row as PyMySQL parameters, for the raw and naive baselines."""
    v = row_values(i)
    return (entity_id, v["name"], v["price"], v["stock"], int(v["active"]), v["created_at"])
