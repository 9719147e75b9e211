"""A private MariaDB server for the fault run: its own data directory, socket and port.

The fault run stops, crashes and restarts MariaDB on purpose. Other developers' tests use the
shared server on port 3306 at the same time, so the run never touches that one: it installs a
throwaway server under a scratch directory (``mariadb-install-db``, about a second), and owns
its process, so "crash" is a SIGKILL of exactly that pid and "restart" starts it again on the
same data directory (InnoDB crash recovery included).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pymysql

from bench.private_server import PrivateServer

_READY_TIMEOUT_S = 60.0
_INSTALL_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 60.0


class MariaDBUnavailable(RuntimeError):
    """The binaries to run a private MariaDB are missing, or the server would not start."""


def _binary(name: str, *fallbacks: str) -> str:
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate) or shutil.which(candidate, path="/usr/sbin:/usr/bin")
        if found:
            return found
    raise MariaDBUnavailable(
        f"the fault run starts a private MariaDB and needs {name!r} on PATH "
        "(Debian: apt-get install mariadb-server)"
    )


class PrivateMariaDB(PrivateServer):
    """One server of our own: ``start()``, ``crash()``, ``shutdown()``, ``close()``."""

    kind = "MariaDB"
    unavailable = MariaDBUnavailable
    stop_timeout_s = _STOP_TIMEOUT_S

    def __init__(self, database: str = "chaos", extra_args: tuple[str, ...] = ()) -> None:
        super().__init__("beeorm-chaos-mariadb-")
        self.data_dir = self.base_dir / "data"
        self.socket_path = self.base_dir / "mariadb.sock"
        self.log_path = self.base_dir / "mariadb.err"
        self.database = database
        # more server options (e.g. --max-allowed-packet=128K); change them between restarts
        self.extra_args = list(extra_args)
        self._server = _binary("mariadbd", "mysqld")
        self._install = _binary("mariadb-install-db", "mysql_install_db")
        # As root the server refuses to run unless told which user to become; as anyone else it
        # runs as that user and --user would only warn.
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{self.database}"

    def _user_args(self) -> list[str]:
        return ["--user=mysql"] if self._as_root else []

    def _server_args(self) -> list[str]:
        return [
            "--no-defaults",  # nothing from /etc/mysql: that config is the shared server's
            *self._user_args(),
            f"--datadir={self.data_dir}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.base_dir / 'mariadb.pid'}",
            f"--log-error={self.log_path}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            # Small: two cores and several developers share this machine.
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            "--max-connections=300",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            *self.extra_args,
        ]

    def install(self) -> None:
        if self._as_root:
            shutil.chown(self.base_dir, "mysql", "mysql")
        command = [
            self._install,
            "--no-defaults",
            *self._user_args(),
            f"--datadir={self.data_dir}",
            "--auth-root-authentication-method=normal",  # root without password over TCP
            "--skip-test-db",
        ]
        result = subprocess.run(
            command, capture_output=True, timeout=_INSTALL_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            raise MariaDBUnavailable(
                f"mariadb-install-db failed ({result.returncode}):\n"
                + result.stdout.decode(errors="replace")[-2000:]
                + result.stderr.decode(errors="replace")[-2000:]
            )

    def start(self) -> None:
        if self.running:
            return
        with open(self.base_dir / "mariadb.out", "ab") as out:
            self.process = subprocess.Popen(
                [self._server, *self._server_args()], stdout=out, stderr=subprocess.STDOUT
            )
        self.wait_ready()

    def wait_ready(self, timeout_s: float = _READY_TIMEOUT_S) -> None:
        super().wait_ready(timeout_s)

    def answers(self) -> bool:
        try:
            conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2)
        except pymysql.MySQLError:
            return False
        conn.close()
        return True

    def shutdown(self) -> None:
        """A clean shutdown (SIGTERM, as ``mariadb-admin shutdown`` does)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.crash()

    def create_database(self) -> None:
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{self.database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        finally:
            conn.close()
