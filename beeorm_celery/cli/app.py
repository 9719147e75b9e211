"""The root command: ``--engine``, the subcommands, and library errors turned into exit codes."""

from __future__ import annotations

from typing import Any

import click
import pymysql
import redis

from beeorm_celery.cli.cache import cache
from beeorm_celery.cli.consume import consume
from beeorm_celery.cli.dead import dead
from beeorm_celery.cli.metrics import metrics
from beeorm_celery.cli.state import (
    EXIT_CODES_HELP,
    CliState,
    ExitCode,
    config_error,
    not_found,
    service_error,
)
from beeorm_celery.cli.stats import stats
from beeorm_celery.engine import Engine
from beeorm_celery.errors import (
    ConfigError,
    DeadLetterNotFoundError,
    TemporaryApplyError,
    UnavailableError,
)


class RootGroup(click.Group):
    """Maps what the library raises to the documented exit codes, wherever it is raised."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DeadLetterNotFoundError as e:
            raise not_found(str(e)) from e
        except ConfigError as e:
            raise config_error(str(e)) from e
        except TemporaryApplyError as e:
            raise service_error(f"MySQL keeps failing with a temporary error: {e}") from e
        except UnavailableError as e:
            raise service_error(str(e)) from e
        except redis.RedisError as e:
            raise service_error(f"Redis: {type(e).__name__}: {e}") from e
        except pymysql.MySQLError as e:
            raise service_error(f"MySQL: {type(e).__name__}: {e}") from e
        except KeyboardInterrupt:
            # click would report "Aborted!" with 1, which here means "not found"
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(int(ExitCode.INTERRUPTED)) from None


@click.group(cls=RootGroup, epilog=EXIT_CODES_HELP)
@click.option(
    "--engine",
    "engine_spec",
    envvar="BEEORM_ENGINE",
    metavar="MODULE:ATTR",
    help="The application's Engine, or a zero-argument function returning one, "
    "e.g. myapp.orm:engine. Default: $BEEORM_ENGINE. The working directory is importable.",
)
@click.version_option(package_name="beeorm-celery")
@click.pass_context
def cli(ctx: click.Context, engine_spec: str | None) -> None:
    """Watch the async flush and handle its dead letters.

    \b
      beeorm-celery --engine myapp.orm:engine stats --watch
      beeorm-celery --engine myapp.orm:engine dead list
      beeorm-celery --engine myapp.orm:engine dead show catalog/1700000000000-0
      beeorm-celery --engine myapp.orm:engine consume --block
      beeorm-celery --engine myapp.orm:engine metrics --port 9464
    """
    if isinstance(ctx.obj, Engine):
        # embedded: the caller passed its engine (cli.main(obj=engine)) and keeps owning it
        ctx.obj = CliState(engine_spec, engine_obj=ctx.obj)
    elif not isinstance(ctx.obj, CliState):
        ctx.obj = CliState(engine_spec)


cli.add_command(stats)
cli.add_command(dead)
cli.add_command(consume)
cli.add_command(metrics)
cli.add_command(cache)
