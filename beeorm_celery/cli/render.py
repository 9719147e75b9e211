"""How results look: rich tables for people, plain JSON for scripts.

Everything that comes from data (SQL, error messages, group names) goes into ``Text`` so that
brackets in it are never read as rich markup.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import click
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from beeorm_celery.asyncflush.dead_history import DeadLetterEvent, events
from beeorm_celery.asyncflush.stats import WAKE_IDLE, WAKE_ON_ITS_WAY, WAKE_SWEEP

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.deadletters import DeadLetter
    from beeorm_celery.asyncflush.report import DrainReport
    from beeorm_celery.asyncflush.stats import GroupStats

# narrower than this, the error column would wrap into a word per line: the row goes wider
MIN_ERROR_WIDTH = 24


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def flat(message: str) -> str:
    """The message on one line (MySQL messages may hold newlines)."""
    return " ".join(message.split())


def compact_table(title: str, caption: str | None = None) -> Table:
    """Rules under the header only: more room for data in an 80-column terminal or log."""
    return Table(
        title=title,
        caption=caption,
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )


# --- stats


def stats_json(stats: Mapping[str, GroupStats]) -> dict[str, Any]:
    return {group: s.as_dict() for group, s in stats.items()}


# GroupStats.wake, short enough for an 80-column table
_WAKE_LABELS = {WAKE_ON_ITS_WAY: "on its way", WAKE_SWEEP: "next sweep", WAKE_IDLE: "-"}


def stats_table(stats: Mapping[str, GroupStats], caption: str | None = None) -> Table:
    table = compact_table("async flush", caption)
    table.add_column("group", no_wrap=True)
    for name in ("pending", "oldest pending s", "dead letters", "applied batches", "applied ops"):
        table.add_column(name, justify="right")
    table.add_column("log losses", justify="right")
    table.add_column("wake-up")
    for group, s in stats.items():
        table.add_row(
            Text(group),
            str(s.pending),
            f"{s.oldest_pending_seconds:.1f}",
            Text(str(s.dead_letters), style="bold red" if s.dead_letters else ""),
            str(s.applied),
            str(s.applied_operations),
            Text(str(s.log_losses), style="bold red" if s.log_losses else ""),
            _WAKE_LABELS.get(s.wake, s.wake),
        )
    return table


# --- dead letters


def dead_json(dead: DeadLetter) -> dict[str, Any]:
    return {
        "id": dead.id,
        "group": dead.group,
        "batch_id": dead.batch_id,
        "error_code": dead.error_code,
        "error": dead.error,
        "attempts": dead.attempts,
        "failed_at": dead.failed_at.isoformat(),
        "first_failed_at": dead.first_failed_at.isoformat(),
        "failing_statement": dead.failing_statement,
        "sql": list(dead.sql),
        "malformed": dead.malformed,
        "cause": dead.cause,
        "replay_of": dead.replay_of,
        "history": [_event_json(e) for e in events(dead)],
    }


# What an operator fixes before replaying a dead letter, by DeadLetter.cause.
_CAUSES = {
    "schema_lag": "schema lag: upgrade workers / run update_schema, then retry",
    "signature": "signature: give the workers the secret that signed it, then retry",
    "decode": "a value or column this worker refused: fix the entity, then retry",
    "packet": "too large: raise max_allowed_packet, then retry",
}


def _event_json(event: DeadLetterEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": event.kind, "at": event.at.isoformat()}
    data["batch_id"] = event.batch_id
    if event.kind == "failed":
        data["first_at"] = event.first_at.isoformat() if event.first_at else None
        data["attempts"] = event.attempts
        data["error_code"] = event.error_code
        data["error"] = event.error
    return data


def history_lines(dead: DeadLetter) -> list[str]:
    """One line per failure and replay, oldest first."""
    lines = []
    for event in events(dead):
        if event.kind == "replayed":
            lines.append(f"{when(event.at)}  replayed")
            continue
        code = "-" if event.error_code is None else str(event.error_code)
        tries = "1 attempt" if event.attempts == 1 else f"{event.attempts} attempts"
        since = ""
        if event.first_at is not None and event.attempts > 1:
            since = f" since {when(event.first_at)}"
        lines.append(
            f"{when(event.at)}  failed as batch {event.batch_id} ({tries}{since}): "
            f"{code} {flat(event.error)}"
        )
    return lines


def dead_table(dead_letters: Sequence[DeadLetter], total: int, width: int | None) -> Table:
    """One row per dead letter. Ids, codes and times stay whole; the error is never cut.

    ``width`` is the terminal's: the error column takes the room the others leave and wraps
    within it. ``None`` (not a terminal: a pipe, a file, a log) keeps each dead letter on one
    line, the error whole, so that ``grep`` and ``cut`` see the whole message.
    """
    caption = None
    if total > len(dead_letters):
        caption = f"{len(dead_letters)} of {total} shown (--limit)"
    rows = [
        (
            d.id,
            d.group,
            "-" if d.error_code is None else str(d.error_code),
            flat(("(malformed) " if d.malformed else "") + d.error),
            str(d.attempts),
            # no year: it keeps the line within 80 columns ('dead show' has the full date)
            d.failed_at.strftime("%m-%d %H:%M:%S"),
        )
        for d in dead_letters
    ]
    headers = ("id", "group", "code", "error", "attempts", "failed at (UTC)")
    natural = [max([len(h)] + [len(r[n]) for r in rows]) for n, h in enumerate(headers)]
    table = compact_table(f"dead letters: {total}", caption)
    for n, header in enumerate(headers):
        if header == "error":
            if width is None:
                table.add_column(header, no_wrap=True, min_width=natural[n])
            else:
                # rich would shrink every column to fit: give the error what the others leave
                gaps = 2 * len(headers) - 1  # padding and divider spaces, none at the end
                room = width - gaps - sum(natural) + natural[n]
                table.add_column(header, overflow="fold", max_width=max(MIN_ERROR_WIDTH, room))
        else:
            justify: Literal["left", "right"] = "right" if n in (2, 4) else "left"
            table.add_column(header, no_wrap=True, min_width=natural[n], justify=justify)
    for r in rows:
        table.add_row(Text(r[0]), Text(r[1]), r[2], Text(r[3]), *r[4:])
    return table


def dead_detail(dead: DeadLetter) -> RenderableType:
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    rows: list[tuple[str, str]] = [
        ("id", dead.id),
        ("group", dead.group),
        ("batch id", dead.batch_id),
        ("error code", "-" if dead.error_code is None else str(dead.error_code)),
        ("error", dead.error),
        ("attempts", str(dead.attempts)),
        ("failed at", when(dead.failed_at)),
        ("first failed at", when(dead.first_failed_at)),
        ("malformed", "yes (cannot be retried, only removed)" if dead.malformed else "no"),
        ("cause", _CAUSES.get(dead.cause or "", dead.cause or "-")),
        ("replay of", dead.replay_of or "-"),
    ]
    for name, value in rows:
        fields.add_row(name, Text(value))
    parts: list[RenderableType] = [fields, Text()]
    history = history_lines(dead)
    if len(history) > 1:  # replayed at least once: the whole story
        parts.append(Text("history (oldest first):", style="bold"))
        parts += [Text(line) for line in history]
        parts.append(Text())
    parts.append(Text("failing statement:", style="bold"))
    parts.append(Text(dead.failing_statement or "-"))
    parts.append(Text())
    count = len(dead.sql)
    plural = "" if count == 1 else "s"
    parts.append(Text(f"SQL ({count} statement{plural}, in order):", style="bold"))
    # mark the statement only when it is unambiguous: a batch may repeat a statement
    failed_once = dead.sql.count(dead.failing_statement) == 1 if dead.failing_statement else False
    for n, statement in enumerate(dead.sql, 1):
        marker = "  <- failed" if failed_once and statement == dead.failing_statement else ""
        parts.append(Text(f"{n:>4}  {statement}{marker}"))
    return Group(*parts)


# --- consume


def report_json(report: Mapping[str, DrainReport]) -> dict[str, Any]:
    return {
        group: {
            "applied_batches": r.applied_batches,
            "applied_operations": r.applied_operations,
            "dead_lettered": r.dead_lettered,
        }
        for group, r in report.items()
    }


def report_table(report: Mapping[str, DrainReport]) -> Table:
    table = compact_table("consumed")
    table.add_column("group", no_wrap=True)
    table.add_column("applied batches", justify="right")
    table.add_column("applied ops", justify="right")
    table.add_column("dead-lettered", justify="right")
    for group, r in report.items():
        table.add_row(
            Text(group),
            str(r.applied_batches),
            str(r.applied_operations),
            Text(str(r.dead_lettered), style="bold red" if r.dead_lettered else ""),
        )
    return table
