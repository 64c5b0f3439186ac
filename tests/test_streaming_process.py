"""
Streaming through a real C{twistd -n containerflare}: the first chunk reaches
the client while the handler is still running, and a large body follows the
client's pace instead of piling up in memory.
"""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest

from tests._process import ROOT, run_twistd

APPS = ROOT / "tests" / "apps"


def read_until(sock: socket.socket, data: bytes, marker: bytes, limit: int = 1 << 20) -> bytes:
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}; got {data!r}")
        data += chunk
        assert len(data) < limit
    return data


@pytest.mark.parametrize("route", ["stream", "manual"])
def test_first_chunk_arrives_before_the_handler_finishes(tmp_path: Path, route: str) -> None:
    gate = tmp_path / "gate"
    with (
        run_twistd("streaming_app:app", cwd=APPS, tmp_path=tmp_path) as child,
        socket.create_connection(("127.0.0.1", child.port), timeout=20) as sock,
    ):
        sock.sendall(f"GET /{route}?gate={gate} HTTP/1.1\r\nHost: example\r\n\r\n".encode())
        data = read_until(sock, b"", b"first chunk\n")
        # The handler is blocked on the gate: nothing after the first chunk.
        assert not gate.exists()
        assert b"second chunk" not in data
        assert not data.endswith(b"0\r\n\r\n")
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        assert b"200 ok" in head and b"transfer-encoding: chunked" in head
        gate.write_text("go")
        data = read_until(sock, data, b"0\r\n\r\n")
        assert b"second chunk\n" in data


def test_large_body_follows_the_client(tmp_path: Path) -> None:
    """
    A client that stops reading stops the generator: far less than the
    256 MiB body is produced (socket buffers only), and all of it arrives
    once the client reads again.
    """
    total = 4096 * 65536
    with run_twistd("streaming_app:app", cwd=APPS, tmp_path=tmp_path) as child:
        with socket.create_connection(("127.0.0.1", child.port), timeout=20) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: example\r\n\r\n")
            head = read_until(sock, b"", b"\r\n\r\n")
            # Wait until production stalls (the client is not reading).
            last, pulled = -1, 0
            for _ in range(100):
                pulled = int(get(child.port, "/progress"))
                if pulled == last:
                    break
                last = pulled
                time.sleep(0.1)
            assert 0 < pulled < 64 * 1024 * 1024, pulled
            body = head.split(b"\r\n\r\n", 1)[1]
            received, tail = len(body), body[-5:]
            while tail != b"0\r\n\r\n":
                chunk = sock.recv(1 << 20)
                assert chunk, "connection closed before the last chunk"
                received += len(chunk)
                tail = (tail + chunk)[-5:]
            # The body plus the chunked framing.
            assert received > total
        assert int(get(child.port, "/progress")) == total


def get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()
