"""Real ``celery worker`` and ``dramatiq`` worker processes for tests: start, wait until ready,
kill, stop. ``CeleryHarness`` and ``DramatiqHarness`` have the same interface, so a law's test
runs against both backends (the ``harness`` fixture)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from beeorm_celery import Engine
from beeorm_celery.celery import install
from tests.support import models, services
from tests.support.worker_app import build_app, build_engine, entities_named

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    name: str
    ready_marker: str = " ready."
    ready_count: int = 1

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log().count(self.ready_marker) >= self.ready_count:
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.process.returncode}:\n{self.log()[-4000:]}"
                )
            time.sleep(0.1)
        raise AssertionError(f"worker not ready after {timeout_s}s:\n{self.log()[-4000:]}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: no cleanup, no acks."""
        for child in self.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 20.0) -> None:
        if not self.alive():
            return
        children = self.children()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


@dataclass
class Harness:
    """What both backends' harnesses are made of (positional, in this order)."""

    db_url: str
    redis_url: str
    broker_url: str
    prefix: str
    tmp_path: Path
    async_options: dict[str, Any] = field(default_factory=dict)
    queue_prefix: str = "beeorm."
    workers: list[WorkerProcess] = field(default_factory=list)


def worker_env(harness: Harness, async_options: dict[str, Any], **broker: str) -> dict[str, str]:
    """A worker process's environment: this one's, with the harness's services, async options
    and ``broker`` (the backend's broker URL variable)."""
    env = dict(os.environ)
    env.update(
        BEEORM_TEST_DB_URL=harness.db_url,
        BEEORM_TEST_REDIS_URL=harness.redis_url,
        BEEORM_TEST_PREFIX=harness.prefix,
        BEEORM_TEST_ASYNC=json.dumps(async_options),
        BEEORM_TEST_QUEUE_PREFIX=harness.queue_prefix,
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        **broker,
    )
    return env


@dataclass
class CeleryHarness(Harness):
    """An engine, a Celery app wired to it, and worker processes sharing its database/prefix."""

    release: str | None = None  # worker_app.entities_named: the entities of engine and workers
    backend = "celery"

    def __post_init__(self) -> None:
        self.engine: Engine = build_engine(
            self.db_url,
            self.redis_url,
            self.prefix,
            self.async_options,
            entities_named(self.release),
        )
        self.engine.update_schema()
        self.app = build_app(self.broker_url, self.prefix)
        self.task = install(self.app, self.engine, sweep=False, queue_prefix=self.queue_prefix)

    def wake(self, group: Any, *args: Any) -> None:
        """Send the apply message for ``group`` as a producer would (any arguments)."""
        self.task.apply_async(args=(group, *args), queue=f"{self.queue_prefix}{group}")

    def queue_key(self, group: str) -> str:
        """The Redis key of group's queue (Redis broker)."""
        return f"{self.prefix}:q:{self.queue_prefix}{group}"

    def env(
        self, release: str | None = None, async_options: dict[str, Any] | None = None
    ) -> dict[str, str]:
        env = worker_env(
            self,
            self.async_options if async_options is None else async_options,
            BEEORM_TEST_BROKER_URL=self.broker_url,
        )
        release = release or self.release
        if release:
            env["BEEORM_TEST_MODELS"] = release
        return env

    def start_worker(
        self,
        concurrency: int = 2,
        queues: tuple[str, ...] | None = None,
        extra_args: tuple[str, ...] = (),
        wait: bool = True,
        queue_names: str | None = None,
        env: dict[str, str] | None = None,
        release: str | None = None,
        async_options: dict[str, Any] | None = None,
    ) -> WorkerProcess:
        """``queue_names`` replaces the -Q list made from ``queues``; ``env`` adds to or
        overrides the worker's environment (e.g. another BEEORM_TEST_DB_URL); ``release`` /
        ``async_options`` override the harness's (another release of the entities, a
        misconfigured worker)."""
        name = f"w{uuid.uuid4().hex[:6]}"
        queue_names = queue_names or ",".join(
            f"{self.queue_prefix}{g}" for g in (queues or models.GROUPS)
        )
        log_path = self.tmp_path / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.support.worker_app",
            "worker",
            "-Q",
            queue_names,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            *extra_args,
        ]
        with open(log_path, "wb") as log_file:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**self.env(release, async_options), **(env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, log_path, name)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.engine.close()
        if self.broker_url.startswith("amqp"):
            rabbitmq_delete_queues(self.broker_url, self.queue_prefix, celery=True)
        else:
            # The broker keys (queues, kombu bindings) live under the prefix: this run's only.
            services.delete_keys(self.broker_url, self.prefix)


