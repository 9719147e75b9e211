"""The processes of a fault run: Celery or Dramatiq workers (to be killed) and producers (to be
waited for).

Every process started here is remembered, so ``close()`` in a ``finally`` stops each one by its
own pid, pool processes included.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.chaos_models import GROUPS

REPO = Path(__file__).resolve().parents[1]
_READY_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 20.0


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    name: str
    killed: bool = False  # by the run, on purpose
    backend: str = "celery"
    processes: int = 1  # Dramatiq: worker processes, each says it is ready

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def ready(self) -> bool:
        if self.backend == "dramatiq":
            return self.log().count("Worker process is ready for action.") >= self.processes
        return " ready." in self.log()

    def pool_children(self) -> list[psutil.Process]:
        """Live pool processes (not one killed a moment ago and not reaped yet)."""
        alive = []
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
            except psutil.NoSuchProcess:
                continue
        return alive

    def wait_ready(self, timeout_s: float = _READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} not ready in {timeout_s:.0f}s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the main process and its pool: no cleanup, no acks, nothing flushed."""
        self.killed = True
        children = self.pool_children()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.process.wait(timeout=_STOP_TIMEOUT_S)

    def kill_one_child(self, rng: random.Random) -> int | None:
        """SIGKILL one pool process; Celery's main process forks a new one, Dramatiq's shuts
        the others down and exits (so the run counts that exit as its own doing). Returns the
        pid."""
        children = self.pool_children()
        if not children:
            return None
        child = rng.choice(children)
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
        if self.backend == "dramatiq":
            self.killed = True
        return int(child.pid)

    def stop(self) -> None:
        """Warm shutdown; SIGKILL whatever is left after a timeout."""
        if not self.alive():
            return
        children = self.pool_children()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=_STOP_TIMEOUT_S)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


@dataclass
class Processes:
    env: dict[str, str]
    run_dir: Path
    concurrency: int
    workers: list[WorkerProcess] = field(default_factory=list)
    producers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    @property
    def backend(self) -> str:
        return self.env.get("CHAOS_BACKEND", "celery")

    def start_worker(self, wait: bool = True) -> WorkerProcess:
        name = f"w{len(self.workers) + 1}-{uuid.uuid4().hex[:4]}"
        log_path = self.run_dir / f"{name}.log"
        if self.backend == "dramatiq":
            return self._start(self._dramatiq_command(), log_path, name, wait)
        command = [
            sys.executable, "-m", "celery", "-A", "bench.chaos_app", "worker",
            "-Q", ",".join(f"beeorm.{g}" for g in GROUPS),
            "-c", str(self.concurrency), "-n", f"{name}@%h",
            "--pool", "prefork", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        return self._start(command, log_path, name, wait)

    def _dramatiq_command(self) -> list[str]:
        # `concurrency` processes of two threads each: the processes are what the run kills
        return [
            sys.executable, "-m", "dramatiq", "bench.chaos_dramatiq_app",
            "--processes", str(self.concurrency), "--threads", "2",
            "--worker-shutdown-timeout", "15000",
            "--queues", *(f"beeorm.{g}" for g in GROUPS),
        ]  # fmt: skip

    def _start(self, command: list[str], log_path: Path, name: str, wait: bool) -> WorkerProcess:
        with open(log_path, "wb") as log_file:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command, cwd=REPO, env=self._env(), stdout=log_file, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(process, log_path, name, backend=self.backend)
        if self.backend == "dramatiq":
            worker.processes = self.concurrency
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def unexpected_exits(self) -> list[WorkerProcess]:
        """Workers that died without the run killing them."""
        return [w for w in self.workers if not w.alive() and not w.killed]

    def start_producer(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.run_dir / log_name, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.chaos_producer", *args],
                cwd=REPO,
                env=self._env(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self.producers.append(process)
        return process

    def close(self) -> None:
        for producer in self.producers:
            if producer.poll() is None:
                producer.kill()
                producer.wait(timeout=_STOP_TIMEOUT_S)
        for worker in self.workers:
            worker.stop()
