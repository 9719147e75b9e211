"""Wait for the database server to go quiet before a throughput measurement starts.

After a phase writes a few hundred thousand rows (the raw baseline, a backlog), InnoDB goes on
working for seconds: purging old row versions and flushing dirty pages. A measurement started
then shares the CPU with that work. On this 2-core machine the applied run measured right after
the raw baseline was about a fifth slower than alone (52,000 against 64,000 rows/s, worker CPU
per row 12 against 9 us), so the ratio depended on the order of the phases, not on the code.
Every throughput phase now starts once the server's process has used less than
``_IDLE_SHARE`` of one core over two windows in a row (at most ``_MAX_WAIT_S``).
"""

from __future__ import annotations

import time

import psutil

_WINDOW_S = 0.25
_IDLE_SHARE = 0.10  # of one core
_MAX_WAIT_S = 30.0
_NAMES = ("mariadbd", "mysqld")


def _server() -> psutil.Process | None:
    """The local MariaDB/MySQL server process (the bench only talks to loopback)."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in _NAMES:
            return proc
    return None


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def wait_for_quiet_mysql() -> float:
    """Block until the server is idle (or ``_MAX_WAIT_S``); returns the seconds waited."""
    proc = _server()
    start = time.monotonic()
    if proc is None:
        return 0.0  # not visible from here: nothing to wait for
    quiet_windows = 0
    try:
        while quiet_windows < 2 and time.monotonic() - start < _MAX_WAIT_S:
            before = _cpu_s(proc)
            time.sleep(_WINDOW_S)
            share = (_cpu_s(proc) - before) / _WINDOW_S
            quiet_windows = quiet_windows + 1 if share < _IDLE_SHARE else 0
    except psutil.Error:
        pass  # the server restarted or is not ours to read: measure anyway
    return time.monotonic() - start
