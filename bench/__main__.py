"""``python -m bench`` (``make bench``): every measurement of issue 5 in one run.

BENCH_QUICK=1 runs the same measurements smaller (under five minutes); BENCH_PROFILE=1 also
writes profiles to bench/profiles/; BENCH_ONLY=latency,applied runs just those phases (names
in PHASES). Results: a table on the terminal and bench/results.json.
"""

from __future__ import annotations

import os
import platform
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from bench import (
    baselines,
    builder,
    edits,
    freshness,
    latency,
    memory,
    peer,
    reads,
    report,
    throughput,
    unique,
)
from bench.harness import Harness
from bench.profiling import producer_profile
from bench.settings import BenchSettings, Sizes
from bench.workers import REPO

RESULTS_PATH = REPO / "bench" / "results.json"
# In this order: the raw baseline runs right before the applied run it is compared with.
PHASES = (
    "latency",
    "unique",
    "reads",
    "builder",
    "raw_executemany",
    "applied",
    "naive_celery",
    "peer",
    "freshness",
    "scaling",
    "sustained",
    "memory",
    "edits",
    "dramatiq",  # last: Celery's drain of the same backlog (memory) is shown next to it
)


class Run:
    """One bench run: the phases, what they found, and what failed."""

    def __init__(self, settings: BenchSettings, console: Console) -> None:
        self.settings = settings
        self.sizes: Sizes = settings.sizes
        self.console = console
        self.harness = Harness(settings)
        self.results: dict[str, Any] = {"meta": _meta(settings)}
        self.details: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def phase(self, name: str) -> None:
        if self.settings.only and name not in self.settings.only:
            return
        run: Callable[[], None] = getattr(self, f"run_{name}")
        self.console.print(f"[bold]bench:[/bold] {name} ...", highlight=False)
        began = time.monotonic()
        try:
            with producer_profile(self.harness.profile_dir, name):
                run()
        except Exception as e:  # one failed measurement must not hide the others
            self.errors[name] = f"{type(e).__name__}: {e}"
            self.console.print(f"[red]bench: {name} failed[/red]\n{traceback.format_exc()}")
        else:
            self.console.print(f"      done in {time.monotonic() - began:.1f}s", highlight=False)

    def run_latency(self) -> None:
        found = latency.measure(self.harness, self.sizes.latency_rounds)
        self.details["latency"] = found
        # the key names are for the 10-entity flush
        for mode in ("flush", "flush_async"):
            for p in ("p50", "p99"):
                self.results[f"{mode}_{p}_us"] = found[f"{mode}_10_{p}_us"]
                self.results[f"{mode}_1_{p}_us"] = found[f"{mode}_1_{p}_us"]
        self.results["redis_rtt_us"] = found["redis_rtt_us"]
        self.results["redis_rtt_p99_us"] = found["redis_rtt_p99_us"]

    def run_unique(self) -> None:
        found = unique.measure(self.harness, self.sizes.unique_rounds)
        self.details["unique"] = found
        self.results.update({k: v for k, v in found.items() if k.startswith("unique_")})

    def run_reads(self) -> None:
        found = reads.measure(self.harness, self.sizes.reads_s, self.sizes.reads_rows)
        self.details["reads"] = found
        self.results.update(found)

    def run_builder(self) -> None:
        self.details["builder"] = found = builder.measure(self.harness, self.settings.quick)
        self.results.update(found)
        self.console.print(builder.summary(found), highlight=False)

    def run_raw_executemany(self) -> None:
        found = baselines.raw_executemany(self.harness, self.sizes.raw_rows)
        self.details["raw_executemany"] = found
        self.results["raw_executemany_rows_per_s"] = found["rows_per_s"]
        self.results["raw_client_cpu_us_per_row"] = found["client_cpu_us_per_row"]

    def run_applied(self) -> None:
        found = self._throughput(self.sizes.workers, self.sizes.groups, self.sizes.applied_rows)
        self.details["applied"] = found
        self.results["applied_rows_per_s"] = found["rows_per_s"]
        self.results["applied_producer_rows_per_s"] = found["producer_rows_per_s"]
        self.results["applied_producer_cpu_us_per_row"] = found["producer_cpu_us_per_row"]
        self.results["applied_worker_cpu_us_per_row"] = found["worker_cpu_us_per_row"]
        self.results["applied_redis_cpu_us_per_row"] = found["redis_cpu_us_per_row"]
        self.results["applied_mysql_cpu_us_per_row"] = found["mysql_cpu_us_per_row"]

    def run_naive_celery(self) -> None:
        found = baselines.naive_celery(self.harness, self.sizes.naive_rows)
        self.details["naive_celery"] = found
        self.results["naive_celery_rows_per_s"] = found["rows_per_s"]
        self.results["naive_worker_cpu_us_per_row"] = found["worker_cpu_us_per_row"]

    def run_peer(self) -> None:
        # ours and the hand-written write-behind (peer.py), in alternating turns
        found = peer.compare(
            self.harness,
            rows=self.sizes.peer_rows,
            groups=self.sizes.groups,
            workers=self.sizes.workers,
            rounds=self.sizes.peer_rounds,
        )
        self.details["peer"] = found
        for size, suffix in (("100", ""), ("10", "_10")):
            runs = found[size]
            self.results[f"peer_ours{suffix}_rows_per_s"] = runs["ours_rows_per_s"]
            for key in ("flush_async_p50_us", "flush_async_p99_us"):
                self.results[f"peer_ours{suffix}_{key}"] = runs[f"ours_{key}"]
            self.results[f"peer{suffix}_rows_per_s"] = runs["peer_rows_per_s"]
            for key in ("apply_async_p50_us", "apply_async_p99_us", "worker_cpu_us_per_row"):
                self.results[f"peer{suffix}_{key}"] = runs[f"peer_{key}"]
            self.results[f"peer{suffix}_round_ratios"] = runs["round_ratios"]

    def run_freshness(self) -> None:
        found = freshness.measure(
            self.harness, self.sizes.freshness_probes, self.sizes.freshness_load_rows_per_s
        )
        self.details["freshness"] = found
        for key in ("idle_p50_ms", "idle_p99_ms", "loaded_p50_ms", "loaded_p99_ms"):
            self.results[f"to_mysql_{key}"] = found[key]
        self.results["to_mysql_load_offered_rows_per_s"] = found["load_offered_rows_per_s"]

    def run_scaling(self) -> None:
        sizes = self.sizes
        found: list[dict[str, Any]] = []
        for workers in sizes.scaling_workers:
            if workers == sizes.workers and "applied" in self.details:
                point = self.details["applied"]  # the main run is one of the points
            else:
                point = self._scaling_point(workers, sizes.groups, sizes.applied_rows)
            found.append(point)
            if workers == sizes.workers:
                self.results[f"scaling_g{sizes.groups}_rows_per_s"] = point["rows_per_s"]
        found += self._group_rounds("scaling", sizes.applied_rows, sizes.scaling_rounds)
        self.details["scaling"] = found

    def run_sustained(self) -> None:
        sizes = self.sizes
        self.details["sustained"] = self._group_rounds(
            "sustained", sizes.sustained_rows, sizes.sustained_rounds
        )

    def _group_rounds(self, name: str, rows: int, rounds: int) -> list[dict[str, Any]]:
        """The 1, 16 and 64 group points (-c of the main run) of ``rows`` each, in ``rounds``
        of alternating order: each ratio is taken within a round (a burst of load elsewhere
        hits the runs of one round alike), and the figures (``<name>_g<N>_...``) are the
        medians over the rounds."""
        sizes = self.sizes
        groups = [g for g in sizes.scaling_groups if g != sizes.groups]
        runs: dict[int, list[dict[str, Any]]] = {g: [] for g in groups}
        for n in range(rounds):
            for g in groups if n % 2 == 0 else groups[::-1]:
                runs[g].append(self._scaling_point(sizes.workers, g, rows))
        for g in groups:
            self.results[f"{name}_g{g}_rows_per_s"] = statistics.median(
                r["rows_per_s"] for r in runs[g]
            )
            # what a row cost the machine: the four parties share its cores (throughput.py)
            totals = [_total_cpu_us(r) for r in runs[g]]
            if None not in totals:
                self.results[f"{name}_g{g}_cpu_us_per_row"] = statistics.median(totals)
        if 1 in runs:
            self.results[f"{name}_round_ratios"] = {
                f"{g} groups/1 group": [
                    round(r["rows_per_s"] / one["rows_per_s"], 3)
                    for r, one in zip(runs[g], runs[1], strict=True)
                ]
                for g in groups
                if g != 1
            }
            for label, values in self.results[f"{name}_round_ratios"].items():
                by_round = ", ".join(f"{v:.3g}" for v in values)
                self.console.print(f"      {label} by round: {by_round}", highlight=False)
        return [run for g in groups for run in runs[g]]

    def _scaling_point(self, workers: int, groups: int, rows: int) -> dict[str, Any]:
        self.console.print(f"      -c {workers}, {groups} group(s), {rows:,} rows", highlight=False)
        return self._throughput(workers, groups, rows)

    def run_memory(self) -> None:
        drains = []
        for rows in self.sizes.memory_backlogs:
            self.console.print(f"      backlog of {rows:,} rows", highlight=False)
            drains.append(memory.measure(self.harness, rows).as_dict())
        self.details["memory"] = drains
        self.results["worker_peak_rss_mb_small"] = drains[0]["peak_rss_mb"]
        self.results["worker_peak_rss_mb"] = drains[-1]["peak_rss_mb"]
        # the larger backlog is the longer, steadier drain
        self.results["drain_rows_per_s"] = drains[-1]["drain_rows_per_s"]
        self.results["drain_worker_cpu_us_per_row"] = drains[-1]["worker_cpu_us_per_row"]

    def run_edits(self) -> None:
        sizes = self.sizes
        ours = edits.drain(self.harness, sizes.edit_rows, sizes.edits)
        raw = edits.raw_updates(self.harness, sizes.edit_rows, sizes.edits)
        self.details["edits"] = {"drain": ours, "raw": raw}
        self.results["edits_drain_per_s"] = ours["edits_per_s"]
        self.results["edits_worker_cpu_us_per_edit"] = ours["worker_cpu_us_per_edit"]
        self.results["raw_updates_per_s"] = raw["edits_per_s"]
        self.results["raw_updates_client_cpu_us_per_edit"] = raw["client_cpu_us_per_edit"]

    def run_dramatiq(self) -> None:
        from bench import dramatiq_bench  # the optional extra: imported only for this phase

        self.details["dramatiq"] = found = dramatiq_bench.measure(
            self.harness, self.sizes, self.details
        )
        self.results.update(found["results"])

    def _throughput(self, workers: int, groups: int, rows: int) -> dict[str, Any]:
        flush_size = self.sizes.flush_size
        return throughput.measure(
            self.harness, workers=workers, groups=groups, rows=rows, flush_size=flush_size
        ).as_dict()

    def execute(self) -> int:
        started = time.monotonic()
        try:
            self.harness.open()
            for name in PHASES:
                self.phase(name)
        except KeyboardInterrupt:
            self.errors["run"] = "interrupted"
        finally:
            self.harness.close(keep_logs=bool(self.errors))
        if self.errors:
            self.console.print(f"worker logs kept in {self.harness.scratch}", highlight=False)
        results = self.results
        results["ratios"] = report.ratios(results)
        results["details"] = self.details
        results["errors"] = self.errors
        results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
        results["meta"]["loadavg_end"] = os.getloadavg()
        report.write_json(RESULTS_PATH, results)
        report.print_tables(self.console, results)
        self.console.print(
            f"results: {RESULTS_PATH.relative_to(REPO)} ({results['meta']['duration_s']}s)",
            highlight=False,
        )
        return 1 if self.errors else 0


