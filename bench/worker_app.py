"""The Celery app bench workers run: ``celery -A bench.worker_app worker``.

Configured from the environment the bench sets when it starts the worker (this module is the
worker's edge): BENCH_MYSQL_URL, BENCH_REDIS_URL, BENCH_BROKER_URL, BENCH_PREFIX, and
BENCH_READY_FILE, which the worker creates once it consumes (so the bench can run the worker
at log level WARNING and still know when it is ready).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import signals

from beeorm_celery.celery import install
from bench.celery_app import build_app, build_engine, register_naive_task, register_peer_task

if "BENCH_MYSQL_URL" in os.environ:
    engine = build_engine(
        os.environ["BENCH_MYSQL_URL"], os.environ["BENCH_REDIS_URL"], os.environ["BENCH_PREFIX"]
    )
    app = build_app(os.environ["BENCH_BROKER_URL"], os.environ["BENCH_PREFIX"])
    install(app, engine)
    register_naive_task(app, os.environ["BENCH_MYSQL_URL"])
    register_peer_task(app, os.environ["BENCH_MYSQL_URL"])

    @signals.worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def _mark_ready(**_: Any) -> None:
        ready_file = os.environ.get("BENCH_READY_FILE")
        if ready_file:
            Path(ready_file).write_text(str(os.getpid()))
