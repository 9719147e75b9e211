"""What the private servers of fault runs and tests share: a process of our own, a scratch
directory, a port nobody else uses, and start/crash/close on exactly that process.

The shared servers on the machine are never restarted, killed or reconfigured: a test or run
that needs to do so starts one of these (``PrivateRedis``, ``PrivateMariaDB``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """A server process owned by this process; subclasses say how to start and ping it.

    ``kind`` names it in messages, ``unavailable`` is the error raised when it will not start,
    ``log_path`` is its log (read into those errors).
    """

    kind = "server"
    unavailable: type[RuntimeError] = RuntimeError
    stop_timeout_s = 30.0

    def __init__(self, scratch_prefix: str) -> None:
        # A top-level scratch directory of its own: a server running as another user (MariaDB
        # as user mysql when we are root) must be able to reach it.
        self.base_dir = Path(tempfile.mkdtemp(prefix=scratch_prefix))
        self.log_path = self.base_dir / "server.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def answers(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout_s: float) -> None:
        """Until it answers; ``unavailable`` with its log when it exits or takes too long."""
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.process is None or self.process.poll() is not None:
                raise self.unavailable(f"the private {self.kind} exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise self.unavailable(
                    f"the private {self.kind} did not answer in {timeout_s:.0f}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def crash(self) -> None:
        """SIGKILL: no clean shutdown; what it had not written to disk yet is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=self.stop_timeout_s)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def close(self) -> None:
        """Stop the server (a crash is fine: the data is thrown away) and delete its files."""
        try:
            self.crash()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
