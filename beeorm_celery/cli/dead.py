"""``beeorm-celery dead ...``: list, show, retry and remove dead letters."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from beeorm_celery.cli.render import dead_detail, dead_json, dead_table, echo_json
from beeorm_celery.cli.state import EXIT_CODES_HELP, check_group, engine_of, not_found, refused
from beeorm_celery.engine import Engine
from beeorm_celery.errors import AsyncFlushError, DeadLetterNotFoundError

DEFAULT_LIST_LIMIT = 100
UNLIMITED_WIDTH = 1_000_000

group_option = click.option(
    "--group", "group", metavar="G", help="Only the dead letters of async group G."
)


@click.group(short_help="List, show, retry and remove dead letters.", epilog=EXIT_CODES_HELP)
def dead() -> None:
    """Dead letters: batches MySQL refused for good (duplicate key, unknown column...).

    The routine: 'dead list', 'dead show ID' to see the failing statement, fix the cause
    (remove the conflicting row, add the column...), then 'dead retry ID' to queue the batch
    again, or 'dead remove ID' to drop it.
    """


@dead.command("list", epilog=EXIT_CODES_HELP)
@group_option
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIST_LIMIT,
    show_default=True,
    help="Show at most N, oldest failure first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with all SQL) instead.")
@click.pass_context
def list_(ctx: click.Context, group: str | None, limit: int, as_json: bool) -> None:
    """Dead letters, oldest failure first."""
    engine = engine_of(ctx)
    check_group(engine, group)
    if as_json:
        echo_json([dead_json(d) for d in engine.dead_letters.list(group, limit=limit)])
    else:
        _print_table(engine, group, limit)


@dead.command(epilog=EXIT_CODES_HELP)
@click.argument("dead_letter_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
@click.pass_context
def show(ctx: click.Context, dead_letter_id: str, as_json: bool) -> None:
    """Every field of one dead letter, with all its SQL and the failing statement."""
    try:
        found = engine_of(ctx).dead_letters.get(dead_letter_id)
    except DeadLetterNotFoundError as e:
        raise not_found(str(e)) from e
    if as_json:
        echo_json(dead_json(found))
    else:
        Console(soft_wrap=True).print(dead_detail(found))


@dead.command(epilog=EXIT_CODES_HELP)
@click.argument("dead_letter_id", metavar="[ID]", required=False)
@click.option("--all", "all_", is_flag=True, help="Retry every dead letter (of --group).")
@group_option
@click.pass_context
def retry(ctx: click.Context, dead_letter_id: str | None, all_: bool, group: str | None) -> None:
    """Queue a dead letter's batch again, at the end of its group; fix the cause first.

    Malformed batches cannot be retried ('--all' skips them): remove them.
    """
    _check_target(dead_letter_id, all_, group)
    engine = engine_of(ctx)
    if dead_letter_id is not None:
        try:
            new_batch_id = engine.dead_letters.retry(dead_letter_id)
        except DeadLetterNotFoundError as e:
            raise not_found(str(e)) from e
        except AsyncFlushError as e:  # malformed, or no longer matching the entities
            raise refused(str(e)) from e
        click.echo(f"retried {dead_letter_id}: queued again as batch {new_batch_id}")
        return
    check_group(engine, group)
    try:
        count = engine.dead_letters.retry_all(group)
    except AsyncFlushError as e:
        raise refused(f"{e} (any dead letters before it were queued again)") from e
    click.echo(f"retried {count} dead letter(s){_of(group)}")
    left = engine.dead_letters.count(group)
    if left:
        click.echo(
            f"{left} dead letter(s) remain{_of(group)}: see 'dead list' "
            "(malformed batches cannot be retried, only removed)",
            err=True,
        )


@dead.command(epilog=EXIT_CODES_HELP)
@click.argument("dead_letter_id", metavar="[ID]", required=False)
@click.option("--all", "all_", is_flag=True, help="Remove every dead letter (of --group).")
@group_option
@click.option(
    "--yes",
    is_flag=True,
    help="Confirm --all without a question; required when stdin is not a terminal.",
)
@click.pass_context
def remove(
    ctx: click.Context, dead_letter_id: str | None, all_: bool, group: str | None, yes: bool
) -> None:
    """Drop a dead letter for good: its SQL will never run.

    At a terminal, 'remove --all' shows what would go and asks first (--yes skips the
    question). Without a terminal on stdin (a script, cron, a pipe) it cannot ask: it refuses
    with exit code 1 and removes nothing unless --yes is given.
    """
    _check_target(dead_letter_id, all_, group)
    if yes and not all_:
        raise click.UsageError("--yes only confirms --all")
    engine = engine_of(ctx)
    if dead_letter_id is not None:
        try:
            engine.dead_letters.remove(dead_letter_id)
        except DeadLetterNotFoundError as e:
            raise not_found(str(e)) from e
        click.echo(f"removed {dead_letter_id}")
        return
    check_group(engine, group)
    can_ask = sys.stdin is not None and sys.stdin.isatty()
    if not yes and not can_ask:
        raise refused(
            f"not removing the dead letters{_of(group)}: there is no terminal to confirm on; "
            "pass --yes to remove them from a script"
        )
    if not yes:
        total = engine.dead_letters.count(group)
        if total == 0:
            click.echo(f"removed 0 dead letter(s){_of(group)}")
            return
        _print_table(engine, group, DEFAULT_LIST_LIMIT)
        if not click.confirm(f"remove {total} dead letter(s){_of(group)}?", default=False):
            raise refused(f"kept {total} dead letter(s){_of(group)}")
    removed = engine.dead_letters.clear(group)
    click.echo(f"removed {removed} dead letter(s){_of(group)}")


def _print_table(engine: Engine, group: str | None, limit: int) -> None:
    found = engine.dead_letters.list(group, limit=limit)
    if not found:
        click.echo(f"no dead letters{_of(group)}")
        return
    total = engine.dead_letters.count(group)
    console = Console()
    if console.is_terminal:
        console.print(dead_table(found, total, console.width))
    else:
        # a pipe or a file has no width: as wide as the longest line, so nothing is cut
        Console(width=UNLIMITED_WIDTH).print(dead_table(found, total, None))


def _check_target(dead_letter_id: str | None, all_: bool, group: str | None) -> None:
    if all_ and dead_letter_id is not None:
        raise click.UsageError("give an ID or --all, not both")
    if not all_ and dead_letter_id is None:
        raise click.UsageError("give a dead letter ID (see 'dead list') or --all")
    if group is not None and not all_:
        raise click.UsageError("--group only applies with --all (an ID names its group already)")


def _of(group: str | None) -> str:
    return f" of group {group}" if group is not None else ""
