"""Garbage for the fault run: broker messages and log entries no producer would ever write.

Broker messages go straight into a group's Celery queue (a Redis list; kombu LPUSHes and
BRPOPs, and with ``global_keyprefix`` the key is ``<prefix>:q:beeorm.<group>``). They must not
stop a worker. Log entries go straight into a group's stream; each must become one
dead letter (remove-only where the bytes are unreadable) and must not stop the group.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from beeorm_celery.asyncflush.batch import FORMAT_VERSION, PAYLOAD_FIELD
from beeorm_celery.celery import TASK_NAME


def celery_envelope(
    task: str, args: Any, kwargs: Any, routing_key: str, body: str | None = None
) -> dict[str, Any]:
    """A message shaped like Celery 5's protocol 2 on the Redis transport."""
    task_id = str(uuid.uuid4())
    if body is None:
        embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        body = base64.b64encode(json.dumps([args, kwargs, embed]).encode()).decode()
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "chaos garbage",
            "kwargsrepr": "{}",
            "origin": "chaos",
            "ignore_result": True,
        },
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def queue_garbage(group: str, rng: random.Random) -> list[tuple[str, bytes]]:
    """(what, raw message) pairs for the queue of ``group``."""
    queue = f"beeorm.{group}"

    def envelope(**changes: Any) -> bytes:
        message = celery_envelope(TASK_NAME, [group, "0-0"], {}, queue)
        for name, value in changes.items():
            if value is None:
                message.pop(name, None)
            else:
                message[name] = value
        return json.dumps(message).encode()

    unknown_task = celery_envelope("chaos.no_such_task", [1, 2], {}, queue)
    no_group = celery_envelope(TASK_NAME, ["no-such-group", "1-0"], {}, queue)
    wrong_types = celery_envelope(TASK_NAME, [[1, 2], {"x": 1}, 3.5], {"evil": True}, queue)
    too_many = celery_envelope(TASK_NAME, [group, "0-0", "extra", 4], {}, queue)
    return [
        ("random bytes", rng.randbytes(64)),
        ("truncated JSON", b'{"body": "W1si'),
        ("a JSON string", b'"hello worker"'),
        ("a JSON list", b"[1, 2, 3]"),
        ("an empty object", b"{}"),
        ("an unknown task", json.dumps(unknown_task).encode()),
        ("an unknown group", json.dumps(no_group).encode()),
        ("arguments of the wrong types", json.dumps(wrong_types).encode()),
        ("too many arguments", json.dumps(too_many).encode()),
        ("a body that is not base64", envelope(body="!!not base64!!")),
        ("a body that is not JSON", envelope(body=base64.b64encode(b"\xff\xfe\x00").decode())),
        ("headers that are a list", envelope(headers=[1, 2])),
        ("no properties", envelope(properties=None)),
    ]


def dramatiq_queue_garbage(group: str, rng: random.Random) -> list[tuple[str, bytes | None]]:
    """(what, raw message body) pairs for a Dramatiq Redis queue of ``group``; None: a message
    id with no body."""
    from beeorm_celery.dramatiq import ACTOR_NAME

    queue = f"beeorm.{group}"

    def message(actor: str, args: Any, kwargs: Any, **changes: Any) -> bytes:
        fields = {
            "queue_name": queue,
            "actor_name": actor,
            "args": args,
            "kwargs": kwargs,
            "options": {},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": 0,
            **changes,
        }
        return json.dumps(fields).encode()

    return [
        ("an id with no message", None),
        ("random bytes", rng.randbytes(64)),
        ("truncated JSON", b'{"queue_name": "beeo'),
        ("a JSON list", b"[1, 2, 3]"),
        ("an empty object", b"{}"),
        ("an unknown actor", message("chaos.no_such_actor", [1, 2], {})),
        ("an unknown group", message(ACTOR_NAME, ["no-such-group", "1-0"], {})),
        ("arguments of the wrong types", message(ACTOR_NAME, [[1, 2], {"x": 1}], {"evil": True})),
        ("too many arguments", message(ACTOR_NAME, [group, "0-0", "extra", 4], {})),
        ("args that are not a list", message(ACTOR_NAME, 7, {})),
    ]


@dataclass(frozen=True)
class LogGarbage:
    what: str
    fields: dict[bytes, bytes]


def _payload(group: str, ops: Any, **extra: Any) -> bytes:
    data = {"v": FORMAT_VERSION, "g": group, "t": 1_700_000_000_000, "ops": ops, **extra}
    return json.dumps(data).encode()


def log_garbage(group: str, table: str, rng: random.Random) -> list[LogGarbage]:
    """Entries for the log of ``group`` (whose entity table is ``table``).

    An unknown table or column, or a newer format version, is not garbage but schema lag: such
    a batch waits for the upgrade (law 13), which the rolling deploy exercises for real.
    """

    def entry(what: str, payload: bytes) -> LogGarbage:
        return LogGarbage(what, {PAYLOAD_FIELD: payload})

    return [
        entry("random bytes", rng.randbytes(80)),
        LogGarbage("no payload field", {b"x": b"1"}),
        entry("JSON that is not an object", b"[1, 2, 3]"),
        entry("an unknown old format version", _payload(group, [["d", table, 1, {}, {}]], v=0)),
        entry("another group", json.dumps({"v": 1, "g": "other", "t": 1, "ops": []}).encode()),
        entry("no operations", _payload(group, [])),
        entry("a bad id", _payload(group, [["d", table, -3, {}, {}]])),
        entry("an unknown kind", _payload(group, [["x", table, 7, {}, {}]])),
        entry(
            "a value of the wrong type", _payload(group, [["u", table, 7, {"edits": "many"}, {}]])
        ),
        entry("an INSERT without columns", _payload(group, [["i", table, 7, {"seq": 1}, {}]])),
        entry("NULL for a NOT NULL column", _payload(group, [["u", table, 7, {"name": None}, {}]])),
        entry("an id that is a float", _payload(group, [["d", table, 7.5, {}, {}]])),
        # These four once made the decoder raise something else than MalformedBatchError, which
        # stalled the group behind them for good.
        entry(
            "deeply nested JSON",
            b'{"v": 1, "ops": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        ),
        entry(
            "a decimal beyond the context precision",
            _payload(group, [["u", table, 7, {"amount": "1234567890123456789012345678.123"}, {}]]),
        ),
        entry(
            "a decimal with a huge exponent",  # and this one took minutes of CPU to refuse
            _payload(group, [["u", table, 7, {"amount": "1E+100000000"}, {}]]),
        ),
        entry(
            "a float too large for a double",
            _payload(group, [["u", table, 7, {"ratio": 10**400}, {}]]),
        ),
        entry("a bool for a text column", _payload(group, [["u", table, 7, {"name": True}, {}]])),
    ]
