"""Every code block of README.md runs as written, against the real MySQL, Redis and the CLI.

The Python blocks are one story (entities, then the engine, then dead letters, then async
reads): they run in order, in one subprocess. Only the service locations are swapped for this
test's fresh database and key prefix (``SERVICE_LOCATIONS``: each must appear in the README, so a
rename here cannot silently stop the swap). A block that names a file in its first comment
(``# worker/__init__.py``) is that file: it runs alone, from the repository, as the file would.

Bash lines run one by one from the repository with the example app's variables pointing at the
same fresh database. Lines that start long-running processes or the suite itself are in
``NOT_RUN``, each with its reason; every other line runs, and a line that is in neither list
fails the test, so a new README line is either run or explicitly excused.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.sql import query

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent

# README bash lines (by their start) that do not run here, and why
NOT_RUN = {
    "make demo": "long-running (a worker through 20,000 entities); docs/demo.md, make demo",
    "make test": "the suite itself, which this test is part of",
    "make install": "make test has just done it; reinstalling would swap the venv under the suite",
    "make worker": "a worker that runs until Ctrl-C; real workers run in test_celery_smoke",
    "make check": "lint, typecheck and the suite: what CI (.ci/run) runs around this test",
    "make bench": "long-running benchmark (minutes)",
    "make chaos": "long-running fault run; a short one runs in test_chaos_short",
    "beeorm-celery --engine shop.orm:engine stats --watch": (
        "refreshes until Ctrl-C; test_cli stops a --watch with a signal"
    ),
    "beeorm-celery --engine shop.orm:engine consume --block": (
        "runs until SIGTERM; test_cli stops a --block with a signal"
    ),
}
# the README's example dead-letter id names no real dead letter: those lines must say so
EXAMPLE_DEAD_LETTER = "catalog/1700000000000-0"


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # where the code starts in README.md
    code: str

    @property
    def file(self) -> str | None:
        """The file the block is, when its first line is a comment naming a .py path."""
        found = re.match(r"#\s*([\w/]+\.py)\b", self.code)
        return found.group(1) if found else None


def readme_blocks() -> list[Block]:
    blocks = []
    for found in re.finditer(r"^```(\w+)\n(.*?)^```$", README.read_text(), re.S | re.M):
        line = README.read_text()[: found.start()].count("\n") + 2
        blocks.append(Block(found.group(1), line, found.group(2)))
    return blocks


@pytest.fixture
def locations(mysql_url: str, redis_url: str, key_prefix: str) -> dict[str, str]:
    """What the README writes for a service -> this test's own (fresh database, own prefix)."""
    return {
        "mysql://root@127.0.0.1:3306/test": mysql_url,
        "redis://127.0.0.1:6379/0": redis_url,
        "Registry()": f"Registry(key_prefix={key_prefix!r})",
    }


@pytest.fixture
def app_env(mysql_url: str, redis_url: str, broker_url: str, key_prefix: str) -> dict[str, str]:
    """The example app's variables (shop/orm.py, celeryconfig.py) on this test's services."""
    return {
        **os.environ,
        "BEEORM_MYSQL_URL": mysql_url,
        "BEEORM_REDIS_URL": redis_url,
        "BEEORM_KEY_PREFIX": key_prefix,
        "BEEORM_BROKER_URL": broker_url,
        "BEEORM_BROKER_KEY_PREFIX": key_prefix,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
    }


# Between two README blocks, state the next block needs to show its point (not README code).
BEFORE_DEAD_LETTERS = textwrap.dedent(
    """
    # --- test harness: a dead letter in catalog for the next block to list and retry
    from beeorm_celery import consume_async_flush_events as _consume
    _dup = ctx.new_entity(Category, name="Taken")
    ctx.flush_async()
    with engine.mysql["default"].connection() as _conn, _conn.cursor() as _cursor:
        _cursor.execute(
            "INSERT INTO `category` (`id`, `name`) VALUES (%s, 'Taken')", (_dup.id + 1000,)
        )
    _consume(engine)
    assert engine.dead_letters.count("catalog") == 1, engine.dead_letters.list()
    """
)
AFTER_ALL = textwrap.dedent(
    """
    # --- test harness: what the story did
    assert fastest in (0, 1, 2), fastest
    print("README story ran:", ctx.count(Product), "product(s),", len(items), "in stock")
    """
)


