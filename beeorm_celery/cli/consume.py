"""``beeorm-celery consume``: apply pending batches in this process, without Celery."""

from __future__ import annotations

import click
from rich.console import Console

from beeorm_celery.asyncflush.consumer import consume_async_flush_events
from beeorm_celery.cli.render import echo_json, report_json, report_table
from beeorm_celery.cli.signals import stop_on_signals
from beeorm_celery.cli.state import EXIT_CODES_HELP, check_group, engine_of


@click.command(short_help="Apply pending batches here, without Celery.", epilog=EXIT_CODES_HELP)
@click.option(
    "--block",
    is_flag=True,
    help="Keep applying new batches until SIGINT / SIGTERM, then print the report.",
)
@click.option(
    "--group",
    "groups",
    metavar="G",
    multiple=True,
    help="Only async group G (repeat for several; default: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def consume(ctx: click.Context, block: bool, groups: tuple[str, ...], as_json: bool) -> None:
    """Apply every pending batch here, with the same order, retry and dead-letter rules as
    the Celery workers (which may run at the same time); print what was done per group.

    Without --block it returns once nothing is pending (a temporary MySQL error that lasts
    too long exits 3).
    """
    engine = engine_of(ctx)
    for group in groups:
        check_group(engine, group)
    with stop_on_signals() as stop:
        if block:
            click.echo("consuming; Ctrl-C or SIGTERM to stop", err=True)
        report = consume_async_flush_events(engine, block, stop, groups=groups or None)
    if as_json:
        echo_json(report_json(report))
    else:
        Console().print(report_table(report))
