"""Section 7: the final figures, checked: each row exactly once, nothing pending, no dead letter."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.box import SIMPLE_HEAD
from rich.table import Table

from demo.waiting import DemoFailed

if TYPE_CHECKING:
    from demo.story import DemoRun

_TASK_DONE = re.compile(r"Task beeorm_celery\.apply\[[^\]]+\] succeeded")


def final_stats(run: DemoRun) -> None:
    engine, mysql = run.eng, run.mysql
    run.section("7 · Final stats")

    stats = engine.async_stats()
    groups = Table(title="engine.async_stats()", title_justify="left", box=SIMPLE_HEAD)
    for column in (
        "group",
        "pending",
        "oldest pending",
        "applied batches",
        "applied operations",
        "dead letters",
    ):
        groups.add_column(column, justify="left" if column == "group" else "right")
    for name, figures in stats.items():
        groups.add_row(
            name,
            str(figures.pending),
            f"{figures.oldest_pending_seconds:.2f}s",
            f"{figures.applied:,}",
            f"{figures.applied_operations:,}",
            str(figures.dead_letters),
        )
    run.console.print(groups)

    rows = Table(title="rows in MySQL (COUNT(*))", title_justify="left", box=SIMPLE_HEAD)
    for column in ("table", "expected", "in MySQL", ""):
        rows.add_column(column, justify="left" if column in ("table", "") else "right")
    wrong: list[str] = []
    for table in sorted(run.expected):
        expected, found = run.expected[table], mysql.count(table)
        rows.add_row(
            table,
            f"{expected:,}",
            f"{found:,}",
            "[green]ok[/]" if found == expected else "[red]MISMATCH[/]",
        )
        if found != expected:
            wrong.append(f"{table}: {found} rows, expected {expected}")
    run.console.print(rows)

    batches = sum(s.applied for s in stats.values())
    if run.config.backend == "dramatiq":
        run.say(
            f"{batches:,} batches were applied through Dramatiq messages: a message drains its "
            "group, many batches per MySQL transaction, and a flush sends a message only when "
            "its group has none waiting"
        )
    else:
        tasks = len(_TASK_DONE.findall(run.worker.log_path.read_text(errors="replace")))
        run.say(
            f"{batches:,} batches were applied by {tasks:,} Celery tasks: a task drains its "
            "group, many batches per MySQL transaction, and a flush publishes a task only when "
            "its group has none waiting"
        )

    if wrong:
        raise DemoFailed("rows in MySQL do not match what was flushed: " + "; ".join(wrong))
    leftovers = {
        name: (s.pending, s.dead_letters)
        for name, s in stats.items()
        if s.pending or s.dead_letters
    }
    if leftovers:
        raise DemoFailed(f"groups still have pending batches or dead letters: {leftovers}")
