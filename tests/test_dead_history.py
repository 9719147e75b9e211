"""A dead letter keeps its history across replays: its first failure, every attempt, the replay
times. Made the real way: a queued insert meets a row MySQL already has; the replay meets it
again; ``dead show`` (the real CLI) tells the whole story."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from beeorm_celery import Engine, consume_async_flush_events
from tests.support import models

REPO = Path(__file__).resolve().parents[1]


def dead_letter_of_a_taken_name(engine: Engine, name: str) -> str:
    ctx = engine.new_context()
    counter = ctx.new_entity(models.Counter, name=name)
    ctx.flush_async()
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO `counter` (`id`, `name`, `value`) VALUES (%s, %s, 0)",
            (counter.id + 10_000, name),
        )
    consume_async_flush_events(engine)
    [dead] = engine.dead_letters.list()
    return dead.id


def replay_and_fail_again(engine: Engine, dead_id: str) -> str:
    engine.dead_letters.retry(dead_id)  # the cause is still there
    assert consume_async_flush_events(engine)["counters"].dead_lettered == 1
    [dead] = engine.dead_letters.list()
    assert dead.id != dead_id
    return dead.id


def test_a_replay_that_fails_again_keeps_the_first_failure_and_adds_up_attempts(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL)
    first_id = dead_letter_of_a_taken_name(engine, "Cars")
    first = engine.dead_letters.get(first_id)

    second_id = replay_and_fail_again(engine, first_id)
    third_id = replay_and_fail_again(engine, second_id)
    third = engine.dead_letters.get(third_id)

    assert third.first_failed_at == first.first_failed_at
    assert third.attempts == 3 * first.attempts
    assert third.replay_of == second_id
    assert [e.kind for e in third.history] == [
        "failed", "replayed", "failed", "replayed", "failed"
    ]  # fmt: skip
    failures = [e for e in third.history if e.kind == "failed"]
    assert [f"counters/{e.batch_id}" for e in failures] == [first_id, second_id, third_id]
    assert all(e.error_code == 1062 and "'Cars'" in e.error for e in failures)
    replays = [e.at for e in third.history if e.kind == "replayed"]
    assert failures[0].at <= replays[0] <= failures[1].at <= replays[1] <= failures[2].at
    assert third.failed_at == failures[2].at


def test_dead_show_tells_the_history_and_json_carries_it(
    make_engine: Callable[..., Engine], mysql_url: str, redis_url: str, key_prefix: str
) -> None:
    engine = make_engine(*models.ALL)
    first_id = dead_letter_of_a_taken_name(engine, "Boats")
    second_id = replay_and_fail_again(engine, first_id)
    env = {
        **os.environ,
        "BEEORM_TEST_DB_URL": mysql_url,
        "BEEORM_TEST_REDIS_URL": redis_url,
        "BEEORM_TEST_PREFIX": key_prefix,
        "BEEORM_ENGINE": "tests.support.cli_engine:engine",
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "beeorm_celery.cli", "dead", "show", second_id]

    shown = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    as_json = subprocess.run(
        [*command, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )

    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "history (oldest first):" in text
    history = text.split("history (oldest first):")[1].split("failing statement:")[0]
    lines = [line for line in history.splitlines() if line.strip()]
    assert len(lines) == 3
    assert f"failed as batch {first_id.split('/')[1]} (1 attempt)" in lines[0]
    assert lines[1].endswith("replayed")
    assert f"failed as batch {second_id.split('/')[1]}" in lines[2]
    assert "1062 Duplicate entry 'Boats'" in lines[2]
    data = json.loads(as_json.stdout)
    assert data["attempts"] == 2
    assert [e["kind"] for e in data["history"]] == ["failed", "replayed", "failed"]
