"""Running the ``beeorm-celery`` console script in a subprocess, as an operator would, on the
engine ``tests.support.cli_engine`` builds from this test's database and key prefix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).with_name("beeorm-celery")
ENGINE_SPEC = "tests.support.cli_engine:engine"


def console_env(mysql_url: str, redis_url: str, key_prefix: str, **extra: str) -> dict[str, str]:
    """This process's environment, with what ``cli_engine`` builds the engine from."""
    return {
        **os.environ,
        "BEEORM_TEST_DB_URL": mysql_url,
        "BEEORM_TEST_REDIS_URL": redis_url,
        "BEEORM_TEST_PREFIX": key_prefix,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run_console(
    args: list[str],
    env: dict[str, str],
    cwd: Path = REPO,
    stdin: int | IO[Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``beeorm-celery *args`` to its end (60 s at most), its output captured as text."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=cwd,
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
