"""``make chaos``: a bounded fault run checked against a sequential oracle.

Producer processes flush random inserts, edits and deletes of their own rows in three async
groups while the run SIGKILLs workers, crashes and restarts MariaDB, holds row locks (1205),
forces deadlocks (1213), and pushes garbage into the Celery queues and the groups' logs. Then
the workers drain, and MySQL, an audit of every row change, the caches and the dead letters are
compared with the oracles (see chaos_check.py). The run prints what it did and what it found;
everything found must be zero except the dead letters it provoked.

MariaDB is a private server the run installs in a scratch directory, so restarting it never
disturbs anyone else's tests. So is the Redis that holds the logs and caches (AOF everysec),
which the run SIGKILLs and restarts; the Celery broker is the shared Redis, under a key prefix
of the run's own.

    python -m bench.chaos            # the full run, a few minutes
    python -m bench.chaos --short    # the version `make test` runs, well under a minute
    python -m bench.chaos --seed 7 --keep
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from beeorm_celery import Engine
from bench.chaos_app import Endpoints, build_engine, connect
from bench.chaos_check import Checker, Findings
from bench.chaos_deploy import NEW_RELEASE, rolling_deploy
from bench.chaos_faults import FAULT_KINDS, FaultLog, Faults
from bench.chaos_mariadb import PrivateMariaDB
from bench.chaos_models import BY_TABLE, GROUPS, audit_sql
from bench.chaos_oracle import Oracle
from bench.chaos_procs import Processes
from bench.chaos_producer import Producer, ProducerPlan, plan_json
from bench.chaos_redis import PrivateRedis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"

# The applier's settings for the run: a short lock wait so held locks turn into 1205 quickly,
# short backoffs and a frequent sweep so a bounded run also drains in bounded time.
ASYNC_OPTIONS: dict[str, Any] = {
    "lock_wait_timeout_s": 1,
    "retry_backoff_s": 0.5,
    "retry_backoff_max_s": 4.0,
    "sweep_interval_s": 2.0,
    "sweep_min_age_s": 1.0,
    "trigger_ttl_s": 10.0,
    "max_batches_per_transaction": 50,
    # The rolling deploy's batches wait for the workers and the migration: far less than this.
    "schema_lag_dead_letter_after_s": 300.0,
}


@dataclass(frozen=True)
class ChaosConfig:
    producers: int
    plan: ProducerPlan
    workers: int
    concurrency: int
    max_faults: int
    fault_seconds: float  # no new random fault after this long (each kind still runs once)
    fault_pause_s: tuple[float, float]
    mariadb_down_s: tuple[float, float]
    lock_hold_s: float
    drain_timeout_s: float
    seed: int
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    rolling_deploy: bool = True  # release 2 of the entities halfway through the faults
    redis_url: str | None = None  # the broker's; None: BEEORM_TEST_REDIS_URL, or the default
    redis_aof: bool = True  # False: the log's Redis keeps nothing, so a restart loses data
    async_options: dict[str, Any] = field(default_factory=lambda: dict(ASYNC_OPTIONS))
    backend: str = "celery"  # or "dramatiq": which workers apply the batches


FULL = ChaosConfig(
    producers=3,
    plan=ProducerPlan(max_flushes=1500, max_seconds=170, poison_every=97),
    workers=2,
    concurrency=2,
    max_faults=80,
    fault_seconds=150,
    fault_pause_s=(0.5, 2.5),
    mariadb_down_s=(0.5, 3.0),
    lock_hold_s=2.5,
    drain_timeout_s=180,
    seed=1,
)

SHORT = ChaosConfig(
    producers=2,
    plan=ProducerPlan(max_flushes=400, max_seconds=40, poison_every=41),
    workers=2,
    concurrency=1,
    max_faults=len(FAULT_KINDS),  # each kind once
    fault_seconds=30,
    fault_pause_s=(0.3, 0.8),
    mariadb_down_s=(0.5, 1.5),
    lock_hold_s=2.2,
    drain_timeout_s=90,
    seed=1,
)


@dataclass
class ChaosReport:
    config: ChaosConfig
    faults: FaultLog
    oracles: list[Oracle]
    findings: Findings
    seconds: float
    run_dir: Path | None  # kept for a look at the logs

    @property
    def ok(self) -> bool:
        return self.findings.ok and not self.producer_errors and not self.worker_deaths

    @property
    def producer_errors(self) -> list[str]:
        return [e for o in self.oracles for e in o.errors]

    @property
    def worker_deaths(self) -> int:
        return self.faults.counts.get("worker_died", 0)

    def render(self) -> str:
        f = self.findings
        ops: dict[str, int] = {"i": 0, "u": 0, "d": 0}
        for o in self.oracles:
            for kind, n in o.ops.items():
                ops[kind] += n
        flushes = sum(o.flushes for o in self.oracles)
        batches = sum(sum(o.batches.values()) for o in self.oracles)
        poison = sum(len(o.poison) for o in self.oracles)
        garbage = sum(len(v) for v in self.faults.garbage_entries.values())
        lines = [
            f"fault run, seed {self.config.seed}, {self.config.backend} workers, "
            f"{self.seconds:.0f}s",
            "",
            "what it did",
            f"  producers          {len(self.oracles) - 1} processes, and the run's own rows",
            f"  flushes            {flushes}: {ops['i']} inserts, {ops['u']} edits, "
            f"{ops['d']} deletes, in {batches} batches",
        ]
        for kind in (*FAULT_KINDS, "rolling_deploy", "fault_failed", "worker_died"):
            n = self.faults.counts.get(kind, 0)
            if n or kind in FAULT_KINDS:
                lines.append(f"  {kind:<18} {n}")
        refused = sum(o.refused for o in self.oracles)
        lines += [
            f"  provoked           {poison} duplicate-key batches, {garbage} garbage log entries",
            f"  refused by Redis   {refused} flushes while it was down (flushed again after)",
            "",
            "what the workers met",
            "  temporary errors   "
            + (", ".join(f"{c} x{n}" for c, n in sorted(f.worker_errors.items())) or "none"),
        ]
        for what, n in sorted(f.worker_log.items()):
            lines.append(f"  {what:<28} {n}")
        lines += [
            "",
            "what it found",
            f"  rows checked       {f.rows_checked}, changes checked {f.changes_checked}",
            f"  lost               {f.lost}",
            f"  doubled            {f.doubled}",
            f"  out of order       {f.out_of_order}",
            f"  wrong final state  {f.wrong_state}",
            f"  cache mismatches   {f.cache_mismatches}",
            f"  cache vs MySQL     {f.cache_diverged} rows differ (verify_cache)",
            f"  left in the logs   {sum(f.pending.values())}",
            f"  log losses         {sum(f.log_losses.values())} (logs Redis lost at a restart)",
            f"  dead letters       {f.dead_letters_provoked} provoked (all expected), "
            f"{f.dead_letters_missing} provoked but missing, "
            f"{f.dead_letters_unexpected} unexpected",
            f"  poison applied     {f.poison_applied}",
            f"  rolling deploy     {f.deploy_new_rows} rows by the new release, "
            f"{f.deploy_default_rows} old-release inserts took the new column's default",
            "  tasks failed       "
            + (", ".join(f"{e} x{n}" for e, n in sorted(f.worker_failures.items())) or "0"),
            f"  workers died       {self.worker_deaths}",
            f"  producer errors    {len(self.producer_errors)}",
            "  batches per group  "
            + ", ".join(
                f"{g} {f.batches_applied.get(g, 0)}/{f.batches_expected.get(g, 0)}" for g in GROUPS
            ),
        ]
        if f.details or self.producer_errors:
            lines += ["", "details (the first few of each kind)"]
            for kind, shown in f.details.items():
                lines += [f"  {kind}:"] + [f"    {d}" for d in shown]
            lines += [f"  producer: {e.strip().splitlines()[-1]}" for e in self.producer_errors]
        lines += ["", "PASS" if self.ok else "FAIL"]
        if self.run_dir is not None:
            lines.append(f"logs: {self.run_dir}")
        return "\n".join(lines)


class _Run:
    """One fault run's resources; ``close()`` releases every one of them."""

    def __init__(self, config: ChaosConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.say = say
        self.rng = random.Random(config.seed)
        self.dir = Path(tempfile.mkdtemp(prefix="beeorm-chaos-"))
        self.mariadb = PrivateMariaDB()
        shared = config.redis_url or os.environ.get("BEEORM_TEST_REDIS_URL", DEFAULT_REDIS_URL)
        # The logs and caches on a Redis of the run's own, so it can be killed and restarted.
        self.redis = PrivateRedis(aof=config.redis_aof)
        self.endpoints = Endpoints(
            mysql_url=self.mariadb.url,
            redis_url=self.redis.url(),
            broker_url=shared.rsplit("/", 1)[0] + "/14",
            prefix=f"chaos{uuid.uuid4().hex[:8]}",
            async_options=config.async_options,
            backend=config.backend,
        )
        self.processes = Processes(self.endpoints.env(), self.dir, config.concurrency)
        self._engine: Engine | None = None
        self.faults: Faults | None = None
        self.deployed = False  # the rolling deploy ran: producer N+1 is release 2

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "setup() builds the run's engine"
        return self._engine

    def setup(self) -> Producer:
        self.say(f"private MariaDB on port {self.mariadb.port}, scratch {self.dir}")
        self.redis.start()
        self.mariadb.install()
        self.mariadb.start()
        self.mariadb.create_database()
        self._engine, _app = connect(self.endpoints, sweep=False)
        self.engine.update_schema()
        with self.engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
            for statement in audit_sql():
                cursor.execute(statement)
        for _ in range(self.config.workers):
            self.processes.start_worker(wait=False)
        for worker in self.processes.workers:
            worker.wait_ready()
        own = Producer(self.engine, 0, random.Random(self.config.seed * 7919))
        for table in BY_TABLE:
            own.insert_flush(table, 4)
        if not self.drain(60):
            logs = "\n".join(w.log()[-2000:] for w in self.processes.workers)
            raise RuntimeError(f"the workers did not apply the first batches in 60s:\n{logs}")
        return own

    def _producer_args(self, n: int) -> list[str]:
        return [
            str(n),
            str(self.config.seed * 1000 + n),
            plan_json(self.config.plan),
            str(self.dir / f"oracle-{n}.json"),
            str(self.dir / "stop"),
        ]

    def start_producers(self) -> Path:
        for n in range(1, self.config.producers + 1):
            self.processes.start_producer(self._producer_args(n), f"producer-{n}.log")
        return self.dir / "stop"

    @property
    def producer_ids(self) -> list[int]:
        return list(range(1, self.config.producers + 1 + (1 if self.deployed else 0)))

    def fault_phase(self, faults: Faults) -> None:
        config = self.config
        kinds = list(config.fault_kinds)
        self.rng.shuffle(kinds)  # every kind once first, in a random order, then at random
        deadline = time.monotonic() + config.fault_seconds
        halfway = time.monotonic() + config.fault_seconds / 2
        for n in range(config.max_faults):
            # Every kind runs once whatever the clock says: a slow step (a warm shutdown in the
            # rolling deploy waiting on a task) must not leave a kind out of the run. The
            # deadline and the producers' end only stop the random faults after that.
            if n >= len(kinds) and (
                time.monotonic() > deadline
                or all(p.poll() is not None for p in self.processes.producers)
            ):
                break
            time.sleep(self.rng.uniform(*config.fault_pause_s))
            midway = time.monotonic() >= halfway or n == config.max_faults // 2
            if config.rolling_deploy and not self.deployed and midway:
                self.deployed = True
                rolling_deploy(
                    self.endpoints,
                    self.processes,
                    self._producer_args(config.producers + 1),
                    faults.log,
                )
                self.say(faults.log.events[-1])
            kind = kinds[n] if n < len(kinds) else self.rng.choice(config.fault_kinds)
            faults.run(kind)
            faults.replace_dead_workers()
            self.say(faults.log.events[-1])

    def drain(self, timeout_s: float) -> bool:
        """Wait until every group's log is empty; True if it got there."""
        client = self.engine.redis(self.engine.async_redis_pool)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.faults is not None:
                self.faults.replace_dead_workers()
            if not self.processes.live_workers():
                self.processes.start_worker(wait=False)
            if all(client.xlen(self.engine.keys.log(g)) == 0 for g in GROUPS):
                return True
            time.sleep(0.25)
        return False

    def close(self, keep_dir: bool) -> None:
        try:
            self.processes.close()
        finally:
            try:
                if self.faults is not None:
                    self.faults.close()
                if self._engine is not None:
                    self._engine.close()
            finally:
                self.mariadb.close()
                self.redis.close()
                _delete_keys(self.endpoints.broker_url, self.endpoints.prefix)
                if not keep_dir:
                    shutil.rmtree(self.dir, ignore_errors=True)


def run(config: ChaosConfig, say: Callable[[str], None] = print, keep: bool = False) -> ChaosReport:
    started = time.monotonic()
    state = _Run(config, say)
    report: ChaosReport | None = None
    try:
        own = state.setup()
        stop = state.start_producers()
        faults = Faults(
            endpoints=state.endpoints,
            engine=state.engine,
            mariadb=state.mariadb,
            processes=state.processes,
            own_rows=own,
            rng=state.rng,
            lock_hold_s=config.lock_hold_s,
            mariadb_down_s=config.mariadb_down_s,
            log_redis=state.redis,
        )
        state.faults = faults
        say(f"{config.producers} producers and {config.workers} workers running; faults begin")
        state.fault_phase(faults)
        stop.touch()
        for producer in state.processes.producers:
            producer.wait(timeout=120)
        if not state.mariadb.running:
            state.mariadb.start()
        if not state.redis.running:
            state.redis.start()
        say("faults over; draining")
        drained = state.drain(config.drain_timeout_s)
        say("drained" if drained else f"not drained after {config.drain_timeout_s:.0f}s")
        oracles = [own.oracle]
        for n in state.producer_ids:
            path = state.dir / f"oracle-{n}.json"
            if path.exists():
                oracles.append(Oracle.load(path))
            else:
                broken = Oracle(n)
                broken.errors.append(f"producer {n} wrote no oracle (see producer-{n}.log)")
                oracles.append(broken)
        logs = sorted(state.dir.glob("w*.log"))
        # nothing cached locally from the run itself; the release the fleet runs at the end
        release = NEW_RELEASE if state.deployed else 1
        reader = build_engine(replace(state.endpoints, release=release))
        new_producer = config.producers + 1 if state.deployed else None
        try:
            findings = Checker(state.engine, reader, oracles, faults.log, new_producer).run(logs)
        finally:
            reader.close()
        report = ChaosReport(
            config, faults.log, oracles, findings, time.monotonic() - started, None
        )
        if not report.ok and keep is False:
            keep = True  # a failed run keeps its logs
        if keep:
            report.run_dir = state.dir
        return report
    finally:
        state.close(keep_dir=keep or report is None)


def _delete_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--short", action="store_true", help="the short version make test runs")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the logs of a passing run")
    parser.add_argument(
        "--no-aof",
        action="store_true",
        help="run the log's Redis without persistence: its restarts lose data, and the report "
        "must say so (FAIL, with the log losses)",
    )
    parser.add_argument(
        "--backend",
        choices=("celery", "dramatiq"),
        default=os.environ.get("BACKEND") or "celery",
        help="the workers that apply the batches (default celery; $BACKEND, as in "
        "`make chaos BACKEND=dramatiq`)",
    )
    args = parser.parse_args(argv)
    config = replace(SHORT if args.short else FULL, backend=args.backend)
    if args.no_aof:
        config = replace(config, redis_aof=False)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    report = run(config, keep=args.keep)
    print()
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
