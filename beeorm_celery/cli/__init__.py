"""The ``beeorm-celery`` command line: statistics, dead letters and a consumer.

Commands live one per module (``stats``, ``dead``, ``consume``); ``app`` holds the root command
and the mapping of errors to exit codes, ``loader`` imports ``--engine``. Embed the commands in
your own click application with ``cli`` and an engine: ``cli.main(args, obj=engine)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from beeorm_celery.cli.app import cli
from beeorm_celery.cli.state import ExitCode

__all__ = ["ExitCode", "cli", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """The console script. Exits with an ``ExitCode``."""
    # the library logs retries and dead letters as warnings; give them a time and a level
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cli.main(args=list(argv) if argv is not None else None, prog_name="beeorm-celery")
