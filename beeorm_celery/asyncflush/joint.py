"""``joint_step``: one MySQL transaction that applies the head batches of several groups.

A rotation (``rotation.py``) visits many groups of one MySQL pool in turn; with many groups
each visit finds a batch or two, and one transaction per group made the fixed cost of a
transaction (lock, position, COMMIT and its log flush, two Redis round trips) most of the cost
per row. A joint step applies the due groups of one pool together:

1. lock the groups' rows in the position table (``FOR UPDATE SKIP LOCKED``), as many as the
   transaction can apply by what the last joint step saw of their logs (``_lock_enough``);
2. read every locked group's log (epoch and first entries) in one Redis pipeline;
3. run each group's statements and move each group's position, then one COMMIT;
4. only then trim each group's log, in one Redis pipeline.

Every group's position moves in the same transaction as its rows (law 3) and each group's
batches run in log order, so order and exactly-once hold per group as in a single step. Only
the plain case is handled here; a group whose row is held elsewhere or does not exist yet,
whose log is new or was recreated, holds batches applied before, starts with a batch that does
not decode, or is isolating a failure, is left to its own ``TransactionStep``
(``Joint.single``). Any MySQL error rolls the whole transaction back and leaves every group
of it to its own step, where isolation finds the batch at fault as before.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.asyncflush import position
from beeorm_celery.asyncflush.batch import PAYLOAD_FIELD, Batch, decode_entry
from beeorm_celery.asyncflush.gc_pause import collector_paused
from beeorm_celery.asyncflush.log import after, successor
from beeorm_celery.asyncflush.mysql_errors import is_packet_error
from beeorm_celery.asyncflush.packed import PacketRun
from beeorm_celery.errors import MalformedBatchError
from beeorm_celery.mysql import accepts_packets
from beeorm_celery.sql import statements, text_bytes

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

    from beeorm_celery.asyncflush.drain import Drain
    from beeorm_celery.asyncflush.parts import AsyncParts
    from beeorm_celery.asyncflush.report import DrainReport
    from beeorm_celery.operations import Operation


@dataclass
class Joint:
    """What a joint step did, per group."""

    applied: dict[str, bool] = field(default_factory=dict)  # group -> caught up
    empty: list[str] = field(default_factory=list)  # nothing pending
    single: list[str] = field(default_factory=list)  # left to the group's own step
    busy: list[str] = field(default_factory=list)  # another worker holds it
    error: pymysql.MySQLError | None = None  # what rolled the transaction back

    def alone(self, drain: Drain) -> None:
        """Leave ``drain``'s group to its own step (a failed statement, a batch that does not
        decode, a new log...). What it last showed of its log is not trusted: the next joint
        step locks it with the others, as before anything was known."""
        self.single.append(drain.group)
        drain.backlog_ops = 0


@dataclass
class _Plan:
    drain: Drain
    epoch: str
    chunk: list[Batch]
    caught_up: bool
    pending: int  # batches left in the log after these (kept in the position row)


@collector_paused()  # its rows hold no cycles: no collections of the heap for them
def joint_step(
    parts: AsyncParts,
    conn: Connection[Any],
    drains: list[Drain],
    reports: dict[str, DrainReport],
    known: set[str],
) -> Joint:
    """Apply the head batches of ``drains``' groups (all in ``conn``'s pool) in one transaction.

    ``known``: groups whose row in the position table exists (a group missing from the
    locked rows is then held by another worker, not new). Errors other than a statement's (the
    connection, Redis) propagate; the caller then leaves every group to its own step.
    """
    settings = parts.settings
    max_batches = settings.max_batches_per_transaction
    joint = Joint()
    cursor = conn.cursor()
    conn.begin()
    candidates = [d for d in drains if not d.isolation.single]
    for drain in drains:
        if drain.isolation.single:
            joint.alone(drain)
    candidates, rows = _lock_enough(
        cursor, candidates, max_batches, settings.max_operations_per_transaction
    )
    unseen = [d.group for d in candidates if d.group not in rows and d.group not in known]
    if unseen:
        # held elsewhere, or no row yet? Asked once: a held group is then skipped for a while
        # (busy), not visited alone (a transaction of its own, to find it held again)
        known.update(position.existing(cursor, unseen))
    locked: list[tuple[Drain, str, str]] = []
    for drain in candidates:
        row = rows.get(drain.group)
        if row is not None:
            locked.append((drain, *row))
        elif drain.group in known:
            joint.busy.append(drain.group)  # another worker holds it: its holder goes on
        else:
            joint.alone(drain)  # maybe no row yet: its own step creates it
    if not locked:
        conn.rollback()
        return joint
    pipe = parts.log_redis().pipeline(transaction=False)
    for drain, _, _ in locked:
        pipe.get(drain.log.epoch_key)
        pipe.xrange(drain.log.log_key, "-", "+", count=max_batches)
        pipe.xlen(drain.log.log_key)
    raw = pipe.execute()
    plans: list[_Plan] = []
    operations = 0
    size = 0  # queued payload bytes: max_transaction_bytes (law 14)
    for n, (drain, _, _) in enumerate(locked):
        drain.backlog_ops = int(int(raw[3 * n + 2]) * drain.ops_per_batch)
    for n, (drain, db_epoch, at) in enumerate(locked):
        if operations >= settings.max_operations_per_transaction:
            break  # the rest stays locked until COMMIT and is applied on the next turn
        epoch_raw, entries_raw, length = raw[3 * n : 3 * n + 3]
        log_epoch = epoch_raw.decode() if epoch_raw else None
        entries = [(_text(i), f) for i, f in entries_raw or []]
        if log_epoch is None or log_epoch != db_epoch:
            joint.alone(drain)  # a new or a lost log: its own step handles it
            continue
        if not entries:
            joint.empty.append(drain.group)
            continue
        if not after(entries[0][0], at):
            joint.alone(drain)
            continue
        drain.step.pending_memory.saw(drain.group, int(length))
        chunk: list[Batch] = []
        for entry_id, fields in entries:
            try:
                batch = decode_entry(parts, drain.group, entry_id, fields, settings.secrets)
            except MalformedBatchError:
                break  # its own step dead-letters it once it is the head
            payload = len(fields.get(PAYLOAD_FIELD, b""))
            if (chunk or plans) and (
                operations + len(batch.operations) > settings.max_operations_per_transaction
                or size + payload > settings.max_transaction_bytes
            ):
                break
            chunk.append(batch)
            operations += len(batch.operations)
            size += payload
        if not chunk:
            joint.alone(drain)
            continue
        caught_up = len(chunk) == len(entries) and len(entries) < max_batches
        pending = max(0, int(length) - len(chunk))
        drain.ops_per_batch = sum(len(b.operations) for b in chunk) / len(chunk)
        drain.backlog_ops = int(pending * drain.ops_per_batch)
        plans.append(_Plan(drain, log_epoch, chunk, caught_up, pending))
    if not plans:
        conn.rollback()
        return joint
    limits = plans[0].drain.step.limits  # one pool: one limit
    statement = ""
    try:
        moves: list[tuple[str, str, str, int, int, int]] = []
        applied: list[tuple[list[Operation], str]] = []  # each group's operations, last batch
        planned: list[tuple[str, list[Operation]]] = []
        limit = limits.merge_limit(conn)
        for plan in plans:
            ops = [op for batch in plan.chunk for op in batch.operations]
            planned += statements(ops, limit)
            last_id = str(plan.chunk[-1].id)
            group, batches = plan.drain.group, len(plan.chunk)
            moves.append((group, plan.epoch, last_id, batches, len(ops), plan.pending))
            applied.append((ops, last_id))
        # a row gone (check_matched) rolls it all back too: the groups' own steps find it
        run = PacketRun()
        try:
            run.run_all(cursor, planned, limit, packed=accepts_packets(conn))
        finally:
            statement = run.statement
        position.advance_many(cursor, moves)
        conn.commit()
    except pymysql.MySQLError as e:
        _rollback(conn)
        if is_packet_error(e, text_bytes(statement)):
            limits.pool.statement_refused(text_bytes(statement))  # the singles cut smaller
        for plan in plans:
            joint.alone(plan.drain)
        joint.error = e
        return joint
    _trim(parts, plans)
    # every group's pending markers in one call per Redis pool (a call per group was most of
    # the per-group cost of a step over many groups)
    parts.caches.release_pending(applied)
    for plan in plans:
        drain, chunk = plan.drain, plan.chunk
        last_id = str(chunk[-1].id)
        drain.isolation.passed(last_id)
        drain.step.invalidation.committed(chunk, last_id, released=True)
        report = reports[drain.group]
        report.applied_batches += len(chunk)
        report.applied_operations += sum(len(b.operations) for b in chunk)
        joint.applied[drain.group] = plan.caught_up
    known.update(d.group for d, _, _ in locked)
    return joint


def _lock_enough(
    cursor: Cursor, candidates: list[Drain], max_batches: int, max_operations: int
) -> tuple[list[Drain], dict[str, tuple[str, str]]]:
    """Lock the rows of as many of ``candidates`` (in order) as one transaction can apply, by
    what the last joint step saw of their logs (``Drain.backlog_ops``; at most ``max_batches``
    of a group's batches go in one transaction): the groups tried and the rows locked.

    A group locked but left out of the transaction stays locked until its COMMIT, while
    another worker process could be applying it: with a backlog in a few groups, locking them
    all made two processes take turns instead of working side by side. Groups with nothing
    known (0) are all taken in one statement, as before anything is known. Those not tried are
    left for the next turn."""
    tried: list[Drain] = []
    rows: dict[str, tuple[str, str]] = {}
    rest = candidates
    while rest:
        take: list[Drain] = []
        expected = 0.0
        for drain in rest:
            take.append(drain)
            expected += _share(drain, max_batches)
            if expected >= max_operations:
                break
        rest = rest[len(take) :]
        tried += take
        rows.update(position.lock_many(cursor, [d.group for d in take]))
        if sum(_share(d, max_batches) for d in tried if d.group in rows) >= max_operations:
            break  # enough locked (the busy ones among those tried: look further)
    return tried, rows


def _share(drain: Drain, max_batches: int) -> float:
    """The operations one transaction would take from ``drain``'s group, as last seen."""
    return min(drain.backlog_ops, max_batches * drain.ops_per_batch)


def _trim(parts: AsyncParts, plans: list[_Plan]) -> None:
    """What ``GroupLog.trim_through(hold_trigger=True, clear_failure=True)`` does, for every
    group of the transaction in one round trip."""
    pipe = parts.log_redis().pipeline(transaction=False)
    for plan in plans:
        log = plan.drain.log
        last_id = str(plan.chunk[-1].id)
        pipe.xtrim(log.log_key, minid=successor(last_id), approximate=False)
        pipe.set(log.trigger_key, b"1", px=log.trigger_ttl_ms)
        pipe.delete(log.failure_key)
    pipe.execute()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _rollback(conn: Connection[Any]) -> None:
    # If the connection is gone, the server rolls back on its own.
    with contextlib.suppress(pymysql.MySQLError):
        conn.rollback()
