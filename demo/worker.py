"""The demo's worker process (``celery -A worker worker``, or ``dramatiq worker_dramatiq`` with
``--backend dramatiq``): start it, wait until ready, always stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from demo.config import QUEUES

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STOP_TIMEOUT_S = 20.0

# The worker must not outlive the demo, even a demo killed with SIGKILL (which runs no finally):
# on Linux the kernel then sends the worker SIGTERM, a warm shutdown. The flag is set in this
# launcher, which then becomes the worker (exec keeps it); preexec_fn would do the same but is
# unsafe once the demo has threads. argv: the demo's pid, then python's arguments for celery.
_DIE_WITH_PARENT = (
    "import ctypes, os, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, 15); "  # PR_SET_PDEATHSIG = 1, SIGTERM = 15
    "os.getppid() == int(sys.argv[1]) or sys.exit('the demo ended before its worker started'); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


class WorkerProblem(Exception):
    """The worker did not start, or died; the message carries the end of its log."""


class WorkerProcess:
    """``celery -A worker worker -Q beeorm.catalog,beeorm.orders,beeorm.default -c 2``, or
    ``dramatiq worker_dramatiq --processes 1 --threads 2 --queues beeorm.catalog ...``.

    It runs in a session of its own, so a Ctrl-C in the terminal reaches only the demo, which
    then stops the worker itself (warm shutdown: the running task finishes and is acked).
    """

    def __init__(
        self, env: dict[str, str], log_path: Path, concurrency: int = 2, backend: str = "celery"
    ) -> None:
        self.log_path = log_path
        self.backend = backend
        self.celery_args = [
            "-A", "worker", "worker", "-Q", ",".join(QUEUES), "-c", str(concurrency),
            "-n", f"demo-{os.getpid()}@%h",
            # mingle and gossip talk to other workers at start; the demo's worker has none to
            # talk to (its broker keys are its own) and would only wait for their answers
            "--without-mingle", "--without-gossip",
            "--loglevel", "INFO",
        ]  # fmt: skip
        # Dramatiq: one process of `concurrency` threads (the threads share the engine's pools)
        self.dramatiq_args = [
            "worker_dramatiq", "--processes", "1", "--threads", str(concurrency),
            "--queues", *QUEUES,
        ]  # fmt: skip
        self._env = {**os.environ, **env, "PYTHONPATH": _python_path()}
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    @property
    def display_command(self) -> str:
        if self.backend == "dramatiq":
            return "dramatiq " + " ".join(self.dramatiq_args)
        return "celery " + " ".join(self.celery_args)

    @property
    def ready_marker(self) -> str:
        return "ready for action." if self.backend == "dramatiq" else " ready."

    @property
    def command(self) -> list[str]:
        if self.backend == "dramatiq":
            celery = ["-m", "dramatiq", *self.dramatiq_args]
        else:
            celery = ["-m", "celery", *self.celery_args]
        if sys.platform.startswith("linux"):
            return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *celery]
        return [sys.executable, *celery]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no worker log)"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.process is not None and not self.alive():
            raise WorkerProblem(
                f"the worker exited with code {self.process.returncode}; its log ends with:\n"
                + self.log_tail()
            )

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds until the worker logged ``ready.``; WorkerProblem if it dies or takes longer."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            self.check_alive()
            if self.ready_marker in self.log_path.read_text(errors="replace"):
                return time.monotonic() - started
            time.sleep(0.05)
        raise WorkerProblem(
            f"the worker was not ready after {timeout_s:.0f}s; its log ends with:\n"
            + self.log_tail()
        )

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (warm shutdown), then SIGKILL of its whole session if it does not end in time.

        Returns the exit code (negative: killed by that signal); safe to call more than once.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                # Still running, so its session id is certainly still the worker's: end it whole.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # A warm shutdown joins the pool processes; should one have outlived its parent anyway,
        # it is still in the worker's session: end those, by pid, so nothing started stays.
        for pid in _session_members(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.exit_code = process.returncode
        return self.exit_code


def _session_members(session_id: int) -> list[int]:
    """Pids of the processes in session ``session_id`` (Linux /proc; empty elsewhere)."""
    members: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # fields after the ")" that closes the command name: state ppid pgrp session ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session_id:
            members.append(int(stat.parent.name))
    return members


def _python_path() -> str:
    """The repository first, so ``-A worker``, ``celeryconfig`` and ``worker_dramatiq`` resolve
    from any directory."""
    existing = os.environ.get("PYTHONPATH")
    return str(REPO) if not existing else str(REPO) + os.pathsep + existing
