"""A fault-run producer: random inserts, edits and deletes of its own rows through flush_async.

Run as a process by the fault run (``python -m bench.chaos_producer ID SEED PLAN OUT STOP``),
and used in-process by the run itself for the rows its lock faults need. Every operation is
recorded in an ``Oracle`` in the order ``flush_async()`` returned; the oracle file is written
when the producer stops (plan exhausted, time up, or the stop file appears).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql

from beeorm_celery import Engine, Entity, UnavailableError
from bench.chaos_app import Endpoints, connect
from bench.chaos_models import GROUP_OF_TABLE, NEW_COLUMN, POISON_TABLE, RELEASES
from bench.chaos_oracle import Oracle, Poison, RowOracle, Values
from bench.chaos_unavailable import Probe, flush_until_known

# Text that has broken escaping, encodings or column types somewhere before.
_NOTES = (
    None,
    "",
    "plain",
    'O\'Brien said "hi"',
    "back\\slash\\",
    "bee \U0001f41d and \u00e9t\u00e9",
    "tab\tnewline\nend",
    "nul\x00byte",
    "  trailing spaces  ",
    "%s %(x)s ?",
    "x" * 300,
)
# Doubles whose decimal text is easy to get wrong on the way to MySQL and back.
_FLOAT_EDGES = (0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1 / 3)
_PLANT_RETRY_S = 30.0


@dataclass(frozen=True)
class ProducerPlan:
    max_flushes: int
    max_seconds: float
    max_ops_per_flush: int = 5
    pause_min_s: float = 0.02
    pause_max_s: float = 0.12
    poison_every: int = 0  # every Nth flush is a provoked dead letter; 0: never


class Producer:
    """Owns rows of every chaos table; flushes random changes and keeps the oracle."""

    def __init__(
        self, engine: Engine, producer_id: int, rng: random.Random, release: int = 1
    ) -> None:
        self.engine = engine
        self.release = release
        self.by_table = RELEASES[release]
        self.id = producer_id
        self.rng = rng
        self.oracle = Oracle(producer_id)
        self.live: dict[str, Entity] = {}  # oracle key -> the entity, as last flushed
        self._seq = 0

    # --- one flush

    def random_flush(self, max_ops: int) -> None:
        ctx = self.engine.new_context()
        touched: set[str] = set()
        pending: list[tuple[str, str, Entity | None]] = []  # (kind, key, entity)
        for _ in range(self.rng.randint(1, max_ops)):
            choice = self.rng.random()
            candidates = [k for k in self.live if k not in touched]
            if len(candidates) < 3 or choice < 0.4:
                table = self.rng.choice(sorted(self.by_table))
                entity = self._new(ctx, table)
                key = f"{table}:{entity.id}"
                pending.append(("i", key, entity))
            elif choice < 0.85:
                key = self.rng.choice(candidates)
                pending.append(("u", key, self._edit(ctx, self.live[key])))
            else:
                key = self.rng.choice(candidates)
                ctx.delete(self.live[key])
                pending.append(("d", key, None))
            touched.add(key)
        self._flush(ctx, pending)

    def edit_flush(self, key: str) -> None:
        """One UPDATE of one row (the lock faults wait for exactly this one)."""
        ctx = self.engine.new_context()
        self._flush(ctx, [("u", key, self._edit(ctx, self.live[key]))])

    def insert_flush(self, table: str, count: int) -> list[str]:
        ctx = self.engine.new_context()
        pending: list[tuple[str, str, Entity | None]] = []
        for _ in range(count):
            entity = self._new(ctx, table)
            pending.append(("i", f"{table}:{entity.id}", entity))
        self._flush(ctx, pending)
        return [key for _, key, _ in pending]

    def poison_flush(self) -> bool:
        """Flush an INSERT, then plant a row with the same unique name in MySQL behind the
        ORM's back (flush_async() itself refuses a name MySQL already holds).

        If the plant lands first, the batch must be dead-lettered (1062) and nothing else may
        be lost: the flush holds only that INSERT. If the worker applied the batch first, the
        plant is refused and the row is an ordinary insert. Returns whether it was poisoned.
        """
        schema = self.engine.schema(self.by_table[POISON_TABLE])
        planted_id = self.engine.ids.next_id(schema)  # an id the ORM will never hand out again
        name = f"poison-p{self.id}-{planted_id}"
        ctx = self.engine.new_context()
        entity = ctx.new_entity(
            self.by_table[POISON_TABLE],
            producer=self.id,
            seq=self._next_seq(),
            name=name,
            **self._release_values(),
        )
        key = f"{POISON_TABLE}:{entity.id}"
        self._flush(ctx, [("i", key, entity)])
        holder = self._plant(planted_id, name)
        if holder != planted_id:
            if holder is None:
                self.oracle.poison_skipped += 1
            return False  # the batch landed first (or nothing could be planted)
        # an ordinary insert no more: the oracle expects its dead letter instead
        group = GROUP_OF_TABLE[POISON_TABLE]
        self.oracle.ops["i"] -= 1
        del self.oracle.rows[key]
        del self.live[key]
        self.oracle.poison.append(Poison(group, POISON_TABLE, entity.id, name, planted_id))
        return True

    # --- building operations

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _release_values(self) -> dict[str, str]:
        """A release-2 producer writes its release into the new column."""
        return {NEW_COLUMN: f"r{self.release}"} if self.release > 1 else {}

    def _new(self, ctx: Any, table: str) -> Entity:
        extra = self._release_values()
        entity: Entity = ctx.new_entity(
            self.by_table[table],
            producer=self.id,
            seq=self._next_seq(),
            edits=0,
            amount=self._amount(),
            ratio=self._ratio(),
            note=self.rng.choice(_NOTES),
            **extra,
        )
        entity.name = f"p{self.id}-{table}-{entity.id}"
        return entity

    def _edit(self, ctx: Any, entity: Entity) -> Entity:
        copy: Any = ctx.edit(entity)
        copy.seq = self._next_seq()
        copy.edits += 1  # an edit applied twice or lost shows in this count
        if self.rng.random() < 0.6:
            copy.amount = self._amount()
        if self.rng.random() < 0.3:
            copy.ratio = self._ratio()
        if self.rng.random() < 0.4:
            copy.note = self.rng.choice(_NOTES)
        return copy  # type: ignore[no-any-return]

    def _amount(self) -> Decimal:
        return Decimal(self.rng.randint(-(10**9), 10**9)).scaleb(-2)

    def _ratio(self) -> float:
        if self.rng.random() < 0.1:
            return self.rng.choice(_FLOAT_EDGES)
        return self.rng.uniform(-1, 1) * 10.0 ** self.rng.randint(-300, 300)

    def _flush(self, ctx: Any, pending: list[tuple[str, str, Entity | None]]) -> None:
        # Seq numbers were taken in tracking order, which is the order of the batch's operations.
        kind, key, entity = pending[0]
        table, raw_id = key.split(":", 1)
        row = entity.__dict__ if entity is not None else self.oracle.rows[key].values
        assert row is not None
        seq = int(row["seq"])  # a delete: the row's last seq, which its audit line carries
        self._flush_async(ctx, (kind, table, int(raw_id), seq))
        self.oracle.flushes += 1
        groups = {GROUP_OF_TABLE[key.split(":", 1)[0]] for _, key, _ in pending}
        for group in groups:
            self.oracle.batches[group] = self.oracle.batches.get(group, 0) + 1
        for kind, key, entity in pending:
            self.oracle.ops[kind] += 1
            table, raw_id = key.split(":", 1)
            if kind == "i":
                assert entity is not None
                values = _values(entity)
                self.oracle.rows[key] = RowOracle(table, int(raw_id), values, [])
                self.live[key] = entity
            row = self.oracle.rows[key]
            if kind == "u":
                assert entity is not None
                row.values = _values(entity)
            if kind == "d":
                assert row.values is not None
                row.history.append(("d", int(row.values["seq"])))
                row.values = None
                del self.live[key]
            else:
                assert row.values is not None
                row.history.append((kind, int(row.values["seq"])))

    def _flush_async(self, ctx: Any, probe: Probe) -> None:
        """flush_async, again while Redis is down (see chaos_unavailable): the oracle records a
        flush only once it is known to be queued."""
        attempts = flush_until_known(self.engine, ctx.flush_async, probe)
        self.oracle.refused += attempts - 1

    def _plant(self, planted_id: int, name: str) -> int | None:
        """Insert the planted row; returns the id holding ``name`` afterwards (``planted_id``,
        or the queued entity's when its batch landed first), None if MySQL stayed down."""
        config = self.engine.mysql["default"].config
        deadline = time.monotonic() + _PLANT_RETRY_S
        while True:
            try:
                conn = pymysql.connect(
                    host=config.host,
                    port=config.port,
                    user=config.user,
                    password=config.password,
                    database=config.database,
                    autocommit=True,
                    connect_timeout=3,
                    # After the rolling deploy the table has a NOT NULL column this INSERT does
                    # not name: let MySQL give it its implicit default instead of refusing.
                    init_command="SET SESSION sql_mode = ''",
                )
                try:
                    with conn.cursor() as cursor:
                        # the name (or a retried plant's id) may be taken: see who has it
                        with contextlib.suppress(pymysql.err.IntegrityError):
                            cursor.execute(
                                f"INSERT INTO `{POISON_TABLE}` (`id`, `producer`, `seq`, `edits`, "
                                "`name`, `amount`, `ratio`, `note`) "
                                "VALUES (%s, %s, 0, 0, %s, 0, 0, 'planted')",
                                (planted_id, -self.id, name),
                            )
                        cursor.execute(
                            f"SELECT `id` FROM `{POISON_TABLE}` WHERE `name` = %s", (name,)
                        )
                        row = cursor.fetchone()
                finally:
                    conn.close()
                return int(row[0]) if row else None
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.5)  # MariaDB is being restarted by the run


