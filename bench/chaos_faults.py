"""The faults of a fault run, one method each; every one is bounded in time.

- ``kill_child`` / ``kill_worker``: SIGKILL a pool process, or a whole worker (then start a
  new one, as a supervisor would).
- ``mariadb_crash`` / ``mariadb_restart``: SIGKILL the (private) MariaDB, or shut it down
  cleanly; start it again after a moment.
- ``lock_wait``: hold a row lock longer than the applier's lock_wait_timeout while a batch
  updates that row (MySQL error 1205).
- ``deadlock``: make the applier and a lock holder wait for each other (MySQL error 1213), the
  holder heavier so InnoDB picks the applier as the victim.
- ``table_lock``: lock every row and gap of a producer table for a while (1205 on real traffic).
- ``garbage_queue`` / ``garbage_log``: push garbage into a group's Celery queue or its log.
- ``redis_restart``: SIGKILL the (private) Redis that holds the logs and caches, which runs with
  AOF ``appendfsync everysec``, and start it again on the same files after a moment.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymysql
import redis

from beeorm_celery.asyncflush.position import APPLIED_TABLE
from bench.chaos_garbage import dramatiq_queue_garbage, log_garbage, queue_garbage
from bench.chaos_models import BALLAST_TABLE, GROUP_OF_TABLE, GROUPS

if TYPE_CHECKING:
    from beeorm_celery import Engine
    from bench.chaos_app import Endpoints
    from bench.chaos_mariadb import PrivateMariaDB
    from bench.chaos_procs import Processes
    from bench.chaos_producer import Producer
    from bench.chaos_redis import PrivateRedis

FAULT_KINDS = (
    "kill_child",
    "kill_worker",
    "mariadb_crash",
    "mariadb_restart",
    "lock_wait",
    "deadlock",
    "table_lock",
    "garbage_queue",
    "garbage_log",
    "redis_restart",
)
# InnoDB refreshes its INNODB_TRX snapshot only when nobody read it for 0.1s: poll slower.
_PROBE_INTERVAL_S = 0.15
_POOL_WAIT_S = 90.0  # for a worker's pool processes to exist (kill_child)
_DEADLOCK_ATTEMPTS = 3
_DEADLOCK_WAIT_S = 6.0
_WORKER_VICTIM = "the worker was the victim"
_WAITERS_SQL = (
    "SELECT trx_mysql_thread_id, trx_query FROM information_schema.INNODB_TRX "
    "WHERE trx_state = 'LOCK WAIT'"
)


@dataclass
class FaultLog:
    """What the run did, for the report."""

    counts: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    garbage_entries: dict[str, list[str]] = field(default_factory=dict)  # group -> entry ids
    garbage_what: dict[str, str] = field(default_factory=dict)  # "group/entry id" -> what
    redis_pending_at_kill: list[int] = field(default_factory=list)  # log entries at each SIGKILL
    started: float = field(default_factory=time.monotonic)

    def note(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        self.events.append(f"{time.monotonic() - self.started:7.1f}s  {kind:<16} {detail}")


class Faults:
    def __init__(
        self,
        *,
        endpoints: Endpoints,
        engine: Engine,
        mariadb: PrivateMariaDB,
        processes: Processes,
        own_rows: Producer,
        rng: random.Random,
        lock_hold_s: float,
        mariadb_down_s: tuple[float, float],
        log_redis: PrivateRedis | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.engine = engine
        self.mariadb = mariadb
        self.processes = processes
        self.own_rows = own_rows
        self.rng = rng
        self.lock_hold_s = lock_hold_s
        self.mariadb_down_s = mariadb_down_s
        self.log_redis = log_redis
        self.log = FaultLog()
        self.data_redis = redis.Redis.from_url(endpoints.redis_url)
        self.broker_redis = redis.Redis.from_url(endpoints.broker_url)

    def run(self, kind: str) -> None:
        try:
            getattr(self, kind)()
        except pymysql.MySQLError as e:
            # The fault's own connection failed (MariaDB still recovering): note it, go on.
            self.log.note("fault_failed", f"{kind}: {e}")

    def close(self) -> None:
        self.data_redis.close()
        self.broker_redis.close()

    # --- workers

    def kill_child(self) -> None:
        # A worker started a moment ago (kill_worker's replacement, a Dramatiq worker replaced
        # after the last kill_child) forks its pool only once it is up, which takes seconds on
        # a loaded machine: wait for a pool process rather than skip the fault.
        deadline = time.monotonic() + _POOL_WAIT_S
        while True:
            workers = [w for w in self.processes.live_workers() if w.pool_children()]
            if workers:
                worker = self.rng.choice(workers)
                pid = worker.kill_one_child(self.rng)
                if pid is not None:  # None: its pool went away between the two looks
                    break
            if time.monotonic() > deadline:
                self.log.events.append(f"(no pool process to kill in {_POOL_WAIT_S:.0f}s)")
                return
            time.sleep(_PROBE_INTERVAL_S)
        self.log.note("kill_child", f"SIGKILL pool process {pid} of {worker.name}")
        if worker.killed:  # Dramatiq: the worker goes down with its process; replace it
            self.processes.start_worker(wait=False)

    def kill_worker(self) -> None:
        workers = self.processes.live_workers()
        if not workers:
            return
        worker = self.rng.choice(workers)
        worker.kill()
        replacement = self.processes.start_worker(wait=False)
        self.log.note(
            "kill_worker", f"SIGKILL {worker.name} and its pool; started {replacement.name}"
        )

    def replace_dead_workers(self) -> None:
        """A worker that died on its own is a finding; keep the run going with a new one."""
        for worker in self.processes.unexpected_exits():
            worker.killed = True  # counted once
            self.log.note(
                "worker_died", f"{worker.name} exited by itself ({worker.process.returncode})"
            )
            self.processes.start_worker(wait=False)

    # --- MariaDB

    def mariadb_crash(self) -> None:
        down = self.rng.uniform(*self.mariadb_down_s)
        self.mariadb.crash()
        time.sleep(down)
        started = time.monotonic()
        self.mariadb.start()
        self.log.note(
            "mariadb_crash",
            f"SIGKILL mariadbd, down {down:.1f}s, recovered in {time.monotonic() - started:.1f}s",
        )

    def mariadb_restart(self) -> None:
        down = self.rng.uniform(*self.mariadb_down_s)
        self.mariadb.shutdown()
        time.sleep(down)
        self.mariadb.start()
        self.log.note("mariadb_restart", f"clean shutdown, down {down:.1f}s, started again")

    # --- Redis

    def redis_restart(self) -> None:
        if self.log_redis is None:
            self.log.events.append("(redis_restart: the run's Redis is not its own)")
            return
        pending = self._pending()
        down = self.rng.uniform(*self.mariadb_down_s) / 2
        self.log_redis.crash()
        time.sleep(down)
        started = time.monotonic()
        self.log_redis.start()  # loads the AOF
        self.log.redis_pending_at_kill.append(pending)
        self.log.note(
            "redis_restart",
            f"SIGKILL redis-server ({'AOF everysec' if self.log_redis.aof else 'no persistence'}) "
            f"with {pending} batches pending, down "
            f"{down:.1f}s, loaded in {time.monotonic() - started:.1f}s",
        )

    def _pending(self) -> int:
        try:
            return sum(int(self.data_redis.xlen(self.engine.keys.log(g))) for g in GROUPS)
        except redis.RedisError:
            return -1

    # --- locks

    def _connect(self, lock_wait_timeout_s: int = 30) -> pymysql.connections.Connection[Any]:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=self.mariadb.port,
            user="root",
            database=self.mariadb.database,
            autocommit=False,
            connect_timeout=5,
        )
        with conn.cursor() as cursor:
            cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {lock_wait_timeout_s}")
        return conn

    def _own_row(self) -> tuple[str, str, int]:
        """(oracle key, table, id) of a row the run owns and no producer touches."""
        key = self.rng.choice(sorted(self.own_rows.live))
        table, raw_id = key.split(":", 1)
        return key, table, int(raw_id)

    def _waiters(self, probe: pymysql.connections.Connection[Any], table: str) -> int:
        with probe.cursor() as cursor:
            cursor.execute(_WAITERS_SQL)
            return sum(1 for _, query in cursor.fetchall() if query and f"`{table}`" in query)

    def lock_wait(self) -> None:
        key, table, row_id = self._own_row()
        holder, probe = self._connect(), self._connect()
        waited = False
        try:
            with holder.cursor() as cursor:
                cursor.execute(f"SELECT `id` FROM `{table}` WHERE `id` = %s FOR UPDATE", (row_id,))
            self.own_rows.edit_flush(key)  # the applier must update exactly this row
            deadline = time.monotonic() + self.lock_hold_s
            while time.monotonic() < deadline:
                waited = waited or self._waiters(probe, table) > 0
                time.sleep(_PROBE_INTERVAL_S)
            holder.rollback()
        finally:
            holder.close()
            probe.close()
        self.log.note(
            "lock_wait",
            f"held {table} row {row_id} for {self.lock_hold_s:.1f}s; "
            f"a worker {'waited on it' if waited else 'never came'}",
        )

    def deadlock(self) -> None:
        attempts = 0
        while True:
            attempts += 1
            table, row_id, outcome = self._deadlock_once()
            if outcome == _WORKER_VICTIM or attempts == _DEADLOCK_ATTEMPTS:
                break
        again = f" (attempt {attempts})" if attempts > 1 else ""
        self.log.note("deadlock", f"{table} row {row_id}: {outcome}{again}")

    def _deadlock_once(self) -> tuple[str, int, str]:
        key, table, row_id = self._own_row()
        group = GROUP_OF_TABLE[table]
        holder, probe = self._connect(lock_wait_timeout_s=5), self._connect()
        outcome = "no worker came in time"
        try:
            with holder.cursor() as cursor:
                # Weight: InnoDB rolls back the transaction that changed fewer rows.
                cursor.executemany(
                    f"INSERT INTO `{BALLAST_TABLE}` (`filler`) VALUES (%s)", [("ballast",)] * 400
                )
                cursor.execute(f"SELECT `id` FROM `{table}` WHERE `id` = %s FOR UPDATE", (row_id,))
            self.own_rows.edit_flush(key)
            # The applier holds its group's row while it waits for ours; asking for that row
            # now closes the cycle. Its wait ends after 1s (1205) and it comes back after a
            # backoff, so a group still backing off from an earlier fault shows up later.
            deadline = time.monotonic() + _DEADLOCK_WAIT_S
            while time.monotonic() < deadline:
                if self._waiters(probe, table):
                    try:
                        with holder.cursor() as cursor:
                            cursor.execute(
                                f"SELECT `last_batch_id` FROM `{APPLIED_TABLE}` "
                                "WHERE `async_group` = %s FOR UPDATE",
                                (group,),
                            )
                        outcome = _WORKER_VICTIM
                    except pymysql.err.OperationalError as e:
                        if e.args[0] != 1213:
                            raise
                        outcome = "the lock holder was the victim"
                    break
                time.sleep(_PROBE_INTERVAL_S)
            holder.rollback()
        finally:
            holder.close()
            probe.close()
        return table, row_id, outcome

    def table_lock(self) -> None:
        table = self.rng.choice(sorted(GROUP_OF_TABLE))
        holder, probe = self._connect(), self._connect()
        most = 0
        try:
            with holder.cursor() as cursor:
                # A full scan under REPEATABLE READ locks every row and every gap: UPDATEs,
                # DELETEs and INSERTs of that table all wait.
                cursor.execute(f"SELECT `id` FROM `{table}` FOR UPDATE")
                cursor.fetchall()
            deadline = time.monotonic() + self.lock_hold_s
            while time.monotonic() < deadline:
                most = max(most, self._waiters(probe, table))
                time.sleep(_PROBE_INTERVAL_S)
            holder.rollback()
        finally:
            holder.close()
            probe.close()
        self.log.note(
            "table_lock", f"locked all of {table} for {self.lock_hold_s:.1f}s; {most} waiter(s)"
        )

    # --- garbage

    def garbage_queue(self) -> None:
        group = self.rng.choice(GROUPS)
        if self.endpoints.backend == "dramatiq":
            self._dramatiq_garbage(group)
            return
        key = f"{self.endpoints.queue_key_prefix}beeorm.{group}"
        messages = queue_garbage(group, self.rng)
        for _, raw in messages:
            self.broker_redis.lpush(key, raw)
        self.log.note("garbage_queue", f"{len(messages)} messages into {key}")

    def _dramatiq_garbage(self, group: str) -> None:
        """A Dramatiq Redis queue is a list of message ids and a hash of their bodies."""
        key = f"{self.endpoints.dramatiq_namespace}:beeorm.{group}"
        messages = dramatiq_queue_garbage(group, self.rng)
        for n, (_, raw) in enumerate(messages):
            message_id = f"chaos-garbage-{uuid.uuid4().hex[:8]}-{n}"
            if raw is not None:  # None: an id with no body behind it
                self.broker_redis.hset(f"{key}.msgs", message_id, raw)
            self.broker_redis.rpush(key, message_id)
        self.log.note("garbage_queue", f"{len(messages)} messages into {key}")

    def garbage_log(self) -> None:
        table = self.rng.choice(sorted(GROUP_OF_TABLE))
        group = GROUP_OF_TABLE[table]
        key = self.engine.keys.log(group)
        pushed = 0
        for garbage in log_garbage(group, table, self.rng):
            entry_id = self.data_redis.xadd(key, garbage.fields)  # type: ignore[arg-type]
            entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            self.log.garbage_entries.setdefault(group, []).append(entry)
            self.log.garbage_what[f"{group}/{entry}"] = garbage.what
            pushed += 1
        self.log.note("garbage_log", f"{pushed} entries into {key}")