def test_the_python_blocks_run_in_order_as_one_story(
    locations: dict[str, str], tmp_path: Path
) -> None:
    story = [b for b in readme_blocks() if b.language == "python" and b.file is None]
    parts = []
    for block in story:
        if block.code.startswith("dl = engine.dead_letters"):
            parts.append(BEFORE_DEAD_LETTERS)
        parts.append(f"# --- README.md line {block.line}\n{block.code}")
    parts.append(AFTER_ALL)
    script = "\n".join(parts)
    for written, ours in locations.items():
        assert written in script, f"the README no longer writes {written!r}: update the test"
        script = script.replace(written, ours)
    assert BEFORE_DEAD_LETTERS in script, "the dead-letter block moved: update the test"
    path = tmp_path / "readme_story.py"
    path.write_text(script)

    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "README story ran: 1 product(s), 1 in stock" in done.stdout


def test_the_file_blocks_run_as_those_files(app_env: dict[str, str], tmp_path: Path) -> None:
    files = [b for b in readme_blocks() if b.language == "python" and b.file is not None]
    assert files, "no file block in the README: update the test"
    for block in files:
        assert block.file is not None
        source = (REPO / block.file).read_text()
        path = tmp_path / Path(block.file).name
        # the block, then a look at what it built (a Celery app with the apply task, or a
        # Dramatiq broker with the apply actor)
        built = "app.tasks" if "Celery(" in block.code else "broker.actors"
        path.write_text(block.code + f"\nprint(sorted(t for t in {built} if 'beeorm' in t))\n")

        done = subprocess.run(
            [sys.executable, str(path)],
            cwd=REPO,
            env={**app_env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert done.returncode == 0, f"README.md line {block.line}:\n{done.stderr}"
        assert "beeorm_celery.apply" in done.stdout
        # the README shows the file as it is in the repository (its code, if not its comments)
        code_lines = [ln for ln in block.code.splitlines() if ln and not ln.startswith("#")]
        assert all(ln in source for ln in code_lines), f"{block.file} and the README differ"


def test_the_bash_lines_run_or_are_excused_with_a_reason(
    app_env: dict[str, str], mysql_url: str
) -> None:
    lines = [
        (block.line + n, line.strip())
        for block in readme_blocks()
        if block.language == "bash"
        for n, line in enumerate(block.code.splitlines())
        if line.strip() and not line.strip().startswith("#")
    ]
    ran: list[str] = []
    for number, line in lines:
        command = line.split("#", 1)[0].strip() if " #" in line else line
        if any(command.startswith(skipped) for skipped in NOT_RUN):
            continue
        runnable = command.replace(".venv/bin/", f"{VENV_BIN}/")
        done = subprocess.run(
            ["bash", "-c", runnable],
            cwd=REPO,
            env=app_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        where = f"README.md line {number}: {command}\n{done.stdout}\n{done.stderr}"
        if EXAMPLE_DEAD_LETTER in shlex.split(command):
            assert done.returncode == 1, where
            assert f"no dead letter '{EXAMPLE_DEAD_LETTER}'" in done.stderr, where
        else:
            assert done.returncode == 0, where
        ran.append(command)

    assert any("update_schema" in c for c in ran), "the quick start's schema line did not run"
    tables = {row[0] for row in query_tables(mysql_url)}
    assert {"category", "product", "order"} <= tables  # the shop's tables, made by that line
    assert any(c.endswith("dead list") for c in ran)


def query_tables(mysql_url: str) -> list[tuple[str]]:
    from beeorm_celery import Registry

    registry = Registry()
    registry.register_mysql(mysql_url)
    engine = registry.validate()
    try:
        return [(str(r[0]),) for r in query(engine, "SHOW TABLES")]
    finally:
        engine.close()
