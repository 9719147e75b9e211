"""The results: ratios against their targets, rich tables, and bench/results.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.throughput import CPU_KEYS


@dataclass(frozen=True)
class Target:
    name: str  # as printed, and the key under "ratios" in results.json
    numerator: str  # result keys
    denominator: str
    bound: float | None  # None: shown for information, no target
    at_most: bool  # True: ratio <= bound passes; False: ratio >= bound passes
    meaning: str


TARGETS = (
    Target("flush_async/flush", "flush_async_p50_us", "flush_p50_us", 0.2, True,
           "p50 latency of a 10-entity flush: flush_async() at most a fifth of flush()"),
    Target("flush_async/redis_rtt", "flush_async_p50_us", "redis_rtt_us", 2.0, True,
           "p50 latency of a 10-entity flush_async(): at most two Redis PING round trips "
           "(issue 12; issue 8 asked for three)"),
    Target("applied/raw", "applied_rows_per_s", "raw_executemany_rows_per_s", 0.7, False,
           "applied rows/s: at least 0.7 of raw PyMySQL executemany, 100 rows per transaction"),
    Target("applied/naive", "applied_rows_per_s", "naive_celery_rows_per_s", 30.0, False,
           "applied rows/s: at least 30 times one Celery task (one INSERT) per row"),
    Target("16 groups/1 group", "scaling_g16_rows_per_s", "scaling_g1_rows_per_s", 0.9, False,
           "applied rows/s over 16 groups: at least 0.9 of the same rows in one group (-c 2)"),
    Target("64 groups/1 group", "scaling_g64_rows_per_s", "scaling_g1_rows_per_s", 0.8, False,
           "applied rows/s over 64 groups: at least 0.8 of the same rows in one group (-c 2)"),
    Target("16 groups/1 group, sustained", "sustained_g16_rows_per_s", "sustained_g1_rows_per_s",
           0.9, False, "the same as 16 groups/1 group with three times the rows per point"),
    Target("64 groups/1 group, sustained", "sustained_g64_rows_per_s", "sustained_g1_rows_per_s",
           0.8, False, "the same as 64 groups/1 group with three times the rows per point"),
    Target("ours/peer", "peer_ours_rows_per_s", "peer_rows_per_s", 1.5, False,
           "applied rows/s at 100-row flushes: at least 1.5 times the hand-written write-behind"),
    Target("ours/peer at 10", "peer_ours_10_rows_per_s", "peer_10_rows_per_s", 4.0, False,
           "applied rows/s at 10-row flushes: at least 4 times the hand-written write-behind"),
    Target("flush_async/peer apply_async", "peer_ours_10_flush_async_p50_us",
           "peer_10_apply_async_p50_us", 0.3, True,
           "p50 per 10-row flush in the peer comparison's loops: our flush_async() at most 0.3 "
           "of the peer's apply_async"),
    Target("paced flush_async/peer apply_async", "flush_async_p50_us",
           "peer_10_apply_async_p50_us", None, True,
           "information: the latency phase's paced 10-entity flush_async() p50 (flush() runs "
           "between) against the peer's apply_async in its loop"),
    Target("rss_large/rss_small", "worker_peak_rss_mb", "worker_peak_rss_mb_small", 1.2, True,
           "worker peak RSS flat as the backlog grows (at most +20% for 4x the rows)"),
    Target("drain/raw", "drain_rows_per_s", "raw_executemany_rows_per_s", None, False,
           "information: workers alone draining a queued backlog, against raw executemany"),
    Target("edits drain/raw", "edits_drain_per_s", "raw_updates_per_s", None, False,
           "information: a queued backlog of edits drained, against raw PyMySQL UPDATEs by id, "
           "100 per transaction"),
    Target("dramatiq/celery applied", "dramatiq_applied_rows_per_s", "applied_rows_per_s", None,
           False, "information: applied rows/s with Dramatiq workers, against Celery's"),
    Target("dramatiq/celery drain", "dramatiq_drain_rows_per_s",
           "celery_drain_small_rows_per_s", None, False,
           "information: the smaller backlog drained by Dramatiq workers, against Celery's"),
    Target("dramatiq applied/naive", "dramatiq_applied_rows_per_s", "naive_dramatiq_rows_per_s",
           None, False, "information: applied rows/s against one Dramatiq message per row"),
)  # fmt: skip


def ratios(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in TARGETS:
        num, den = results.get(t.numerator), results.get(t.denominator)
        entry: dict[str, Any] = {"value": None, "target": _bound_text(t), "pass": None,
                                 "meaning": t.meaning}  # fmt: skip
        if isinstance(num, int | float) and isinstance(den, int | float) and den:
            value = num / den
            entry["value"] = round(value, 3)
            if t.bound is not None:
                entry["pass"] = value <= t.bound if t.at_most else value >= t.bound
        out[t.name] = entry
    return out


def _bound_text(t: Target) -> str:
    if t.bound is None:
        return "-"
    return f"{'<=' if t.at_most else '>='} {t.bound:g}"


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


# (label, result keys shown as "a / b", unit) per section; a missing key shows as "-".
_FIGURES: tuple[tuple[str, tuple[tuple[str, tuple[str, ...], str], ...]], ...] = (
    ("producer latency (worker applying meanwhile)", (
        ("flush(), 1 entity: p50 / p99", ("flush_1_p50_us", "flush_1_p99_us"), "us"),
        ("flush_async(), 1 entity: p50 / p99",
         ("flush_async_1_p50_us", "flush_async_1_p99_us"), "us"),
        ("flush(), 10 entities: p50 / p99", ("flush_p50_us", "flush_p99_us"), "us"),
        ("flush_async(), 10 entities: p50 / p99",
         ("flush_async_p50_us", "flush_async_p99_us"), "us"),
        ("Redis PING round trip: p50 / p99", ("redis_rtt_us", "redis_rtt_p99_us"), "us"),
        ("flush_async(), 100 new, unique column, cold: p50 / p99",
         ("unique_cold_p50_us", "unique_cold_p99_us"), "us"),
        ("  ... warm (the cache knows the values): p50 / p99",
         ("unique_warm_p50_us", "unique_warm_p99_us"), "us"),
        ("  ... no unique column: p50 / p99", ("unique_plain_p50_us", "unique_plain_p99_us"), "us"),
    )),
    ("applied throughput", (
        ("applied: first flush_async -> last row in MySQL", ("applied_rows_per_s",), "rows/s"),
        ("  producer alone (the flush_async loop)", ("applied_producer_rows_per_s",), "rows/s"),
        ("  CPU per row: producer / workers / Redis / MySQL",
         ("applied_producer_cpu_us_per_row", "applied_worker_cpu_us_per_row",
          "applied_redis_cpu_us_per_row", "applied_mysql_cpu_us_per_row"), "us"),
        ("  CPU per row, all four, over 1 / 16 / 64 groups (medians)",
         ("scaling_g1_cpu_us_per_row", "scaling_g16_cpu_us_per_row",
          "scaling_g64_cpu_us_per_row"), "us"),
        ("sustained (longer points): 1 / 16 / 64 groups",
         ("sustained_g1_rows_per_s", "sustained_g16_rows_per_s", "sustained_g64_rows_per_s"),
         "rows/s"),
        ("  CPU per row, all four (medians)",
         ("sustained_g1_cpu_us_per_row", "sustained_g16_cpu_us_per_row",
          "sustained_g64_cpu_us_per_row"), "us"),
        ("raw PyMySQL executemany, 100 rows/tx", ("raw_executemany_rows_per_s",), "rows/s"),
        ("  CPU per row: client", ("raw_client_cpu_us_per_row",), "us"),
        ("naive: one Celery task per row", ("naive_celery_rows_per_s",), "rows/s"),
        ("  CPU per row: workers", ("naive_worker_cpu_us_per_row",), "us"),
        ("peer comparison, 100-row flushes: ours / peer",
         ("peer_ours_rows_per_s", "peer_rows_per_s"), "rows/s"),
        ("  ours: flush_async per flush: p50 / p99",
         ("peer_ours_flush_async_p50_us", "peer_ours_flush_async_p99_us"), "us"),
        ("  peer's apply_async per flush: p50 / p99",
         ("peer_apply_async_p50_us", "peer_apply_async_p99_us"), "us"),
        ("peer comparison, 10-row flushes: ours / peer",
         ("peer_ours_10_rows_per_s", "peer_10_rows_per_s"), "rows/s"),
        ("  ours: flush_async per flush: p50 / p99",
         ("peer_ours_10_flush_async_p50_us", "peer_ours_10_flush_async_p99_us"), "us"),
        ("  peer's apply_async per flush: p50 / p99",
         ("peer_10_apply_async_p50_us", "peer_10_apply_async_p99_us"), "us"),
        ("  peer CPU per row: workers, 100 / 10",
         ("peer_worker_cpu_us_per_row", "peer_10_worker_cpu_us_per_row"), "us"),
        ("workers draining a queued backlog", ("drain_rows_per_s",), "rows/s"),
        ("  CPU per row: workers", ("drain_worker_cpu_us_per_row",), "us"),
        ("workers draining queued edits (UPDATE by id)", ("edits_drain_per_s",), "edits/s"),
        ("  CPU per edit: workers", ("edits_worker_cpu_us_per_edit",), "us"),
        ("raw PyMySQL UPDATE by id, 100 per tx", ("raw_updates_per_s",), "edits/s"),
        ("  CPU per edit: client", ("raw_updates_client_cpu_us_per_edit",), "us"),
        ("Dramatiq: applied, as above", ("dramatiq_applied_rows_per_s",), "rows/s"),
        ("  CPU per row: workers", ("dramatiq_applied_worker_cpu_us_per_row",), "us"),
        ("Dramatiq / Celery: smaller backlog drained",
         ("dramatiq_drain_rows_per_s", "celery_drain_small_rows_per_s"), "rows/s"),
        ("naive: one Dramatiq message per row", ("naive_dramatiq_rows_per_s",), "rows/s"),
        ("  CPU per row: workers", ("naive_dramatiq_worker_cpu_us_per_row",), "us"),
    )),
    ("flush_async() returned -> row in MySQL (1 entity)", (
        ("worker idle: p50 / p99", ("to_mysql_idle_p50_ms", "to_mysql_idle_p99_ms"), "ms"),
        ("under load (4 groups): p50 / p99",
         ("to_mysql_loaded_p50_ms", "to_mysql_loaded_p99_ms"), "ms"),
        ("  load offered", ("to_mysql_load_offered_rows_per_s",), "rows/s"),
    )),
    ("cached reads: get_by_id", (
        ("from the local cache", ("get_by_id_local_ops_per_s",), "ops/s"),
        ("from Redis", ("get_by_id_redis_ops_per_s",), "ops/s"),
        ("from MySQL (no cache)", ("get_by_id_mysql_ops_per_s",), "ops/s"),
    )),
    ("worker memory: peak RSS, main + pool processes", (
        ("smaller backlog", ("worker_peak_rss_mb_small",), "MB"),
        ("larger backlog", ("worker_peak_rss_mb",), "MB"),
    )),
)  # fmt: skip

_VERDICT = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[dim]-[/dim]"}


def _fmt(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def print_tables(console: Console, results: dict[str, Any]) -> None:
    meta = results.get("meta", {})
    details = results.get("details", {})
    figures = Table(title=f"beeorm-celery bench, {meta.get('mode', '?')} run")
    figures.add_column("measurement")
    figures.add_column("value", justify="right")
    figures.add_column("unit")
    for n, (section, rows) in enumerate(_FIGURES):
        if n:
            figures.add_section()
        figures.add_row(f"[bold]{section}[/bold]", "", "")
        for label, keys, unit in rows:
            figures.add_row(label, " / ".join(_fmt(results.get(k)) for k in keys), unit)
    memory = details.get("memory", [])
    if memory:
        sizes = " and ".join(f"{m['backlog_rows']:,}" for m in memory)
        figures.add_row(f"[dim]  backlogs of {sizes} rows[/dim]", "", "")
    console.print(figures)

    scaling = details.get("scaling", []) + details.get("sustained", [])
    if scaling:
        table = Table(title="how applied throughput grows")
        for column in ("-c", "groups", "rows", "applied rows/s", "producer rows/s",
                       "CPU us/row: producer / workers / Redis / MySQL",
                       "tasks published"):  # fmt: skip
            table.add_column(column, justify="right")
        for s in scaling:
            cpu = " / ".join(_fmt(s.get(k)) for k in CPU_KEYS)
            table.add_row(str(s["workers"]), str(s["groups"]), f"{s['rows']:,}",
                          _fmt(s["rows_per_s"]), _fmt(s["producer_rows_per_s"]), cpu,
                          str(s.get("tasks_published", "-")))  # fmt: skip
        console.print(table)

    checks = Table(title="targets: ratios measured in this run")
    for column in ("ratio", "measured", "target", "result"):
        checks.add_column(column)
    for name, r in results.get("ratios", {}).items():
        value = "-" if r["value"] is None else f"{r['value']:.3g}"
        checks.add_row(name, value, r["target"], _VERDICT[r["pass"]])
    console.print(checks)
    for phase, message in results.get("errors", {}).items():
        console.print(f"[red]{phase} failed:[/red] {message}", highlight=False)
    for note in meta.get("notes", []):
        console.print(f"[dim]{note}[/dim]", highlight=False)
    load = meta.get("loadavg_start"), meta.get("loadavg_end")
    if all(load):
        console.print(
            f"[dim]load average (1 min) at start {load[0][0]:.1f}, at end {load[1][0]:.1f}, "
            f"on {meta.get('cpus')} CPUs[/dim]",
            highlight=False,
        )
