"""The ``beeorm-celery`` command line against real MySQL and Redis.

Most tests run the commands in-process (click's CliRunner, the engine handed in as ``obj``);
the ones about ``--engine``, the console script and signals run it as a subprocess against
``tests.support.cli_engine``, which builds the engine from the same variables as the workers.
Dead letters are made the real way: a queued insert meets a conflicting row MySQL already has.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from beeorm_celery import AsyncFlushSettings, Engine, Registry, consume_async_flush_events
from beeorm_celery.cli import cli
from tests.support import models
from tests.support.console import CONSOLE_SCRIPT, ENGINE_SPEC, REPO, console_env, run_console
from tests.support.services import wait_until

CLI_MODULE = (sys.executable, "-m", "beeorm_celery.cli")
WIDE = {"COLUMNS": "200"}  # rich tables at full width: ids and errors are not cut
LONG_NAME = "A rather long product category name that fills it"  # 50: the column's max_length


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(*models.ALL)


def run(engine: Engine | None, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), obj=engine, env={**WIDE, **(env or {})})


def sql(engine: Engine, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())


def make_dead_letter(engine: Engine, name: str) -> tuple[str, int]:
    """Queue a Counter, let MySQL get a row with the same unique name first, consume.

    Returns the dead letter's id and the id the queued Counter was given. (Counter, not
    Category: an entity with a local cache starts a listener that takes a second to close.)
    """
    ctx = engine.new_context()
    counter = ctx.new_entity(models.Counter, name=name)
    ctx.flush_async()
    sql(
        engine,
        "INSERT INTO `counter` (`id`, `name`, `value`) VALUES (%s, %s, 0)",
        counter.id + 10_000,
        name,
    )
    assert consume_async_flush_events(engine)["counters"].dead_lettered == 1
    [dead] = [d for d in engine.dead_letters.list() if f"'{name}'" in d.error]
    assert dead.error_code == 1062
    return dead.id, counter.id


def counter_ids(engine: Engine, name: str) -> list[int]:
    return [row[0] for row in sql(engine, "SELECT `id` FROM `counter` WHERE `name` = %s", name)]


# --- stats


def test_stats_shows_pending_batches_and_dead_letters_per_group(engine: Engine) -> None:
    make_dead_letter(engine, "Cars")
    ctx = engine.new_context()
    ctx.new_entity(models.Note, text="queued")
    ctx.flush_async()

    result = run(engine, "stats")

    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    # group, pending, oldest pending s, dead letters, applied batches, applied ops, trigger
    assert rows["notes"][1] == "1"
    assert rows["counters"][1:4] == ["0", "0.0", "1"]
    assert set(rows) >= set(models.GROUPS)


def test_stats_json_gives_every_figure_of_every_group(engine: Engine) -> None:
    ctx = engine.new_context()
    ctx.new_entity(models.Note, text="one")
    ctx.new_entity(models.Note, text="two")
    ctx.flush_async()
    consume_async_flush_events(engine)
    make_dead_letter(engine, "Cars")

    result = run(engine, "stats", "--json")

    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert sorted(stats) == sorted(models.GROUPS)
    assert stats["notes"]["applied"] == 1
    assert stats["notes"]["applied_operations"] == 2
    assert stats["counters"]["dead_letters"] == 1
    assert stats["counters"]["pending"] == 0
    assert stats["catalog"]["trigger_set"] is False


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--json", "--watch"], "--json and --watch"),
        (["--interval", "5"], "only applies with --watch"),
    ],
)
def test_stats_options_that_do_not_go_together_are_usage_errors(
    engine: Engine, args: list[str], said: str
) -> None:
    result = run(engine, "stats", *args)

    assert result.exit_code == 2
    assert said in result.stderr


# --- dead list / show


def test_dead_list_shows_each_dead_letter_with_its_id_code_and_error(engine: Engine) -> None:
    cars, _ = make_dead_letter(engine, "Cars")
    boats, _ = make_dead_letter(engine, "Boats [red]")  # brackets are data, not rich markup

    result = run(engine, "dead", "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [cars_line] = [line for line in lines if cars in line]
    [boats_line] = [line for line in lines if boats in line]
    assert "counters" in cars_line and "1062" in cars_line
    assert "Duplicate entry 'Cars'" in cars_line
    assert "Duplicate entry 'Boats [red]'" in boats_line
    assert lines.index(cars_line) < lines.index(boats_line)  # oldest failure first


def test_dead_list_in_a_pipe_keeps_each_error_whole_on_the_line_of_its_id(
    engine: Engine, env: dict[str, str]
) -> None:
    dead_id, _ = make_dead_letter(engine, LONG_NAME)
    [dead] = engine.dead_letters.list()
    env.pop("COLUMNS")  # a pipe: rich would assume 80 columns

    done = run_console(["--engine", ENGINE_SPEC, "dead", "list"], env)

    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if dead_id in line]
    assert len(line) > 80
    assert dead.error in line
    assert "…" not in done.stdout


def test_dead_list_at_an_80_column_terminal_wraps_the_error_and_cuts_nothing(
    engine: Engine, env: dict[str, str]
) -> None:
    import pty

    dead_id, _ = make_dead_letter(engine, LONG_NAME)
    [dead] = engine.dead_letters.list()
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*CLI_MODULE, "--engine", ENGINE_SPEC, "dead", "list"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**env, "COLUMNS": "80", "LINES": "40", "TERM": "dumb"},
        cwd=REPO,
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the program exited and closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 0, seen

    lines = seen.decode().replace("\r", "").splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    header = next(n for n, line in enumerate(lines) if line.startswith("id "))
    start, end = lines[header].index("error"), lines[header].index("attempts")
    first = next(n for n, line in enumerate(lines) if line.startswith(dead_id))
    row = [lines[first]] + [
        line for line in lines[first + 1 :] if line.strip() and not line[:start].strip()
    ]
    assert " ".join(line[start:end].strip() for line in row) == dead.error
    assert len(row) > 1  # it did wrap
    assert "…" not in seen.decode()


def test_dead_list_says_so_when_there_are_none(engine: Engine) -> None:
    result = run(engine, "dead", "list")

    assert result.exit_code == 0, result.output
    assert "no dead letters" in result.stdout


def test_dead_list_json_honours_limit_and_group(engine: Engine) -> None:
    first, _ = make_dead_letter(engine, "Cars")
    make_dead_letter(engine, "Boats")

    limited = run(engine, "dead", "list", "--json", "--limit", "1")
    other_group = run(engine, "dead", "list", "--json", "--group", "notes")

    assert limited.exit_code == 0, limited.output
    [only] = json.loads(limited.stdout)
    assert only["id"] == first
    assert only["error_code"] == 1062
    assert only["sql"] == [only["failing_statement"]]
    assert json.loads(other_group.stdout) == []


def test_dead_list_with_an_unknown_group_is_a_usage_error_naming_the_known_ones(
    engine: Engine,
) -> None:
    result = run(engine, "dead", "list", "--group", "catalgo")

    assert result.exit_code == 2
    assert "unknown async group 'catalgo'" in result.stderr
    assert "catalog, counters, notes" in result.stderr


def test_dead_show_prints_every_field_with_all_statements_and_the_failing_one(
    engine: Engine,
) -> None:
    # a batch of two statements where only the second conflicts
    ctx = engine.new_context()
    fine = ctx.new_entity(models.Counter, name="fine")
    clash = ctx.new_entity(models.Counter, name="clash")
    ctx.flush_async()
    sql(
        engine,
        "INSERT INTO `counter` (`id`, `name`, `value`) VALUES (%s, 'clash', 0)",
        clash.id + 10_000,
    )
    consume_async_flush_events(engine)
    [dead] = engine.dead_letters.list()
    assert len(dead.sql) == 2

    result = run(engine, "dead", "show", dead.id)

    assert result.exit_code == 0, result.output
    out = result.stdout
    for label, value in [
        ("id", dead.id),
        ("group", "counters"),
        ("batch id", dead.batch_id),
        ("error code", "1062"),
        ("error", "Duplicate entry 'clash'"),
        ("attempts", "1"),
        ("failed at", dead.failed_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("first failed at", dead.first_failed_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("malformed", "no"),
    ]:
        assert any(line.startswith(label) and value in line for line in out.splitlines()), label
    assert f"INSERT INTO `counter` (`id`, `name`, `value`) VALUES ({fine.id}, 'fine', 0)" in out
    assert f"INSERT INTO `counter` (`id`, `name`, `value`) VALUES ({clash.id}, 'clash', 0)" in out
    assert f"failing statement:\n{dead.failing_statement}\n" in out
    # the applier merges inserts: the failing statement is marked only if it is one of the list
    assert out.count("<- failed") == (1 if dead.failing_statement in dead.sql else 0)


def test_dead_show_marks_the_failing_statement_in_the_list(engine: Engine) -> None:
    dead_id, counter_id = make_dead_letter(engine, "Cars")

    result = run(engine, "dead", "show", dead_id)

    assert result.exit_code == 0, result.output
    [marked] = [line for line in result.stdout.splitlines() if line.endswith("<- failed")]
    assert marked.startswith("   1  INSERT INTO `counter`")
    assert f"({counter_id}, 'Cars', 0)" in marked


def test_dead_show_json_has_the_statements_and_the_failing_statement(engine: Engine) -> None:
    dead_id, counter_id = make_dead_letter(engine, "Cars")

    result = run(engine, "dead", "show", dead_id, "--json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == dead_id
    assert f"({counter_id}, 'Cars'" in shown["failing_statement"]
    assert shown["attempts"] == 1 and shown["malformed"] is False


@pytest.mark.parametrize("command", [["show"], ["retry"], ["remove"]])
@pytest.mark.parametrize("dead_letter_id", ["catalog/1700000000000-0", "no-slash"])
def test_an_unknown_dead_letter_id_exits_1_with_a_message_on_stderr(
    engine: Engine, command: list[str], dead_letter_id: str
) -> None:
    make_dead_letter(engine, "Cars")  # one exists, just not this one

    result = run(engine, "dead", *command, dead_letter_id)

    assert result.exit_code == 1
    assert dead_letter_id in result.stderr
    assert result.stdout == ""
    assert engine.dead_letters.count() == 1


# --- retry


def test_retry_after_fixing_the_cause_lands_the_row_once_consumed(engine: Engine) -> None:
    dead_id, counter_id = make_dead_letter(engine, "Cars")
    sql(engine, "DELETE FROM `counter` WHERE `id` <> %s", counter_id)  # the operator's fix

    retried = run(engine, "dead", "retry", dead_id)
    consumed = run(engine, "consume", "--json")

    assert retried.exit_code == 0, retried.output
    assert f"retried {dead_id}" in retried.stdout
    assert consumed.exit_code == 0, consumed.output
    assert json.loads(consumed.stdout)["counters"]["applied_batches"] == 1
    assert counter_ids(engine, "Cars") == [counter_id]
    assert engine.dead_letters.count() == 0


def test_retry_without_fixing_the_cause_dead_letters_the_batch_again(engine: Engine) -> None:
    dead_id, _ = make_dead_letter(engine, "Cars")

    assert run(engine, "dead", "retry", dead_id).exit_code == 0
    report = json.loads(run(engine, "consume", "--json").stdout)

    assert report["counters"]["dead_lettered"] == 1
    [again] = engine.dead_letters.list()
    assert again.replay_of == dead_id


def test_retry_all_of_a_group_replays_each_and_says_how_many(engine: Engine) -> None:
    _, cars_id = make_dead_letter(engine, "Cars")
    _, boats_id = make_dead_letter(engine, "Boats")
    sql(engine, "DELETE FROM `counter` WHERE `id` NOT IN (%s, %s)", cars_id, boats_id)

    result = run(engine, "dead", "retry", "--all", "--group", "counters")
    consume_async_flush_events(engine)

    assert result.exit_code == 0, result.output
    assert "retried 2 dead letter(s) of group counters" in result.stdout
    assert counter_ids(engine, "Cars") == [cars_id]
    assert counter_ids(engine, "Boats") == [boats_id]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["retry", "--all"], "retried 0 dead letter(s)"),
        (["remove", "--all", "--yes"], "removed 0 dead letter(s)"),
    ],
)
def test_all_with_no_dead_letters_prints_0_and_exits_0(
    engine: Engine, args: list[str], said: str
) -> None:
    result = run(engine, "dead", *args)

    assert result.exit_code == 0, result.output
    assert said in result.stdout


def test_a_malformed_dead_letter_cannot_be_retried_only_removed(
    make_engine: Callable[..., Engine],
) -> None:
    worker = make_engine(*models.ALL)
    log_key = worker.keys.log("notes")
    worker.redis("default").xadd(log_key, {b"d": b"\x00 unreadable bytes"})
    consume_async_flush_events(worker)
    [dead] = worker.dead_letters.list()
    assert dead.malformed

    one = run(worker, "dead", "retry", dead.id)
    every = run(worker, "dead", "retry", "--all")
    removed = run(worker, "dead", "remove", dead.id)

    assert one.exit_code == 1
    assert "malformed" in one.stderr
    assert every.exit_code == 0, every.output
    assert "retried 0 dead letter(s)" in every.stdout
    assert "1 dead letter(s) remain" in every.stderr
    assert removed.exit_code == 0, removed.output
    assert worker.dead_letters.count() == 0


def test_a_signature_dead_letter_replays_once_the_worker_holds_the_secret(
    make_engine: Callable[..., Engine],
) -> None:
    producer = make_engine(*models.ALL, async_flush=AsyncFlushSettings(signing_secret="old"))
    wrong = make_engine(
        *models.ALL,
        update_schema=False,
        async_flush=AsyncFlushSettings(signing_secret="new", bad_signature_dead_letter_after_s=0),
    )
    fixed = make_engine(
        *models.ALL,
        update_schema=False,
        async_flush=AsyncFlushSettings(signing_secret=["new", "old"]),
    )
    ctx = producer.new_context()
    note = ctx.new_entity(models.Note, text="signed with the old secret")
    ctx.flush_async()
    consume_async_flush_events(wrong)
    [dead] = wrong.dead_letters.list()
    assert not dead.malformed and dead.cause == "signature"

    shown = run(wrong, "dead", "show", dead.id)
    refused = run(wrong, "dead", "retry", dead.id)
    replayed = run(fixed, "dead", "retry", dead.id)
    consume_async_flush_events(fixed)

    assert "give the workers the secret that signed it" in shown.stdout
    assert refused.exit_code == 1 and "signing_secret" in refused.stderr
    assert replayed.exit_code == 0, replayed.output
    rows = fixed.mysql["default"].read_all("SELECT text FROM note WHERE id = %s", (note.id,))
    assert rows == [("signed with the old secret",)]
    assert fixed.dead_letters.count() == 0


# --- remove


def test_remove_one_drops_only_that_dead_letter(engine: Engine) -> None:
    cars, _ = make_dead_letter(engine, "Cars")
    boats, _ = make_dead_letter(engine, "Boats")

    result = run(engine, "dead", "remove", cars)

    assert result.exit_code == 0, result.output
    assert f"removed {cars}" in result.stdout
    assert [d.id for d in engine.dead_letters.list()] == [boats]


@pytest.mark.parametrize("group", [[], ["--group", "counters"]])
def test_remove_all_from_a_script_without_yes_refuses_and_removes_nothing(
    engine: Engine, env: dict[str, str], group: list[str]
) -> None:
    make_dead_letter(engine, "Cars")

    done = run_console(  # no stdin: what cron and CI give, no terminal to ask on
        ["--engine", ENGINE_SPEC, "dead", "remove", "--all", *group], env, stdin=subprocess.DEVNULL
    )

    assert done.returncode == 1, done.stderr
    assert "--yes" in done.stderr
    assert done.stdout == ""
    assert engine.dead_letters.count() == 1


def test_remove_all_from_a_script_with_yes_removes_them(
    engine: Engine, env: dict[str, str]
) -> None:
    make_dead_letter(engine, "Cars")

    done = run_console(
        ["--engine", ENGINE_SPEC, "dead", "remove", "--all", "--yes"], env, stdin=subprocess.DEVNULL
    )

    assert done.returncode == 0, done.stderr
    assert "removed 1 dead letter(s)" in done.stdout
    assert engine.dead_letters.count() == 0


def test_remove_all_at_a_terminal_asks_and_keeps_them_on_no(
    engine: Engine, env: dict[str, str]
) -> None:
    import pty

    cars, _ = make_dead_letter(engine, "Cars")
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*CLI_MODULE, "--engine", ENGINE_SPEC, "dead", "remove", "--all"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        cwd=REPO,
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 60
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        seen += os.read(primary, 4096)
    os.write(primary, b"n\n")
    assert process.wait(timeout=60) == 1
    os.close(primary)
    assert b"remove 1 dead letter(s)?" in seen
    assert cars.encode() in seen
    assert engine.dead_letters.count() == 1


def test_remove_all_with_yes_clears_the_group_and_says_how_many(engine: Engine) -> None:
    make_dead_letter(engine, "Cars")
    make_dead_letter(engine, "Boats")

    result = run(engine, "dead", "remove", "--all", "--group", "counters", "--yes")

    assert result.exit_code == 0, result.output
    assert "removed 2 dead letter(s) of group counters" in result.stdout
    assert engine.dead_letters.count() == 0


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["retry", "catalog/1-0", "--all"], "not both"),
        (["retry"], "give a dead letter ID"),
        (["remove"], "give a dead letter ID"),
        (["remove", "catalog/1-0", "--group", "catalog"], "--group only applies with --all"),
        (["remove", "catalog/1-0", "--yes"], "--yes only confirms --all"),
        (["retry", "--all", "--group", "nope"], "unknown async group 'nope'"),
    ],
)
def test_contradictory_or_missing_arguments_are_usage_errors(
    engine: Engine, args: list[str], said: str
) -> None:
    make_dead_letter(engine, "Cars")

    result = run(engine, "dead", *args)

    assert result.exit_code == 2
    assert said in result.stderr
    assert engine.dead_letters.count() == 1


# --- consume


def test_consume_applies_what_is_pending_and_reports_each_group(engine: Engine) -> None:
    ctx = engine.new_context()
    ctx.new_entity(models.Note, text="a")
    ctx.new_entity(models.Note, text="b")
    ctx.new_entity(models.Counter, name="hits")
    ctx.flush_async()

    result = run(engine, "consume", "--group", "notes")

    assert result.exit_code == 0, result.output
    [notes_line] = [line for line in result.stdout.splitlines() if line.startswith("notes")]
    assert notes_line.split() == ["notes", "1", "2", "0"]
    assert "counters" not in result.stdout
    assert sql(engine, "SELECT COUNT(*) FROM `note`") == [(2,)]
    assert engine.async_stats()["counters"].pending == 1  # not asked for, not touched


# --- services down


def test_an_unreachable_redis_exits_3_naming_redis(mysql_url: str, key_prefix: str) -> None:
    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(mysql_url)
    registry.register_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    registry.register_entity(*models.ALL)
    engine = registry.validate()
    try:
        result = run(engine, "dead", "list")
    finally:
        engine.close()

    assert result.exit_code == 3
    assert "Redis" in result.stderr


# --- --engine, in process (error paths import nothing that connects)


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("tests.support.cli_engine", "is not 'module:attribute'"),
        ("myapp_that_does_not_exist.orm:engine", "No module named 'myapp_that_does_not_exist'"),
        ("tests.support.cli_engine:nothing_here", "has no attribute 'nothing_here'"),
        ("tests.support.cli_engine:not_an_engine", "is a str, not an Engine"),
        ("beeorm_celery:Engine", "is a class (Engine), not an Engine"),
        ("tests.support.cli_engine:broken_factory", "the factory could not reach its settings"),
    ],
)
def test_a_bad_engine_exits_2_with_a_message_saying_what_is_wrong(spec: str, said: str) -> None:
    result = run(None, "--engine", spec, "stats")

    assert result.exit_code == 2
    assert said in result.stderr
    assert spec in result.stderr


def test_no_engine_at_all_exits_2_and_says_how_to_give_one() -> None:
    result = run(None, "stats", env={"BEEORM_ENGINE": ""})

    assert result.exit_code == 2
    assert "--engine" in result.stderr and "BEEORM_ENGINE" in result.stderr


def test_help_needs_no_engine_and_documents_the_exit_codes() -> None:
    result = run(None, "dead", "remove", "--help")

    assert result.exit_code == 0
    assert "Exit codes:" in result.stdout
    assert "--yes" in result.stdout


# --- the console script, in a subprocess


@pytest.fixture
def env(mysql_url: str, redis_url: str, key_prefix: str) -> dict[str, str]:
    """What ``tests.support.cli_engine`` builds the subprocess's engine from."""
    return console_env(mysql_url, redis_url, key_prefix, **WIDE)


