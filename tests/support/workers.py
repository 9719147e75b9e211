"""Real ``celery worker`` processes for tests: start, wait until ready, kill, stop."""

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
from tests.support.worker_app import build_app, build_engine

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    name: str

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
            if " ready." in self.log():
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
class CeleryHarness:
    """An engine, a Celery app wired to it, and worker processes sharing its database/prefix."""

    db_url: str
    redis_url: str
    broker_url: str
    prefix: str
    tmp_path: Path
    async_options: dict[str, Any] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine: Engine = build_engine(
            self.db_url, self.redis_url, self.prefix, self.async_options
        )
        self.engine.update_schema()
        self.app = build_app(self.broker_url, self.prefix)
        self.task = install(self.app, self.engine, sweep=False)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BEEORM_TEST_DB_URL=self.db_url,
            BEEORM_TEST_REDIS_URL=self.redis_url,
            BEEORM_TEST_PREFIX=self.prefix,
            BEEORM_TEST_BROKER_URL=self.broker_url,
            BEEORM_TEST_ASYNC=json.dumps(self.async_options),
            PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        return env

    def start_worker(
        self,
        concurrency: int = 2,
        queues: tuple[str, ...] | None = None,
        extra_args: tuple[str, ...] = (),
        wait: bool = True,
        queue_names: str | None = None,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        """``queue_names`` replaces the -Q list made from ``queues``; ``env`` adds to or
        overrides the worker's environment (e.g. another BEEORM_TEST_DB_URL)."""
        name = f"w{uuid.uuid4().hex[:6]}"
        queue_names = queue_names or ",".join(f"beeorm.{g}" for g in (queues or models.GROUPS))
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
                env={**self.env(), **(env or {})},
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
        # The broker keys (queues, kombu bindings) live under the prefix: this run's only.
        services.delete_keys(self.broker_url, self.prefix)
