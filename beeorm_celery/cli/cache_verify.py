"""``beeorm-celery cache verify ENTITY [--fix]``: compare the cache with MySQL."""

from __future__ import annotations

import click

from beeorm_celery.cli.entity_arg import entity_named
from beeorm_celery.cli.render import echo_json
from beeorm_celery.cli.state import EXIT_CODES_HELP, ExitCode, engine_of


@click.command(short_help="List cached rows that differ from MySQL.", epilog=EXIT_CODES_HELP)
@click.argument("entity_name", metavar="ENTITY")
@click.option("--id", "ids", metavar="ID", multiple=True, type=int, help="Only row ID (repeat).")
@click.option("--fix", is_flag=True, help="Clear the differing rows from every cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
@click.pass_context
def verify(
    ctx: click.Context, entity_name: str, ids: tuple[int, ...], fix: bool, as_json: bool
) -> None:
    """Compare every cached row of ENTITY (or --id ...) with MySQL and list the differences.

    Exits 1 when it found any and --fix was not given; with --fix it clears those rows and
    exits 0. Rows with a batch still queued are skipped.
    """
    engine = engine_of(ctx)
    entity = entity_named(engine, entity_name)
    found = engine.verify_cache(entity, ids or None)
    if fix and found:
        engine.clear_cache(entity, *sorted({m.id for m in found}))
    if as_json:
        echo_json(
            [
                {"id": m.id, "kind": m.kind, "cached": repr(m.cached), "mysql": repr(m.mysql)}
                for m in found
            ]
        )
    else:
        for mismatch in found:
            click.echo(str(mismatch))
        verdict = (" (cleared)" if fix else "") if found else ""
        click.echo(f"{len(found)} difference(s) in {entity.__name__}{verdict}")
    if found and not fix:
        ctx.exit(int(ExitCode.NOT_FOUND))
