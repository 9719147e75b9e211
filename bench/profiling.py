"""``BENCH_PROFILE=1``: pyinstrument around the bench's own phases (the producer side).

The workers are profiled by py-spy (see workers.py). Profiles go to bench/profiles/; figures
measured while profiling carry the profilers' overhead and are for reading profiles only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def producer_profile(directory: Path | None, name: str) -> Iterator[None]:
    if directory is None:
        yield
        return
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("BENCH_PROFILE=1 needs pyinstrument: pip install -e '.[dev]'") from None
    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        (directory / f"{name}.producer.txt").write_text(
            profiler.output_text(unicode=False, color=False, show_all=False)
        )
        (directory / f"{name}.producer.html").write_text(profiler.output_html())


_LINE_NUMBER = re.compile(r":\d+\)$")
# Inclusive times are listed for these packages' frames: the code a bench figure depends on
# (celery, click and billiard frames sit under every sample and would fill the list).
_INTERESTING = ("beeorm_celery/", "bench/", "pymysql/", "redis/", "json/", "kombu/")


def summarize_pyspy(raw_path: Path, top: int = 25) -> Path:
    """A text summary of a py-spy ``--format raw`` file: where the worker's CPU went.

    py-spy samples only threads that are running (not waiting on a socket), so the shares are
    shares of CPU time. Writes ``<name>.summary.txt`` beside the raw file and returns its path.
    """
    per_process: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # with --subprocesses a pool process's stack starts with its parent's "process" frame
        processes = [f.split(":", 1)[0] for f in frames if f.startswith("process ")]
        per_process[processes[-1] if processes else "?"] += count
        names = [_LINE_NUMBER.sub(")", f) for f in frames if not f.startswith("process ")]
        if names:
            self_time[names[-1]] += count
        for name in set(names):
            if any(p in name for p in _INTERESTING):
                inclusive[name] += count
    total = sum(per_process.values()) or 1
    out = [f"py-spy samples: {total} (running threads only, {raw_path.name})", ""]
    out.append("per process:")
    out += [f"  {n:7d} {n / total:6.1%}  {p}" for p, n in per_process.most_common()]
    out += ["", f"top {top} by self time (the frame on top of the stack):"]
    out += [f"  {n:7d} {n / total:6.1%}  {f}" for f, n in self_time.most_common(top)]
    out += ["", f"top {top} by inclusive time (the frame anywhere in the stack):"]
    out += [f"  {n:7d} {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    summary = raw_path.with_suffix(".summary.txt")
    summary.write_text("\n".join(out) + "\n")
    return summary
