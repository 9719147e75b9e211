"""What every command shares: exit codes, the errors that carry them, and the engine.

The engine is loaded the first time a command asks for it, not when ``--engine`` is parsed,
so ``beeorm-celery dead list --help`` works without a reachable database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine


class ExitCode(IntEnum):
    OK = 0
    NOT_FOUND = 1  # no such dead letter, or the command refused to act (see its help)
    USAGE = 2  # bad options, bad --engine, unknown group, inconsistent configuration
    SERVICE = 3  # Redis or MySQL unreachable or failing
    INTERRUPTED = 130  # Ctrl-C outside --watch / --block, the shell's 128 + SIGINT


EXIT_CODES_HELP = """\b
Exit codes:
  0    ok
  1    not found or refused: unknown dead letter id, a dead letter that cannot
       be replayed, 'dead remove --all' answered no, or without --yes and
       without a terminal to ask on (nothing is removed);
       'cache verify' found differences (without --fix)
  2    usage or configuration error: bad option, bad --engine, unknown group
  3    Redis or MySQL unreachable or failing
  130  interrupted (a second Ctrl-C during --watch / --block, or any other time)
"""


class CliError(click.ClickException):
    """Shown as ``Error: <message>`` on stderr; each subclass exits with its own code."""


class NotFoundOrRefused(CliError):
    exit_code = ExitCode.NOT_FOUND


class ConfigurationError(CliError):
    exit_code = ExitCode.USAGE


class ServiceError(CliError):
    exit_code = ExitCode.SERVICE


def not_found(message: str) -> CliError:
    return NotFoundOrRefused(message)


def refused(message: str) -> CliError:
    return NotFoundOrRefused(message)


def config_error(message: str) -> CliError:
    return ConfigurationError(message)


def service_error(message: str) -> CliError:
    return ServiceError(message)


@dataclass
class CliState:
    """``ctx.obj`` of every command.

    Built from ``--engine`` by the root command; code that embeds the commands passes the
    engine it already has instead (``cli.main(args, obj=engine)``), and keeps closing it.
    """

    engine_spec: str | None = None
    engine_obj: Engine | None = field(default=None, repr=False)
    owns_engine: bool = False

    def engine(self) -> Engine:
        if self.engine_obj is None:
            from beeorm_celery.cli.loader import load_engine

            if not self.engine_spec:
                raise config_error(
                    "no engine: pass --engine module:attribute (or set BEEORM_ENGINE), "
                    "e.g. --engine myapp.orm:engine"
                )
            self.engine_obj = load_engine(self.engine_spec)
            self.owns_engine = True
            click.get_current_context().find_root().call_on_close(self.close)
        return self.engine_obj

    def close(self) -> None:
        if self.owns_engine and self.engine_obj is not None:
            self.engine_obj.close()
            self.engine_obj = None


def engine_of(ctx: click.Context) -> Engine:
    state = ctx.find_object(CliState)
    if state is None:  # a command invoked without the root group
        raise config_error("no engine: run the command through 'beeorm-celery --engine ...'")
    return state.engine()


def check_group(engine: Engine, group: str | None) -> str | None:
    """``group`` if the engine knows it; a typo must not read as "no dead letters"."""
    if group is not None and group not in engine.async_groups:
        known = ", ".join(sorted(engine.async_groups)) or "none"
        raise click.BadParameter(
            f"unknown async group {group!r}; this engine has: {known}", param_hint="'--group'"
        )
    return group
