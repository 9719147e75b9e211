"""``beeorm-celery cache ...``: the cache-control commands, and finding an entity by name."""

from __future__ import annotations

import click

from beeorm_celery.cli.cache_clear import clear
from beeorm_celery.cli.cache_verify import verify
from beeorm_celery.cli.state import EXIT_CODES_HELP


@click.group(short_help="Clear or verify cached rows.", epilog=EXIT_CODES_HELP)
def cache() -> None:
    """The Redis and local caches of entities.

    After changing rows behind the ORM's back (SQL, fixing a dead letter's cause), clear
    them: 'cache clear Product 7 8'. 'cache verify Product' lists every cached row that
    differs from MySQL (rows with a batch still queued are skipped); --fix clears those.
    """


cache.add_command(clear)
cache.add_command(verify)
