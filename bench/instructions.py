"""``python -m bench.instructions``: CPU instructions the producer runs per ``flush_async()``.

The latency phase's microseconds swing by 15-40% between runs on a shared 2-core machine, so a
change of a few percent to the producer's Python cannot be seen there. Instruction counts can:
valgrind's callgrind counts them, the same for the same code and inputs whatever else the
machine is doing. This runs the producer under callgrind, counting only while
``functools.reduce`` runs the timed flushes (``--toggle-collect``): new entities of the latency
phase's model, flushed 1 and 10 at a time against the bench's Redis, no worker. Instructions
in Redis and in the kernel (the send and the reply) are not counted: only the producer's own.

Needs valgrind (``apt install valgrind``); it is not part of ``make bench``. Takes about a
minute per size. Compare runs of two revisions, not against other machines' figures.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys

from bench import models
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


def count(size: int, flushes: int = _FLUSHES) -> float:
    """Instructions per ``flush_async()`` of ``size`` new entities."""
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
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected\s*:\s*([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"bench.instructions: the counted run failed:\n{done.stderr[-3000:]}")
    return int(found.group(1).replace(",", "")) / flushes


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _run_flushes(int(sys.argv[2]), int(sys.argv[3]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt install valgrind)")
    for size in SIZES:
        per_flush = count(size)
        print(
            f"flush_async of {size:>2} new entities: {per_flush:,.0f} instructions "
            f"({per_flush / size:,.0f} per entity)"
        )


if __name__ == "__main__":
    main()
