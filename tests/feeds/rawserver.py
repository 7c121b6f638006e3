"""A raw WebSocket server for tests: completes the handshake, then misbehaves on purpose."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

from sim.websocket import handshake_response

__all__ = ["RawServer", "server"]

Behaviour = Callable[[socket.socket], None]


class RawServer:
    """Accepts connections one at a time on 127.0.0.1; runs ``behaviour`` after the handshake."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-ws-server")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/x"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(4096)
                        if not chunk:
                            raise ConnectionError
                        request += chunk
                    key = next(
                        line.split(":", 1)[1].strip()
                        for line in request.decode().split("\r\n")
                        if line.lower().startswith("sec-websocket-key:")
                    )
                    conn.sendall(handshake_response(key))
                    self.accepted += 1
                    self.behaviour(conn)
                except (OSError, ConnectionError, StopIteration):
                    pass

    def silent_until_stopped(self, conn: socket.socket) -> None:
        """Read and drop whatever the client sends (pings too) until the client goes."""
        conn.settimeout(0.05)
        while not self._stop.is_set():
            try:
                if not conn.recv(4096):
                    return
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.sock.close()


@contextlib.contextmanager
def server(behaviour: Behaviour | None = None) -> Iterator[RawServer]:
    s = RawServer(lambda c: None)
    s.behaviour = behaviour or s.silent_until_stopped
    try:
        yield s
    finally:
        s.close()
