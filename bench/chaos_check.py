"""After the drain: compare MySQL, its audit, the caches and the dead letters with the oracles.

What counts as what:

- lost: a change the oracle expects that MySQL never applied (a missing audit line), or a
  batch of a group that never landed;
- doubled: a change applied more often than it was flushed (an extra audit line), or more
  batches counted in ``_beeorm_async_applied`` than were flushed;
- wrong state: a final row that differs from the oracle's (missing, not deleted, other values,
  or made by nobody);
- out of order: a row whose changes landed in another order than flushed, or two changes of
  one producer in one group that landed the wrong way round;
- dead letters: the ones the run provoked (a planted duplicate key, a garbage log entry) must
  each be there once; any other is unexpected;
- after the rolling deploy: every row of the release-2 producer holds "r2" in the new column,
  no other row does (old-release inserts applied after the migration hold the default "r1").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beeorm_celery import Engine
from beeorm_celery.asyncflush.position import APPLIED_TABLE
from bench.chaos_models import (
    AUDIT_TABLE,
    BY_TABLE,
    GROUP_OF_TABLE,
    GROUPS,
    NEW_COLUMN,
    POISON_TABLE,
    RELEASES,
)
from bench.chaos_oracle import Oracle, RowOracle, Values

if TYPE_CHECKING:
    from bench.chaos_faults import FaultLog

_DETAILS_PER_KIND = 5
_COLUMNS = ("producer", "seq", "edits", "name", "amount", "ratio", "note")

# What the worker logs say happened, by pattern (Celery's wording, then Dramatiq's).
_LOG_PATTERNS = {
    "task retried": re.compile(r"Retry in \d|: retry \d+ in \d"),
    "apply ignored (not a group)": re.compile(r"ignoring beeorm_celery\.apply"),
    "unregistered task refused": re.compile(
        r"Received unregistered task|Received message for undefined actor"
    ),
    "undecodable message dropped": re.compile(r"Can't decode message body|decode error", re.I),
    "unknown message dropped": re.compile(r"Received and deleted unknown message"),
    "consumer restarted": re.compile(r"Connection to broker lost|Unrecoverable error"),
    "pool process SIGKILLed": re.compile(r"exited with 'signal 9"),
    "queue garbage set aside": re.compile(
        r"dropped an undeliverable item|held an item that is not a message"
    ),
    "batch dead-lettered": re.compile(r"dead-lettered"),
    "batch waited for a deploy": re.compile(r"schema ahead"),
}
_TEMPORARY_CODE = re.compile(r"temporary error \((\w+):")
_UNEXPECTED = re.compile(r"raised unexpected: (\w+)")


@dataclass
class Findings:
    rows_checked: int = 0
    changes_checked: int = 0
    lost: int = 0
    doubled: int = 0
    out_of_order: int = 0
    wrong_state: int = 0
    cache_mismatches: int = 0
    cache_diverged: int = 0  # Redis rows differing from MySQL (verify_cache) before any read
    batches_expected: dict[str, int] = field(default_factory=dict)
    batches_applied: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # log entries left after the drain
    log_losses: dict[str, int] = field(default_factory=dict)  # logs found lost (Redis lost data)
    dead_letters_provoked: int = 0  # expected and found, once each
    dead_letters_missing: int = 0  # provoked but not found
    dead_letters_unexpected: int = 0
    poison_applied: int = 0  # a provoked dead letter's INSERT that landed anyway
    deploy_new_rows: int = 0  # rows the release-2 producer inserted, holding its new column
    deploy_default_rows: int = 0  # old-release inserts applied after the migration: the default
    worker_errors: Counter[str] = field(default_factory=Counter)  # MySQL code -> times
    worker_failures: Counter[str] = field(default_factory=Counter)  # exception -> tasks failed
    worker_log: Counter[str] = field(default_factory=Counter)
    details: dict[str, list[str]] = field(default_factory=dict)  # kind -> the first few

    def problem(self, kind: str, text: str) -> None:
        shown = self.details.setdefault(kind, [])
        if len(shown) < _DETAILS_PER_KIND:
            shown.append(text if len(text) <= 240 else text[:237] + "...")

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.doubled
            or self.out_of_order
            or self.wrong_state
            or self.cache_mismatches
            or self.cache_diverged
            or self.dead_letters_missing
            or self.dead_letters_unexpected
            or self.poison_applied
            or any(self.pending.values())
            or any(self.log_losses.values())
            or self.worker_failures
        )


def _same(expected: Values, actual: Values) -> bool:
    for column in _COLUMNS:
        a, b = expected[column], actual[column]
        if column == "amount":
            if Decimal(str(a)) != Decimal(str(b)):
                return False
        elif a != b:
            return False
    return True


def _entity_values(entity: Any) -> Values:
    state = entity.__dict__
    return {c: state[c] for c in _COLUMNS}


class Checker:
    def __init__(
        self,
        engine: Engine,
        reader: Engine,
        oracles: list[Oracle],
        faults: FaultLog,
        new_release_producer: int | None = None,
    ) -> None:
        self.engine = engine
        self.reader = reader  # a fresh engine: its local caches hold nothing from the run
        self.new_release_producer = new_release_producer  # the rolling deploy's producer
        self.oracles = oracles
        self.faults = faults
        self.findings = Findings()
        self.rows: dict[str, RowOracle] = {}
        for oracle in oracles:
            self.rows.update(oracle.rows)

    def _entity(self, table: str) -> Any:
        """The reader's entity class of ``table`` (release 2 after the rolling deploy)."""
        release = 2 if self.new_release_producer is not None else 1
        return RELEASES[release][table]

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        # The reader's pool: the run's own engine still holds connections from before the
        # last MariaDB restart.
        with self.reader.mysql["default"].connection() as conn, conn.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())

    def run(self, worker_logs: list[Path]) -> Findings:
        self._pending()
        self._log_losses()
        self._state()
        self._audit()
        self._batches()
        self._dead_letters()
        self._converged()  # before _caches: its reads would refill what is missing
        self._caches()
        self._deploy()
        self._worker_logs(worker_logs)
        return self.findings

    def _deploy(self) -> None:
        """The new column after the rolling deploy: "r2" exactly on the new producer's rows."""
        new = self.new_release_producer
        if new is None:
            return
        f = self.findings
        for table in BY_TABLE:
            for row_id, producer, tier in self._query(
                f"SELECT `id`, `producer`, `{NEW_COLUMN}` FROM `{table}`"
            ):
                if producer == new and tier == "r2":
                    f.deploy_new_rows += 1
                elif producer != new and tier in ("", "r1"):
                    f.deploy_default_rows += tier == "r1"
                else:
                    f.wrong_state += 1
                    f.problem(
                        "rolling deploy",
                        f"{table}:{row_id} of producer {producer} holds {NEW_COLUMN}={tier!r}",
                    )

    def _pending(self) -> None:
        client = self.engine.redis(self.engine.async_redis_pool)
        for group in GROUPS:
            key = self.engine.keys.log(group)
            pending = self.findings.pending[group] = int(client.xlen(key))
            if pending:
                first: Any = client.xrange(key, "-", "+", count=1)
                head = first[0][0].decode()
                what = self.faults.garbage_what.get(f"{group}/{head}")
                at = f"garbage entry {head} ({what})" if what else f"batch {head}"
                self.findings.problem(
                    "left in the logs", f"group {group}: {pending} batches wait behind {at}"
                )

    def _log_losses(self) -> None:
        """A lost log means Redis lost acknowledged batches: the losses found below are those."""
        for group, stats in self.reader.async_stats().items():
            lost = self.findings.log_losses[group] = int(stats["log_losses"])
            if lost:
                at = ", ".join(str(n) for n in self.faults.redis_pending_at_kill) or "none"
                self.findings.problem(
                    "log losses",
                    f"group {group}: its log was lost {lost} time(s); batches pending at each "
                    f"Redis kill: {at}",
                )

    def _state(self) -> None:
        """Final rows against the oracle (the audit, below, says which change went missing)."""
        f = self.findings
        actual: dict[str, Values] = {}
        for table in BY_TABLE:
            for row in self._query(f"SELECT `id`, {', '.join(_COLUMNS)} FROM `{table}`"):
                actual[f"{table}:{row[0]}"] = dict(zip(_COLUMNS, row[1:], strict=True))
        for key, expected in self.rows.items():
            f.rows_checked += 1
            found = actual.pop(key, None)
            if expected.values is None and found is None:
                continue
            if expected.values is None or found is None or not _same(expected.values, found):
                f.wrong_state += 1
                f.problem("final state", f"{key}: MySQL has {found}, the oracle {expected.values}")
        poison = {f"{p.table}:{p.id}" for o in self.oracles for p in o.poison}
        for key, values in actual.items():
            if values["producer"] < 0:
                continue  # planted behind the ORM's back, to provoke a dead letter
            if key in poison:
                f.poison_applied += 1
                f.problem("final state", f"{key}: a dead-lettered INSERT is in MySQL")
            else:
                f.wrong_state += 1
                f.problem("final state", f"{key}: in MySQL, no producer flushed it: {values}")

    def _audit(self) -> None:
        f = self.findings
        history: dict[str, list[tuple[str, int]]] = {}
        last_seq: dict[tuple[int, str], int] = {}
        rows = self._query(
            f"SELECT `tbl`, `row_id`, `kind`, `producer`, `seq` FROM `{AUDIT_TABLE}` ORDER BY `n`"
        )
        for table, row_id, kind, producer, seq in rows:
            if producer < 0:
                continue  # a row planted behind the ORM's back
            history.setdefault(f"{table}:{row_id}", []).append((kind, int(seq)))
            if kind == "d":
                continue  # a DELETE carries the seq of the row's last write, not its own
            stream = (int(producer), GROUP_OF_TABLE[table])
            if seq <= last_seq.get(stream, 0):
                f.out_of_order += 1
                f.problem(
                    "changes",
                    f"producer {producer}, group {stream[1]}: seq {seq} landed after "
                    f"{last_seq[stream]}",
                )
            last_seq[stream] = max(seq, last_seq.get(stream, 0))
        for key, expected in self.rows.items():
            actual = history.pop(key, [])
            f.changes_checked += len(expected.history)
            if actual == expected.history:
                continue
            want, got = Counter(expected.history), Counter(actual)
            missing, extra = want - got, got - want
            f.lost += sum(missing.values())
            f.doubled += sum(extra.values())
            if not missing and not extra:
                f.out_of_order += 1
            f.problem("changes", f"{key}: changes applied {actual}, flushed {expected.history}")
        for key, actual in history.items():
            f.doubled += len(actual)
            f.problem("changes", f"{key}: changes applied {actual}, no producer flushed them")

    def _batches(self) -> None:
        f = self.findings
        for group in GROUPS:
            flushed = sum(o.batches.get(group, 0) for o in self.oracles)
            poisoned = sum(1 for o in self.oracles for p in o.poison if p.group == group)
            f.batches_expected[group] = flushed - poisoned
        for group, applied in self._query(
            f"SELECT `async_group`, `applied_batches` FROM `{APPLIED_TABLE}`"
        ):
            f.batches_applied[str(group)] = int(applied)
        for group, expected in f.batches_expected.items():
            applied = f.batches_applied.get(group, 0)
            if applied > expected:
                f.doubled += applied - expected
                f.problem(
                    "batches", f"group {group}: {applied} batches applied, {expected} flushed"
                )
            elif applied < expected:
                f.lost += expected - applied
                f.problem(
                    "batches", f"group {group}: {applied} batches applied, {expected} flushed"
                )

    def _dead_letters(self) -> None:
        f = self.findings
        poison_by_name = {p.name: p for o in self.oracles for p in o.poison}
        garbage = {
            f"{g}/{entry}"
            for g, entries in self.faults.garbage_entries.items()
            for entry in entries
        }
        seen: set[str] = set()
        for dead in self.engine.dead_letters.list(limit=1_000_000):
            # unreadable bytes are remove-only (malformed); schema lag and refused values are
            # replayable dead letters: both are the ones planted
            if dead.id in garbage:
                seen.add(dead.id)
                continue
            # Quoted: poison-p1-116 is a prefix of poison-p1-1168.
            names = [n for n in poison_by_name if any(f"'{n}'" in sql for sql in dead.sql)]
            if dead.error_code == 1062 and len(names) == 1 and len(dead.sql) == 1:
                seen.add(f"poison:{names[0]}")
                continue
            f.dead_letters_unexpected += 1
            f.problem(
                "dead letters",
                f"unexpected dead letter {dead.id}: {dead.error_code} {dead.error[:200]}",
            )
        expected = garbage | {f"poison:{name}" for name in poison_by_name}
        f.dead_letters_provoked = len(expected & seen)
        f.dead_letters_missing = len(expected - seen)
        for missing in sorted(expected - seen):
            what = self.faults.garbage_what.get(missing, "a planted duplicate key")
            f.problem("dead letters", f"provoked dead letter {missing} ({what}) was never made")

    def _converged(self) -> None:
        """Law 10: once drained, every cached row equals its MySQL row (verify_cache)."""
        f = self.findings
        for table in BY_TABLE:
            for mismatch in self.reader.verify_cache(self._entity(table)):
                f.cache_diverged += 1
                f.problem("convergence", str(mismatch))

    def _caches(self) -> None:
        """Read every row through the public API of a fresh engine: caches first, then MySQL."""
        f = self.findings
        by_table: dict[str, list[RowOracle]] = {}
        for row in self.rows.values():
            by_table.setdefault(row.table, []).append(row)
        ctx = self.reader.new_context()
        for table, rows in by_table.items():
            entities = ctx.get_by_ids(self._entity(table), [r.id for r in rows])
            for row, entity in zip(rows, entities, strict=True):
                if row.values is None and entity is None:
                    continue
                if (
                    row.values is None
                    or entity is None
                    or not _same(row.values, _entity_values(entity))
                ):
                    f.cache_mismatches += 1
                    f.problem(
                        "caches",
                        f"{row.key}: read {entity and _entity_values(entity)}, want {row.values}",
                    )
        for oracle in self.oracles:
            for poison in oracle.poison:
                entity = ctx.get_by_id(self._entity(POISON_TABLE), poison.id)
                by_name = ctx.get_by_unique_index(self._entity(POISON_TABLE), "name", poison.name)
                if entity is not None or by_name is None or by_name.id != poison.planted_id:
                    f.cache_mismatches += 1
                    f.problem(
                        "caches",
                        f"dead-lettered insert {poison.table}:{poison.id} still reads as "
                        f"{entity and _entity_values(entity)}; its name reads as "
                        f"{by_name and by_name.id} (MySQL: {poison.planted_id})",
                    )

    def _worker_logs(self, paths: list[Path]) -> None:
        f = self.findings
        for path in paths:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            f.worker_errors.update(_TEMPORARY_CODE.findall(text))
            f.worker_failures.update(_UNEXPECTED.findall(text))
            for what, pattern in _LOG_PATTERNS.items():
                n = len(pattern.findall(text))
                if n:
                    f.worker_log[what] += n
