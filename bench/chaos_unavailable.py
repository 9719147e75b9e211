"""What a fault-run producer does when Redis is down (the run restarts the log's Redis).

``flush_async()`` says whether anything was written (``UnavailableError.written``):

- ``False``: nothing was queued; the same unit of work is flushed again once Redis is back, and
  the oracle records it then (in the order ``flush_async()`` finally returned);
- ``None``: the link broke after the command was sent, so the batches may or may not be queued.
  The producer finds out, as an application would: a batch is in its group's log until a worker
  has committed it, so it looks in the log first and then in MySQL (the audit lines), in that
  order, so a batch committed and trimmed in between is still found.

An id reservation that fails (``new_entity``) drops the unit of work being built: nothing of it
was flushed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery import UnavailableError
from bench.chaos_models import AUDIT_TABLE, GROUP_OF_TABLE

if TYPE_CHECKING:
    from beeorm_celery import Engine

RETRY_FOR_S = 60.0
_PAUSE_S = 0.2
# (kind, table, id, seq): one operation of the flush, enough to tell whether it was queued.
Probe = tuple[str, str, int, int]


def flush_until_known(engine: Engine, flush: Callable[[], None], probe: Probe) -> int:
    """Run ``flush`` until it is known to have queued its batches; returns the attempts made.

    Raises the last ``UnavailableError`` when Redis stays away longer than ``RETRY_FOR_S``.
    """
    deadline = time.monotonic() + RETRY_FOR_S
    attempts = 0
    while True:
        attempts += 1
        try:
            flush()
            return attempts
        except UnavailableError as e:
            if time.monotonic() > deadline:
                raise
            if e.written is None and _queued(engine, probe, deadline):
                return attempts
            time.sleep(_PAUSE_S)


def _queued(engine: Engine, probe: Probe, deadline: float) -> bool:
    """Whether the operation ``probe`` was queued: in its group's log, or already applied."""
    kind, table, entity_id, seq = probe
    while True:
        try:
            if _in_log(engine, probe):
                return True
            return _in_audit(engine, kind, table, entity_id, seq)
        except (UnavailableError, pymysql.MySQLError, OSError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not tell whether {probe} was queued: {e}") from e
            time.sleep(_PAUSE_S)
        except Exception as e:  # redis errors from the raw client below
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not tell whether {probe} was queued: {e}") from e
            time.sleep(_PAUSE_S)


def _in_log(engine: Engine, probe: Probe) -> bool:
    kind, table, entity_id, seq = probe
    client = engine.redis(engine.async_redis_pool)
    for _, fields in client.xrange(engine.keys.log(GROUP_OF_TABLE[table]), "-", "+"):
        try:
            payload: Any = json.loads(fields.get(b"d", b"{}"))
        except ValueError:
            continue
        if not isinstance(payload, dict):
            continue
        columns = payload.get("c", {}).get(table)  # an INSERT's row is a list in this order
        for op in payload.get("ops", []):
            if _matches(op, columns, kind, table, entity_id, seq):
                return True
    return False


def _matches(op: Any, columns: Any, kind: str, table: str, entity_id: int, seq: int) -> bool:
    if not (isinstance(op, list) and len(op) >= 4):
        return False
    if op[0] != kind or op[1] != table or op[2] != entity_id:
        return False
    if kind == "d":
        return True  # one delete per row, ever
    values = op[3]
    if isinstance(values, list) and isinstance(columns, list):
        values = dict(zip(columns, values, strict=False))
    return isinstance(values, dict) and values.get("seq") == seq


def _in_audit(engine: Engine, kind: str, table: str, entity_id: int, seq: int) -> bool:
    rows = engine.mysql["default"].read_all(
        f"SELECT 1 FROM `{AUDIT_TABLE}` WHERE `tbl` = %s AND `row_id` = %s AND `kind` = %s "
        "AND `seq` = %s LIMIT 1",
        (table, entity_id, kind, seq),
    )
    return bool(rows)