def _total_cpu_us(point: dict[str, Any]) -> float | None:
    """CPU per row of a throughput point: producer, workers, Redis and MySQL together (None
    when MySQL's could not be read)."""
    parts = [point.get(key) for key in throughput.CPU_KEYS]
    if any(p is None for p in parts):
        return None
    return float(sum(parts))


def _meta(settings: BenchSettings) -> dict[str, Any]:
    notes = [
        "Throughput: entities are created before the clock starts; the clock runs from the "
        "first flush_async() to the last row committed in MySQL.",
        "Compare ratios measured in one run; absolute figures move with the machine's load "
        "(see loadavg); CPU per row moves much less.",
    ]
    if settings.profile:
        notes.append("BENCH_PROFILE=1: profilers were running; the figures carry their overhead.")
    return {
        "mode": "quick" if settings.quick else "full",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "sizes": settings.sizes.__dict__,
        "only": sorted(settings.only),
        "profile": settings.profile,
        "notes": notes,
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # SIGTERM (a timeout, a CI runner) and SIGINT both end the run through the clean-up that
    # stops the workers and drops the database; SIGINT even where a shell started us ignoring it.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    settings = BenchSettings.from_env()
    unknown = settings.only - set(PHASES)
    if unknown:
        raise SystemExit(f"bench: BENCH_ONLY names unknown phases {sorted(unknown)}; see {PHASES}")
    return Run(settings, Console()).execute()


if __name__ == "__main__":
    sys.exit(main())
