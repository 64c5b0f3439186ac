"""
A minimal blocking WebSocket client (RFC 6455) for process tests: enough to
shake hands, exchange text frames and see the close frame a server sends.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from collections.abc import Mapping

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


class WebSocketClient:
    def __init__(self, sock: socket.socket, status: int, headers: dict[str, str], rest: bytes) -> None:
        self.sock = sock
        self.status = status
        self.headers = headers
        self._buffer = rest

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        path: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 20.0,
    ) -> WebSocketClient:
        sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {data!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        parsed = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        client = cls(sock, status, parsed, rest)
        if status == 101:
            expected = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
            if parsed.get("sec-websocket-accept") != expected:
                raise ConnectionError(f"bad Sec-WebSocket-Accept: {parsed}")
        return client

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, payload: bytes | str, opcode: int | None = None) -> None:
        if isinstance(payload, str):
            payload, default = payload.encode(), TEXT
        else:
            default = BINARY
        opcode = default if opcode is None else opcode
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> tuple[int, bytes]:
        """
        The next frame (unfragmented frames only): (opcode, payload).
        """
        first, second = self._read(2)
        opcode = first & 0x0F
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if second & 0x80 else None
        payload = self._read(n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return opcode, payload

    def recv_message(self) -> bytes:
        while True:
            opcode, payload = self.recv()
            if opcode == PING:
                self.send(payload, PONG)
                continue
            if opcode == CLOSE:
                raise ConnectionError(f"closed by the server: {close_code(payload)}")
            return payload

    def close(self, code: int = 1000) -> None:
        self.send(struct.pack("!H", code), CLOSE)

    def read_until_eof(self) -> bytes:
        """
        Whatever arrives until the server closes the TCP connection (a reset
        counts: Autobahn servers abort it after the closing handshake).
        """
        data, self._buffer = self._buffer, b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def shutdown(self) -> None:
        self.sock.close()


def close_code(payload: bytes) -> tuple[int | None, str]:
    if len(payload) < 2:
        return None, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
