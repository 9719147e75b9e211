"""The fault run's entities, and the audit triggers that record every row change MySQL applies.

Three tables in three async groups, with different cache setups. Each row belongs to one
producer (``producer``) and carries the producer's sequence number of its last write (``seq``)
and how many edits it has had (``edits``).

The audit: an AFTER INSERT / UPDATE / DELETE trigger on each table appends (table, id, kind,
producer, seq, edits) to ``chaos_audit``. A trigger runs inside the applying transaction, so a
rolled-back attempt leaves nothing and a committed one leaves exactly one line per row change.
That makes "applied twice" and "applied out of order" visible even where the final state would
hide them (an UPDATE that sets the same values twice).
"""

from __future__ import annotations

from decimal import Decimal

from beeorm_celery import Entity, Field


class ChaosRow(Entity, table="chaos_row", async_group=False):
    """The columns every fault-run table has; never registered itself (a base of the tables)."""

    producer: int = 0
    seq: int = 0
    edits: int = 0
    name: str = Field(max_length=64, required=True, unique="name")
    amount: Decimal = Field(precision=12, scale=2, default=Decimal("0.00"))
    ratio: float = 0.0
    note: str | None = None


class ChaosA(ChaosRow, redis_cache=True, async_group="chaos_a"):
    """Redis cache, a unique index (the provoked duplicate-key dead letters use it)."""


class ChaosB(ChaosRow, redis_cache=True, local_cache=True, async_group="chaos_b"):
    """Redis and local cache (local caches are invalidated through pub/sub)."""


class ChaosC(ChaosRow, async_group="chaos_c"):
    """No cache: every read goes to MySQL."""


ENTITIES: tuple[type[Entity], ...] = (ChaosA, ChaosB, ChaosC)
BY_TABLE: dict[str, type[Entity]] = {"chaos_a": ChaosA, "chaos_b": ChaosB, "chaos_c": ChaosC}


# Release 2, rolled out in the middle of the run (bench/chaos_deploy.py): the same tables with one
# column more. Its producer sets it to "r2"; old-release inserts applied after the migration get
# the default "r1" from the upgraded workers; rows older than the migration hold "" (what MySQL
# gives existing rows of a new NOT NULL text column).
NEW_COLUMN = "tier"


class ChaosRow2(ChaosRow, table="chaos_row", async_group=False):
    """Release 2's columns: release 1's and ``tier`` (a base too, never registered)."""

    tier: str = Field(max_length=8, default="r1")


class ChaosA2(ChaosRow2, table="chaos_a", redis_cache=True, async_group="chaos_a"):
    pass


class ChaosB2(
    ChaosRow2, table="chaos_b", redis_cache=True, local_cache=True, async_group="chaos_b"
):
    pass


class ChaosC2(ChaosRow2, table="chaos_c", async_group="chaos_c"):
    pass


RELEASES: dict[int, dict[str, type[Entity]]] = {
    1: BY_TABLE,
    2: {"chaos_a": ChaosA2, "chaos_b": ChaosB2, "chaos_c": ChaosC2},
}
GROUP_OF_TABLE = {"chaos_a": "chaos_a", "chaos_b": "chaos_b", "chaos_c": "chaos_c"}
GROUPS = tuple(sorted(set(GROUP_OF_TABLE.values())))
# The table whose unique index the provoked dead letters break.
POISON_TABLE = "chaos_a"

AUDIT_TABLE = "chaos_audit"
BALLAST_TABLE = "chaos_ballast"  # rows a lock holder writes so InnoDB picks the worker as victim

_AUDIT_SQL = f"""
CREATE TABLE IF NOT EXISTS `{AUDIT_TABLE}` (
  `n` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `tbl` VARCHAR(32) NOT NULL,
  `row_id` BIGINT UNSIGNED NOT NULL,
  `kind` CHAR(1) NOT NULL,
  `producer` BIGINT NOT NULL,
  `seq` BIGINT NOT NULL,
  `edits` BIGINT NOT NULL,
  PRIMARY KEY (`n`),
  KEY `row` (`tbl`, `row_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

_BALLAST_SQL = f"""
CREATE TABLE IF NOT EXISTS `{BALLAST_TABLE}` (
  `n` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `filler` VARCHAR(100) NOT NULL,
  PRIMARY KEY (`n`)
) ENGINE=InnoDB
"""


def _trigger_sql(table: str, event: str, kind: str, row: str) -> str:
    return (
        f"CREATE TRIGGER `{table}_audit_{kind}` AFTER {event} ON `{table}` FOR EACH ROW "
        f"INSERT INTO `{AUDIT_TABLE}` (`tbl`, `row_id`, `kind`, `producer`, `seq`, `edits`) "
        f"VALUES ('{table}', {row}.`id`, '{kind}', {row}.`producer`, {row}.`seq`, {row}.`edits`)"
    )


def audit_sql() -> list[str]:
    """The statements that create the audit and ballast tables and the triggers."""
    statements = [_AUDIT_SQL, _BALLAST_SQL]
    for table in BY_TABLE:
        statements.append(_trigger_sql(table, "INSERT", "i", "NEW"))
        statements.append(_trigger_sql(table, "UPDATE", "u", "NEW"))
        statements.append(_trigger_sql(table, "DELETE", "d", "OLD"))
    return statements
