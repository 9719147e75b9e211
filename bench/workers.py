"""Real ``celery worker`` processes for the bench: start, wait until ready, measure RSS, stop.

A worker is started as ``python -m celery -A bench.worker_app worker``, or under
``py-spy record --subprocesses`` when profiling (py-spy can launch a process here but not
attach to a running one). Its log goes to a file in the run's scratch directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0


@dataclass
class Worker:
    process: subprocess.Popen[bytes]  # celery itself, or py-spy launching it
    log_path: Path
    ready_path: Path
    profile_path: Path | None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def celery_pid(self) -> int | None:
        """The pid of the celery main process (a child of py-spy when profiling)."""
        if self.profile_path is None:
            return self.process.pid
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return None
        return children[0].pid if children else None

    def processes(self) -> list[psutil.Process]:
        """The celery main process and its pool processes."""
        pid = self.celery_pid()
        if pid is None:
            return []
        try:
            main = psutil.Process(pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue  # a pool process that just ended
        return total

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the worker's processes have used so far."""
        total = 0.0
        for proc in self.processes():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def wait_ready(self, timeout_s: float = _READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready_path.exists():
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise RuntimeError(f"worker not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Warm shutdown (running tasks finish), SIGKILL for whatever is left after a timeout."""
        try:  # everything the launch started: celery's pool, and celery itself under py-spy
            procs = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        pid = self.celery_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for proc in procs:  # processes orphaned by a killed parent
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        if self.profile_path is not None and self.profile_path.exists():
            from bench.profiling import summarize_pyspy

            summarize_pyspy(self.profile_path)


@dataclass
class WorkerLauncher:
    """Starts workers with the bench's environment; remembers them so all can be stopped."""

    env: dict[str, str]
    scratch: Path
    profile_dir: Path | None = None
    started: list[Worker] = field(default_factory=list)
    name_prefix = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def command(
        self, name: str, queues: list[str], concurrency: int, prefetch: int | None
    ) -> list[str]:
        """The worker's command line (a subclass starts another kind of worker)."""
        command = [
            sys.executable, "-m", "celery", "-A", "bench.worker_app", "worker",
            "-Q", ",".join(queues), "-c", str(concurrency), "-n", f"{name}@%h",
            "--pool", "prefork", "--loglevel", "WARNING",
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        if prefetch is not None:
            command += ["--prefetch-multiplier", str(prefetch)]
        return command

    def start(
        self,
        queues: list[str],
        concurrency: int,
        *,
        prefetch: int | None = None,
        label: str = "worker",
        wait: bool = True,
    ) -> Worker:
        """A worker on ``queues``; with ``wait`` (default) only once it consumes."""
        name = f"{self.name_prefix}{label}-{uuid.uuid4().hex[:6]}"
        log_path = self.scratch / f"{name}.log"
        ready_path = self.scratch / f"{name}.ready"
        command = self.command(name, queues, concurrency, prefetch)
        profile_path = None
        if self.profile_dir is not None:
            py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
            if py_spy is None:
                raise SystemExit("BENCH_PROFILE=1 needs py-spy: pip install -e '.[dev]'")
            profile_path = self.profile_dir / f"{label}.pyspy.txt"
            command = [
                py_spy, "record", "--subprocesses", "--rate", "200", "--format", "raw",
                "--output", str(profile_path), "--", *command,
            ]  # fmt: skip
        env = dict(self.env, BENCH_READY_FILE=str(ready_path), **self.extra_env)
        with open(log_path, "wb") as log_file:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        worker = Worker(process, log_path, ready_path, profile_path)
        self.started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.stop()
        self.started.clear()


class RssSampler:
    """Samples a worker's RSS (main + pool processes, summed) every ``interval_s``."""

    def __init__(self, worker: Worker, interval_s: float = 0.1) -> None:
        self.worker = worker
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []  # (monotonic time, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.worker.rss_bytes()))
            self._stop.wait(self.interval_s)

    @property
    def peak_bytes(self) -> int:
        return max((b for _, b in self.samples), default=0)
