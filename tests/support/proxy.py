"""A TCP proxy that counts what a client asks a server: round trips, and MySQL COM_QUERYs.

Put it between an engine and Redis or MySQL (point the engine's URL at ``proxy.port``) to
measure what some code costs in round trips, at the wire, whatever the client library does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tests.support.tcp_proxy import TcpProxy

COM_QUERY = 0x03


@dataclass
class _Counts:
    round_trips: int = 0  # client sends that follow a server reply (or open the connection)
    mysql_queries: int = 0  # COM_QUERY packets, after each connection's handshake
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Connection:
    packets: _MySQLPackets
    replied: bool = True  # the first client send is a round trip


class CountingProxy(TcpProxy):
    def __init__(self, target_host: str, target_port: int, mysql: bool = False) -> None:
        self.mysql = mysql
        self.counts = _Counts()
        super().__init__(target_host, target_port)

    @property
    def round_trips(self) -> int:
        with self.counts.lock:
            return self.counts.round_trips

    @property
    def mysql_queries(self) -> int:
        with self.counts.lock:
            return self.counts.mysql_queries

    def new_connection(self) -> _Connection:
        return _Connection(_MySQLPackets())

    def client_sent(self, connection: _Connection, data: bytes) -> bool:
        queries = connection.packets.feed(data) if self.mysql else 0
        with self.counts.lock:
            self.counts.round_trips += 1 if connection.replied else 0
            self.counts.mysql_queries += queries
        connection.replied = False
        return False

    def server_sent(self, connection: _Connection, data: bytes) -> None:
        connection.replied = True


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