def test_console_script_finds_the_engine_in_BEEORM_ENGINE_and_prints_only_json(
    engine: Engine, env: dict[str, str]
) -> None:
    make_dead_letter(engine, "Cars")
    env["BEEORM_ENGINE"] = "tests.support.cli_engine:engine"

    done = run_console(["dead", "list", "--json"], env)

    assert done.returncode == 0, done.stderr
    [dead] = json.loads(done.stdout)
    assert dead["error_code"] == 1062
    assert done.stderr == ""


def test_python_dash_m_takes_a_factory_and_retries_a_dead_letter(
    engine: Engine, env: dict[str, str]
) -> None:
    dead_id, counter_id = make_dead_letter(engine, "Cars")
    sql(engine, "DELETE FROM `counter` WHERE `id` <> %s", counter_id)
    command = [
        sys.executable,
        "-m",
        "beeorm_celery.cli",
        "--engine",
        "tests.support.cli_engine:build",
    ]

    retried = subprocess.run(
        [*command, "dead", "retry", dead_id],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    consumed = subprocess.run(
        [*command, "consume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )

    assert retried.returncode == 0, retried.stderr
    assert consumed.returncode == 0, consumed.stderr
    assert counter_ids(engine, "Cars") == [counter_id]


def test_a_module_that_fails_to_import_exits_2_showing_its_traceback(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "broken_orm.py").write_text("import json\nengine = json.loads('{')\n")

    done = run_console(["--engine", "broken_orm:engine", "stats"], env, cwd=tmp_path)

    assert done.returncode == 2
    assert "importing 'broken_orm' failed" in done.stderr
    assert "broken_orm.py" in done.stderr and "JSONDecodeError" in done.stderr


class Background:
    """The console script running in the background, its output going to files."""

    def __init__(self, args: list[str], env: dict[str, str], directory: Path) -> None:
        self.stdout_path = directory / "stdout.txt"
        self.stderr_path = directory / "stderr.txt"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [str(CONSOLE_SCRIPT), *args], cwd=REPO, env=env, stdout=out, stderr=err
            )

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=15)


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Callable[[list[str], dict[str, str]], Background]]:
    started: list[Background] = []

    def start(args: list[str], env: dict[str, str]) -> Background:
        directory = tmp_path / f"run{len(started)}"
        directory.mkdir()
        started.append(Background(args, env, directory))
        return started[-1]

    yield start
    for run_ in started:
        if run_.process.poll() is None:
            run_.process.kill()
            run_.process.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_consume_block_applies_new_batches_until_a_signal_then_reports_and_exits_0(
    engine: Engine,
    env: dict[str, str],
    background: Callable[[list[str], dict[str, str]], Background],
    sig: signal.Signals,
) -> None:
    env["BEEORM_ENGINE"] = "tests.support.cli_engine:engine"
    consumer = background(["consume", "--block", "--json"], env)
    wait_until(lambda: "consuming" in consumer.stderr(), timeout_s=30, message=consumer.stderr())

    ctx = engine.new_context()
    ctx.new_entity(models.Note, text="while it waits")
    ctx.flush_async()  # queued after the consumer started: it must pick it up by itself
    wait_until(lambda: sql(engine, "SELECT COUNT(*) FROM `note`") == [(1,)], timeout_s=15)
    started = time.monotonic()
    code = consumer.stop(sig)

    assert code == 0, consumer.stderr()
    assert time.monotonic() - started < 5  # it stops at the end of its current wait
    assert json.loads(consumer.stdout())["notes"]["applied_batches"] == 1


def test_stats_watch_refreshes_until_ctrl_c_and_exits_0(
    engine: Engine,
    env: dict[str, str],
    background: Callable[[list[str], dict[str, str]], Background],
) -> None:
    env["BEEORM_ENGINE"] = "tests.support.cli_engine:engine"
    watch = background(["stats", "--watch", "--interval", "0.2"], env)
    # not a terminal: each refresh is appended, so the count of frames shows it refreshing
    wait_until(
        lambda: watch.stdout().count("every 0.2s") >= 1, timeout_s=30, message=watch.stderr()
    )
    ctx = engine.new_context()
    ctx.new_entity(models.Note, text="seen by the next frame")
    ctx.flush_async()
    frames = watch.stdout().count("every 0.2s")
    wait_until(lambda: watch.stdout().count("every 0.2s") >= frames + 2, timeout_s=10)

    code = watch.stop(signal.SIGINT)

    assert code == 0, watch.stderr()
    last_frame = watch.stdout().rsplit("async flush", 1)[1]
    [notes_line] = [line for line in last_frame.splitlines() if line.startswith("notes")]
    assert notes_line.split()[1] == "1"
