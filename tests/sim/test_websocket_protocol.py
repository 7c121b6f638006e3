"""RFC 6455 details of the sim's WebSocket server, driven by a raw socket client."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from collections.abc import Iterator

import pytest

from sim import SimExchange
from sim.websocket import OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, accept_key, encode_frame

pytestmark = pytest.mark.timeout(30)


class RawClient:
    """Just enough of a WebSocket client to send arbitrary frames."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.file = self.sock.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self.file.read(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert f"Sec-WebSocket-Accept: {accept_key(key)}".encode() in head

    def send(self, opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> None:
        self.sock.sendall(
            encode_frame(opcode, payload, fin=fin, mask=os.urandom(4) if masked else None)
        )

    def recv(self) -> tuple[int, bytes]:
        b0, b1 = self.file.read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.file.read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.file.read(8))
        return b0 & 0x0F, self.file.read(n)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def raw(sim: SimExchange) -> Iterator[RawClient]:
    client = RawClient(sim.host, sim.port, "/ws")
    yield client
    client.close()


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


def test_ping_pong_and_fragmented_request(raw: RawClient) -> None:
    raw.send(OP_PING, b"abc")
    assert raw.recv() == (OP_PONG, b"abc")
    msg = json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 9}).encode()
    raw.send(OP_TEXT, msg[:5], fin=False)
    raw.send(OP_PING, b"mid")  # control frames may interleave with fragments
    raw.send(OP_CONT, msg[5:])
    assert raw.recv() == (OP_PONG, b"mid")
    op, data = raw.recv()
    assert op == OP_TEXT and json.loads(data) == {"result": [], "id": 9}


def test_close_handshake_is_echoed(raw: RawClient) -> None:
    raw.send(OP_CLOSE, struct.pack("!H", 1000))
    op, data = raw.recv()
    assert op == OP_CLOSE and close_code(data) == 1000
    assert raw.file.read(1) == b""


@pytest.mark.parametrize(
    ("opcode", "payload", "masked", "code"),
    [
        (OP_TEXT, b'{"method":"LIST_SUBSCRIPTIONS"}', False, 1002),
        (OP_TEXT, b"\xff\xfe", True, 1007),
        (0x3, b"", True, 1002),
    ],
)
def test_protocol_errors_close_the_connection(
    raw: RawClient, opcode: int, payload: bytes, masked: bool, code: int
) -> None:
    raw.send(opcode, payload, masked=masked)
    op, data = raw.recv()
    assert op == OP_CLOSE and close_code(data) == code
    assert raw.file.read(1) == b""


def test_oversized_frame_is_refused_from_its_header(raw: RawClient) -> None:
    raw.sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", (1 << 20) + 1) + os.urandom(4))
    op, data = raw.recv()
    assert op == OP_CLOSE and close_code(data) == 1009


def test_bad_handshake_is_refused(sim: SimExchange) -> None:
    with socket.create_connection((sim.host, sim.port), timeout=5) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        assert s.recv(100).startswith(b"HTTP/1.1 400")
