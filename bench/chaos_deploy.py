"""A rolling deploy in the middle of the fault run: release 2 adds a column to every table.

In the order that tests the most (law 13):

1. a producer of release 2 starts (a new producer id, with its own oracle) while every worker
   and every table are still release 1: its batches name a column nobody knows, so they wait at
   the head of their groups ("schema ahead"), and everything queued behind them waits too;
2. the workers are replaced one by one (warm shutdown, then a release-2 worker): now the workers
   know the column but the tables lack it, MySQL answers 1054, the batches keep waiting;
3. ``update_schema()`` of release 2 adds the column: everything applies, in order. The release-1
   producers keep running: their inserts now apply with the column's default.

The oracle must still count 0 lost, 0 doubled, 0 out of order.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from bench.chaos_app import Endpoints, build_engine

if TYPE_CHECKING:
    from bench.chaos_faults import FaultLog
    from bench.chaos_procs import Processes

NEW_RELEASE = 2
_SCHEMA_AHEAD_WAIT_S = 10.0
_MIGRATE_ATTEMPTS_S = 60.0


def rolling_deploy(
    endpoints: Endpoints, processes: Processes, producer_args: list[str], log: FaultLog
) -> None:
    """Run the three steps; ``producer_args`` start the release-2 producer."""
    processes.env["CHAOS_RELEASE"] = str(NEW_RELEASE)  # every process started from now on
    started = time.monotonic()
    processes.start_producer(producer_args, f"producer-{producer_args[0]}.log")
    waited = _wait_for_schema_lag(processes)
    steps = [f"lag {time.monotonic() - started:.1f}s"]
    replaced = []
    for worker in list(processes.live_workers()):
        worker.killed = True  # stopped on purpose: not a worker that died
        stopping = time.monotonic()
        worker.stop()
        stopped = time.monotonic()
        replaced.append(processes.start_worker(wait=True).name)
        steps.append(
            f"{worker.name} stopped in {stopped - stopping:.1f}s, "
            f"{replaced[-1]} up in {time.monotonic() - stopped:.1f}s"
        )
    time.sleep(1.0)  # let the new workers meet the missing column (1054) before the migration
    migrating = time.monotonic()
    _migrate(replace(endpoints, release=NEW_RELEASE))
    steps.append(f"migrated in {time.monotonic() - migrating:.1f}s")
    log.note(
        "rolling_deploy",
        f"producer {producer_args[0]} on release {NEW_RELEASE} "
        f"({'schema lag seen' if waited else 'no schema lag seen yet'}); "
        f"workers replaced by {', '.join(replaced)}; tables migrated ({'; '.join(steps)})",
    )


def _wait_for_schema_lag(processes: Processes) -> bool:
    deadline = time.monotonic() + _SCHEMA_AHEAD_WAIT_S
    while time.monotonic() < deadline:
        if any("schema ahead" in w.log() for w in processes.live_workers()):
            return True
        time.sleep(0.2)
    return False


def _migrate(endpoints: Endpoints) -> None:
    """``update_schema()`` of the new release; MariaDB may be restarting under another fault."""
    engine = build_engine(endpoints)
    deadline = time.monotonic() + _MIGRATE_ATTEMPTS_S
    try:
        while True:
            try:
                engine.update_schema()
                return
            except Exception:  # the server is down for a moment: pymysql's or our own error
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        engine.close()