def _values(entity: Entity) -> Values:
    state = entity.__dict__
    return {
        "producer": state["producer"],
        "seq": state["seq"],
        "edits": state["edits"],
        "name": state["name"],
        "amount": format(state["amount"], "f"),
        "ratio": state["ratio"],
        "note": state["note"],
    }


def run(producer: Producer, plan: ProducerPlan, stop_path: Path | None) -> None:
    deadline = time.monotonic() + plan.max_seconds
    for n in range(1, plan.max_flushes + 1):
        if time.monotonic() > deadline or (stop_path is not None and stop_path.exists()):
            return
        try:
            if plan.poison_every and n % plan.poison_every == 0:
                producer.poison_flush()
            else:
                producer.random_flush(plan.max_ops_per_flush)
        except UnavailableError as e:
            if e.written is not False:
                raise
            producer.oracle.refused += 1  # no id while Redis is down: nothing was flushed
            time.sleep(0.2)
        time.sleep(producer.rng.uniform(plan.pause_min_s, plan.pause_max_s))


def main(argv: list[str]) -> int:
    producer_id, seed, plan_json, out, stop = argv
    plan = ProducerPlan(**json.loads(plan_json))
    endpoints = Endpoints.from_env(dict(os.environ))
    engine, _app = connect(endpoints, sweep=False)
    producer = Producer(engine, int(producer_id), random.Random(int(seed)), endpoints.release)
    try:
        run(producer, plan, Path(stop))
    except Exception:
        # The oracle so far stays exact only if the failed flush queued nothing; say so loudly.
        producer.oracle.errors.append(traceback.format_exc())
    finally:
        producer.oracle.save(Path(out))
        engine.close()
    return 1 if producer.oracle.errors else 0


def plan_json(plan: ProducerPlan) -> str:
    return json.dumps(asdict(plan))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