@dataclass
class DramatiqHarness(Harness):
    """An engine, a Dramatiq broker wired to it (this process is a producer), and ``dramatiq``
    worker processes running ``tests.support.dramatiq_app`` on the same database/prefix.

    ``concurrency`` n means n worker threads: ``max(1, n // 2)`` processes of 2 threads."""

    backend = "dramatiq"

    def __post_init__(self) -> None:
        from beeorm_celery.dramatiq import install as install_dramatiq
        from tests.support.dramatiq_app import build_broker

        self.engine: Engine = build_engine(
            self.db_url, self.redis_url, self.prefix, self.async_options
        )
        self.engine.update_schema()
        self.broker = build_broker(self.broker_url, self.prefix)
        self.actor = install_dramatiq(
            self.broker, self.engine, sweep=False, queue_prefix=self.queue_prefix
        )

    def wake(self, group: Any, *args: Any) -> None:
        from dramatiq import Message

        from beeorm_celery.dramatiq import ACTOR_NAME

        self.broker.enqueue(
            Message(
                queue_name=f"{self.queue_prefix}{group}",
                actor_name=ACTOR_NAME,
                args=(group, *args),
                kwargs={},
                options={},
            )
        )

    def queue_key(self, group: str) -> str:
        """The Redis list of message ids of group's queue (RedisBroker)."""
        return f"{self.prefix}-dq:{self.queue_prefix}{group}"

    def env(self) -> dict[str, str]:
        return worker_env(self, self.async_options, BEEORM_TEST_DRAMATIQ_BROKER_URL=self.broker_url)

    def start_worker(
        self,
        concurrency: int = 2,
        queues: tuple[str, ...] | None = None,
        extra_args: tuple[str, ...] = (),
        wait: bool = True,
        queue_names: str | None = None,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        name = f"d{uuid.uuid4().hex[:6]}"
        names = (
            queue_names.split(",")
            if queue_names
            else [f"{self.queue_prefix}{g}" for g in (queues or models.GROUPS)]
        )
        processes = max(1, concurrency // 2)
        log_path = self.tmp_path / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "dramatiq",
            "tests.support.dramatiq_app",
            "--processes",
            str(processes),
            "--threads",
            "2",
            "--worker-shutdown-timeout",
            "10000",
            "--queues",
            *names,
            *extra_args,
        ]
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**self.env(), **(env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(
            process, log_path, name, "Worker process is ready for action.", processes
        )
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def close(self) -> None:
        for worker in self.workers:  # all at once: each takes seconds to shut down
            if worker.alive():
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop()
        self.engine.close()
        self.broker.close()
        if self.broker_url.startswith("amqp"):
            rabbitmq_delete_queues(self.broker_url, self.queue_prefix, celery=False)
        else:
            services.delete_keys(self.broker_url, self.prefix)


def rabbitmq_delete_queues(url: str, queue_prefix: str, *, celery: bool) -> None:
    """Delete this test's queues on a shared RabbitMQ: ``<queue_prefix><group>`` and, for
    Dramatiq, their ``.DQ`` and ``.XQ``; Celery's exchange of the same name too."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for group in models.GROUPS:
            name = f"{queue_prefix}{group}"
            for queue in (name,) if celery else (name, f"{name}.DQ", f"{name}.XQ"):
                channel.queue_delete(queue)
            if celery:
                channel.exchange_delete(name)
    finally:
        connection.close()
