"""
Streaming through the example Worker in workerd: a response the app writes
in pieces reaches the client piece by piece (the first chunk before the
handler has finished), through the Container class's fetch.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._process import ROOT, free_port, run_twistd
from tests.e2e._worker import Harness, container_env, run_harness, wrangler_vars

APPS = ROOT / "tests" / "apps"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp_path = tmp_path_factory.mktemp("streaming")
    port = free_port()
    with run_harness(port, tmp_path=tmp_path) as harness:
        env = container_env(wrangler_vars())
        env["CF_CMD_ENDPOINT"] = harness.bridge()
        with run_twistd("streaming_app:app", cwd=APPS, env=env, port=port, tmp_path=tmp_path):
            yield harness


def read_until(sock: socket.socket, data: bytes, marker: bytes) -> bytes:
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}; got {data!r}")
        data += chunk
    return data


def read_to_end(sock: socket.socket, data: bytes) -> bytes:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("route", ["stream", "manual"])
def test_first_chunk_arrives_before_the_handler_finishes(stack: Harness, tmp_path: Path, route: str) -> None:
    gate = tmp_path / "gate"
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"GET /{route}?gate={gate} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = read_until(sock, b"", b"first chunk\n")
        # The app's handler is still waiting for the gate.
        assert not gate.exists()
        assert b"second chunk" not in data
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200")
        gate.write_text("go")
        data = read_to_end(sock, data)
    body = data.split(b"\r\n\r\n", 1)[1]
    assert body.index(b"first chunk\n") < body.index(b"second chunk\n")
