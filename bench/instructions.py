"""``python -m bench.instructions``: CPU instructions per ``flush_async()``, producer and Redis.

The latency phase's microseconds swing by 15-40% between runs on a shared 2-core machine, so a
change of a few percent to the producer's Python cannot be seen there. Instruction counts can:
valgrind's callgrind counts them, the same for the same code and inputs whatever else the
machine is doing. This runs the producer under callgrind, counting only while
``functools.reduce`` runs the timed flushes (``--toggle-collect``): new entities of the latency
phase's model, flushed 1 and 10 at a time, no worker. Their Redis is a private
``redis-server`` under callgrind too, counting only inside ``EVALSHA`` (the flush's script,
its arguments' way into Lua and its reply): the other half of a flush's CPU. The kernel's
part (the send, the wake-ups, the reply) is in neither figure.

Needs valgrind (``apt install valgrind``) and redis-server; it is not part of ``make bench``.
Takes about a minute per size. Compare runs of two revisions, not against other machines'
figures.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys

from bench import models
from bench.chaos_redis import PrivateRedis
from bench.harness import Harness
from bench.settings import BenchSettings

SIZES = (1, 10)
_FLUSHES = 200  # timed flushes per size (under callgrind: about 50x slower than natively)
_WARMUP = 20


def _run_flushes(size: int, flushes: int) -> None:
    """The child, under callgrind: ``flushes`` flushes of ``size`` new entities, counted."""
    harness = Harness(BenchSettings.from_env())
    harness.open()
    try:
        engine = harness.require_engine()
        # Block for the reply: polling would add instructions that depend on how fast Redis
        # answers under valgrind's slowed producer, not on the producer's code.
        engine.async_parts.log_caller().spin_plan.budget_ns = 0
        contexts = harness.new_contexts((models.LatencyRow,), (_WARMUP + flushes) * size, size)
        for ctx in contexts[:_WARMUP]:
            ctx.flush_async()
        # counted: everything under this reduce (callgrind --toggle-collect=functools_reduce)
        functools.reduce(lambda _, ctx: ctx.flush_async(), contexts[_WARMUP:], None)
    finally:
        harness.close()


class _CountedRedis(PrivateRedis):
    """A private redis-server under callgrind, counting only inside ``EVALSHA``."""

    def __init__(self) -> None:
        super().__init__()
        self.valgrind_log = self.base_dir / "callgrind.log"

    def _args(self) -> list[str]:
        return [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=evalShaCommand",
            "--callgrind-out-file=/dev/null",
            f"--log-file={self.valgrind_log}",
            *super()._args(),
        ]

    def instructions_per_call(self) -> float:
        """Shuts the server down (callgrind writes its totals then): instructions per
        ``EVALSHA`` that ran (refused ones, a missing script, are counted but cheap)."""
        client = self.client()
        stats = client.info("commandstats")["cmdstat_evalsha"]
        calls = int(stats["calls"]) - int(stats.get("failed_calls", 0))
        client.shutdown(nosave=True)  # (redis-py takes the connection's close as the answer)
        if self.process is not None:
            self.process.wait(timeout=60)
        return _collected(self.valgrind_log.read_text()) / calls


def _collected(valgrind_output: str) -> int:
    found = re.search(r"Collected\s*:\s*([\d,]+)", valgrind_output)
    if found is None:
        raise SystemExit(f"bench.instructions: no count in:\n{valgrind_output[-3000:]}")
    return int(found.group(1).replace(",", ""))


def count(size: int, flushes: int = _FLUSHES) -> tuple[float, float]:
    """Instructions per ``flush_async()`` of ``size`` new entities: the producer's, Redis's."""
    server = _CountedRedis()
    try:
        server.start()
        command = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=functools_reduce",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "bench.instructions",
            "--child",
            str(size),
            str(flushes),
        ]
        # the same dict layouts in every run: string hashing is randomised per process otherwise
        env = {**os.environ, "PYTHONHASHSEED": "0", "BENCH_REDIS_URL": server.url(11)}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"bench.instructions: the counted run failed:\n{done.stderr[-3000:]}")
        producer = _collected(done.stderr) / flushes
        return producer, server.instructions_per_call()
    finally:
        server.close()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _run_flushes(int(sys.argv[2]), int(sys.argv[3]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt install valgrind)")
    for size in SIZES:
        producer, in_redis = count(size)
        print(
            f"flush_async of {size:>2} new entities: {producer:,.0f} instructions in the "
            f"producer ({producer / size:,.0f} per entity), {in_redis:,.0f} in Redis"
        )


if __name__ == "__main__":
    main()
