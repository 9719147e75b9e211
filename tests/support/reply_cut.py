"""A TCP proxy that can cut a connection right after the server ran a command.

Armed with a command name, it forwards the next request that names it, lets the server answer,
throws the answer away and closes the client's connection: the client cannot know whether its
command ran (it did). That is the moment a retry would run it twice.
"""

from __future__ import annotations

import selectors
import socket
import threading


class ReplyCutProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._armed: bytes | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, command: bytes) -> None:
        with self._lock:
            self._armed = command

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _take(self, request: bytes) -> bool:
        with self._lock:
            if self._armed is not None and self._armed in request:
                self._armed = None
                self.cuts += 1
                return True
        return False

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ)
        selector.register(server, selectors.EVENT_READ)
        try:
            while not self._stopped.is_set():
                for key, _ in selector.select(timeout=0.2):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(1 << 20)
                    if not data:
                        return
                    if source is client:
                        server.sendall(data)
                        if self._take(data):
                            server.recv(1 << 20)  # the server ran it: drop its answer
                            return
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()
