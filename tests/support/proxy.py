"""A TCP proxy that counts what a client asks a server: round trips, and MySQL COM_QUERYs.

Put it between an engine and Redis or MySQL (point the engine's URL at ``proxy.port``) to
measure what some code costs in round trips, at the wire, whatever the client library does.
"""

from __future__ import annotations

import selectors
import socket
import threading
from dataclasses import dataclass, field

COM_QUERY = 0x03


@dataclass
class _Counts:
    round_trips: int = 0  # client sends that follow a server reply (or open the connection)
    mysql_queries: int = 0  # COM_QUERY packets, after each connection's handshake
    lock: threading.Lock = field(default_factory=threading.Lock)


class CountingProxy:
    def __init__(self, target_host: str, target_port: int, mysql: bool = False) -> None:
        self.target = (target_host, target_port)
        self.mysql = mysql
        self.counts = _Counts()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()

    @property
    def round_trips(self) -> int:
        with self.counts.lock:
            return self.counts.round_trips

    @property
    def mysql_queries(self) -> int:
        with self.counts.lock:
            return self.counts.mysql_queries

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

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
        replied = True  # the first client send is a round trip
        packets = _MySQLPackets()
        try:
            while not self._stopped.is_set():
                for key, _ in selector.select(timeout=0.2):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        queries = packets.feed(data) if self.mysql else 0
                        with self.counts.lock:
                            self.counts.round_trips += 1 if replied else 0
                            self.counts.mysql_queries += queries
                        replied = False
                        server.sendall(data)
                    else:
                        replied = True
                        client.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()


class _MySQLPackets:
    """Splits a client's byte stream into MySQL packets and counts COM_QUERYs.

    The first packet (the handshake response) is not a command.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.seen_handshake = False

    def feed(self, data: bytes) -> int:
        self.buffer += data
        queries = 0
        while len(self.buffer) >= 4:
            length = int.from_bytes(self.buffer[:3], "little")
            if len(self.buffer) < 4 + length:
                break
            payload = self.buffer[4 : 4 + length]
            self.buffer = self.buffer[4 + length :]
            if not self.seen_handshake:
                self.seen_handshake = True
            elif payload[:1] == bytes([COM_QUERY]):
                queries += 1
        return queries
