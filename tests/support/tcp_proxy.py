"""A loopback TCP proxy that forwards each connection to one server and lets a subclass see
every chunk: what the client sends (before the server gets it) and what the server answers.

``CountingProxy`` (proxy.py) counts round trips through it, ``ReplyCutProxy`` (reply_cut.py)
cuts a connection right after the server ran a command.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Any

_CHUNK = 1 << 20


class TcpProxy:
    """Point a client at ``proxy.port``; ``close()`` stops it (connections end within 0.2 s)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    # --- what a subclass sees

    def new_connection(self) -> Any:
        """The state a subclass keeps per connection (passed to the two calls below)."""
        return None

    def client_sent(self, connection: Any, data: bytes) -> bool:
        """``data`` goes to the server next; True: once the server answered it, drop the answer
        and close the client's connection."""
        return False

    def server_sent(self, connection: Any, data: bytes) -> None:
        """``data`` goes to the client next."""

    # --- the forwarding

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            thread = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ)
        selector.register(server, selectors.EVENT_READ)
        connection = self.new_connection()
        try:
            while not self._stopped.is_set():
                for key, _ in selector.select(timeout=0.2):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    if source is client:
                        cut = self.client_sent(connection, data)
                        server.sendall(data)
                        if cut:
                            server.recv(_CHUNK)  # the server ran it: drop its answer
                            return
                    else:
                        self.server_sent(connection, data)
                        client.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()
