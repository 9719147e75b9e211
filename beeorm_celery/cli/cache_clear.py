"""``beeorm-celery cache clear ENTITY ID...``: drop rows from every cache."""

from __future__ import annotations

import click

from beeorm_celery.cli.entity_arg import entity_named
from beeorm_celery.cli.state import EXIT_CODES_HELP, engine_of


@click.command(short_help="Drop rows from every cache.", epilog=EXIT_CODES_HELP)
@click.argument("entity_name", metavar="ENTITY")
@click.argument("ids", metavar="ID...", nargs=-1, required=True, type=click.IntRange(min=1))
@click.pass_context
def clear(ctx: click.Context, entity_name: str, ids: tuple[int, ...]) -> None:
    """Drop rows ID... of ENTITY (class name or table) from Redis (row, unique-index and
    reference entries) and from every process's local cache; the next read loads MySQL."""
    engine = engine_of(ctx)
    entity = entity_named(engine, entity_name)
    engine.clear_cache(entity, *ids)
    click.echo(f"cleared {len(ids)} row(s) of {entity.__name__} from the caches")
