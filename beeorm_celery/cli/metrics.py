"""``beeorm-celery metrics``: serve the async flush's figures to Prometheus on ``/metrics``."""

from __future__ import annotations

import click
from prometheus_client import CollectorRegistry, start_http_server

from beeorm_celery.cli.signals import stop_on_signals
from beeorm_celery.cli.state import EXIT_CODES_HELP, config_error, engine_of
from beeorm_celery.metrics import AsyncFlushCollector

DEFAULT_PORT = 9464  # the port Prometheus' list of default ports gives OpenTelemetry exporters


@click.command(
    short_help="Serve Prometheus metrics on /metrics until SIGINT / SIGTERM.",
    epilog=EXIT_CODES_HELP,
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port to listen on (0: any free port, printed at start).",
)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 for every interface (e.g. in a container).",
)
@click.pass_context
def metrics(ctx: click.Context, port: int, address: str) -> None:
    """Serve /metrics in Prometheus' text format: per async group the backlog, the age of its
    oldest batch, dead letters, applied batches and operations, retries and log losses.

    Every scrape reads Redis (one pipeline) and MySQL (one query) afresh; nothing is cached
    between scrapes. Stops on SIGINT / SIGTERM with exit code 0.
    """
    engine = engine_of(ctx)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(AsyncFlushCollector(engine))
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except OSError as e:
        raise config_error(f"cannot listen on {address}:{port}: {e.strerror or e}") from e
    with stop_on_signals() as stop:
        click.echo(
            f"serving metrics on http://{address}:{server.server_port}/metrics; "
            "Ctrl-C or SIGTERM to stop",
            err=True,
        )
        while not stop.wait(0.5):  # a timed wait: the signal handler runs between waits
            pass
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
