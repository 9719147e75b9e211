"""What one bench run measures and where: sizes (full or ``BENCH_QUICK=1``) and service URLs.

Read from the environment only here, at the bench's edge. Every URL must point at the loopback
interface: the bench creates and drops a database and deletes Redis keys by prefix, so it must
never reach a shared server by mistake.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/beeorm_bench"
# A Redis database of its own as well as a key prefix: a crashed run leaves nothing in the
# databases that tests (15, 14) and the example app (0) use.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
DEFAULT_PREFIX = "beeorm_bench"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does. The full sizes are the ones issue 5 names."""

    latency_rounds: int  # timed flushes per (size, mode); PINGs likewise
    applied_rows: int  # rows of the main applied-throughput run and of each scaling run
    flush_size: int  # entities per flush_async in the throughput runs
    groups: int  # async groups the main run spreads its flushes over
    workers: int  # `celery worker -c N` of the main run
    raw_rows: int  # rows of the raw executemany baseline
    naive_rows: int  # rows of the naive one-task-per-row baseline (slow: about 500/s)
    reads_s: float  # how long each kind of read is repeated
    reads_rows: int  # rows each read entity holds
    memory_backlogs: tuple[int, int]  # two backlog sizes: peak RSS must not grow with them
    scaling_workers: tuple[int, ...]
    scaling_groups: tuple[int, ...]
    # rounds of the group points (1, 16, 64 groups at -c of the main run), their order
    # alternating: one run of each swung the ratios by 0.2 between two runs of the same code
    scaling_rounds: int
    # The same group points, longer: a point of ``applied_rows`` lasts about a second, so the
    # start and the end of a run (a wake-up per group, each group's last gathering window)
    # weigh in it, and one group's backlog has no time to grow beyond what one process applies
    sustained_rows: int
    sustained_rounds: int
    peer_rows: int  # rows of each run of the peer comparison (ours and the peer, 100 and 10)
    peer_rounds: int  # rounds of that comparison (who goes first alternates)
    edit_rows: int  # rows the edits phase edits (a multiple of 1,000)
    edits: int  # edits queued in flushes of 100, then drained; as many for the raw baseline
    freshness_probes: int  # probes of the flush_async -> MySQL latency, idle and under load
    freshness_load_rows_per_s: int  # rows/s the load process offers meanwhile
    unique_rounds: int = 100  # timed 100-entity flushes per mode of the unique-claim phase


FULL = Sizes(
    latency_rounds=2_000,
    applied_rows=100_000,
    flush_size=100,
    groups=4,
    workers=2,
    raw_rows=100_000,
    naive_rows=5_000,
    reads_s=3.0,
    reads_rows=1_000,
    memory_backlogs=(250_000, 1_000_000),
    scaling_workers=(1, 2, 4),
    scaling_groups=(1, 4, 16, 64),
    scaling_rounds=5,
    sustained_rows=300_000,
    sustained_rounds=3,
    peer_rows=100_000,
    peer_rounds=2,
    edit_rows=20_000,
    edits=100_000,
    freshness_probes=400,
    freshness_load_rows_per_s=20_000,
    unique_rounds=200,
)

# Under five minutes on the 2-core machine, with the same shape as the full run.
QUICK = Sizes(
    latency_rounds=300,
    applied_rows=20_000,
    flush_size=100,
    groups=4,
    workers=2,
    raw_rows=20_000,
    naive_rows=1_000,
    reads_s=1.0,
    reads_rows=500,
    memory_backlogs=(20_000, 80_000),
    scaling_workers=(1, 2, 4),
    scaling_groups=(1, 4, 16, 64),
    scaling_rounds=1,
    sustained_rows=60_000,
    sustained_rounds=1,
    peer_rows=20_000,
    peer_rounds=1,
    edit_rows=4_000,
    edits=20_000,
    freshness_probes=100,
    freshness_load_rows_per_s=20_000,
    unique_rounds=40,
)


@dataclass(frozen=True)
class BenchSettings:
    quick: bool
    sizes: Sizes
    mysql_url: str  # includes the bench's own database, created and dropped by the run
    redis_url: str  # data, id counters and async-flush logs
    broker_url: str  # the Celery broker (queues under the prefix, see celery_app)
    prefix: str  # every Redis key of the run starts with it, broker keys included
    profile: bool  # BENCH_PROFILE=1: py-spy on the workers, pyinstrument on the producer
    only: frozenset[str]  # BENCH_ONLY=applied,latency: run just these phases (empty: all)

    @property
    def database(self) -> str:
        return urlparse(self.mysql_url).path.lstrip("/")

    @property
    def mysql_server_url(self) -> str:
        """The URL without the database (to create and drop it)."""
        return urlunparse(urlparse(self.mysql_url)._replace(path="/"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BenchSettings:
        env = dict(os.environ if env is None else env)
        quick = env.get("BENCH_QUICK", "") not in ("", "0")
        redis_url = env.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
        settings = cls(
            quick=quick,
            sizes=QUICK if quick else FULL,
            mysql_url=env.get("BENCH_MYSQL_URL", DEFAULT_MYSQL_URL),
            redis_url=redis_url,
            broker_url=env.get("BENCH_BROKER_URL", redis_url),
            prefix=env.get("BENCH_PREFIX", DEFAULT_PREFIX),
            profile=env.get("BENCH_PROFILE", "") not in ("", "0"),
            only=frozenset(p.strip() for p in env.get("BENCH_ONLY", "").split(",") if p.strip()),
        )
        settings.check()
        return settings

    def check(self) -> None:
        for url in (self.mysql_url, self.redis_url, self.broker_url):
            host = urlparse(url).hostname or ""
            if host not in _LOOPBACK:
                raise SystemExit(f"bench: {url} is not on 127.0.0.1; the bench only runs locally")
        if not self.database.startswith("beeorm_bench"):
            # the run drops this database: refuse anything that could be someone's data
            raise SystemExit(f"bench: database {self.database!r} must start with 'beeorm_bench'")
        if not self.prefix.startswith("beeorm_bench"):
            raise SystemExit(f"bench: prefix {self.prefix!r} must start with 'beeorm_bench'")
