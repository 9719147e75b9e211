"""A TCP proxy that can cut a connection right after the server ran a command.

Armed with a command name, it forwards the next request that names it, lets the server answer,
throws the answer away and closes the client's connection: the client cannot know whether its
command ran (it did). That is the moment a retry would run it twice.
"""

from __future__ import annotations

import threading

from tests.support.tcp_proxy import TcpProxy


class ReplyCutProxy(TcpProxy):
    def __init__(self, target_port: int) -> None:
        self._armed: bytes | None = None
        self._lock = threading.Lock()
        self.cuts = 0
        super().__init__("127.0.0.1", target_port)

    def cut_after(self, command: bytes) -> None:
        with self._lock:
            self._armed = command

    def client_sent(self, connection: object, data: bytes) -> bool:
        with self._lock:
            if self._armed is not None and self._armed in data:
                self._armed = None
                self.cuts += 1
                return True
        return False
