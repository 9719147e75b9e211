"""``beeorm-celery stats``: how far behind each async group is."""

from __future__ import annotations

import time

import click
import pymysql
import redis
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from beeorm_celery.cli.render import echo_json, stats_json, stats_table
from beeorm_celery.cli.signals import stop_on_signals
from beeorm_celery.cli.state import EXIT_CODES_HELP, engine_of
from beeorm_celery.engine import Engine
from beeorm_celery.errors import UnavailableError

DEFAULT_WATCH_INTERVAL_S = 2.0


@click.command(
    short_help="Backlog, dead letters and applied totals per group.", epilog=EXIT_CODES_HELP
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--watch", is_flag=True, help="Refresh the table until Ctrl-C (or SIGTERM).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    metavar="S",
    default=DEFAULT_WATCH_INTERVAL_S,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.pass_context
def stats(ctx: click.Context, as_json: bool, watch: bool, interval: float) -> None:
    """Per async group: pending batches, age of the oldest, dead letters, applied totals, and
    the wake-up: a task on its way, or waiting for a worker's next sweep."""
    if as_json and watch:
        raise click.UsageError(
            "--json and --watch do not go together; run --json in a loop instead"
        )
    if ctx.get_parameter_source("interval") is click.core.ParameterSource.COMMANDLINE and not watch:
        raise click.UsageError("--interval only applies with --watch")
    engine = engine_of(ctx)
    if as_json:
        echo_json(stats_json(engine.async_stats()))
    elif watch:
        _watch(engine, interval)
    else:
        console = Console()
        console.print(stats_table(engine.async_stats()))
        log_redis_line(console, engine)


def log_redis_line(console: Console, engine: Engine) -> None:
    """How safe the logs' Redis is: its eviction policy and persistence (docs/redis.md)."""
    guard = engine.log_redis_guard
    info = guard.info() if guard is not None else None
    if info is not None:
        risky = info.evicts or info.persistent is False
        console.print(Text(info.summary(), style="bold red" if risky else ""))


def _watch(engine: Engine, interval_s: float) -> None:
    console = Console()
    with stop_on_signals() as stop:
        if console.is_terminal:
            with Live(_frame(engine, interval_s), console=console, auto_refresh=False) as live:
                while not stop.wait(interval_s):
                    live.update(_frame(engine, interval_s), refresh=True)
        else:
            # piped into a file or a log: Live would only draw the last frame, so append each
            console.print(_frame(engine, interval_s))
            while not stop.wait(interval_s):
                console.print(_frame(engine, interval_s))


def _frame(engine: Engine, interval_s: float) -> RenderableType:
    caption = f"{time.strftime('%H:%M:%S')}, every {interval_s:g}s; Ctrl-C to stop"
    try:
        return stats_table(engine.async_stats(), caption=caption)
    except (UnavailableError, redis.RedisError, pymysql.MySQLError) as e:
        # a watch outlives a Redis or MySQL restart: show the error, try again next time
        return Text(f"{caption}\nstatistics unavailable: {type(e).__name__}: {e}", style="red")
