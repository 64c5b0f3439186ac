"""
WebSockets through the example Worker in workerd: the Container class's
fetch forwards the upgrade to the app in twistd; messages flow both ways,
the app sees the metadata the Worker attached to the upgrade request, and a
SIGTERM to the app closes the WebSocket with 1001 all the way to the client.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._process import ROOT, TwistdProcess, free_port, run_twistd
from tests._wsclient import CLOSE, WebSocketClient, close_code
from tests.e2e._worker import Harness, container_env, run_harness, wrangler_vars

APPS = ROOT / "tests" / "apps"
CF = {"colo": "CDG", "country": "FR", "region": "Île-de-France", "city": "Paris", "asn": 64496}
CLIENT_IP = "203.0.113.7"
RAY = "8f1e2d3c4b5a6978-CDG"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Harness, TwistdProcess]]:
    port = free_port()
    with run_harness(port, tmp_path=tmp_path) as harness:
        env = container_env(wrangler_vars())
        env["CF_CMD_ENDPOINT"] = harness.bridge()
        env["WEBSOCKET_JOURNAL"] = str(tmp_path / "journal")
        with run_twistd("websocket_app:app", cwd=APPS, env=env, port=port, tmp_path=tmp_path) as app:
            yield harness, app


def connect(harness: Harness) -> WebSocketClient:
    host, port = harness.url.removeprefix("http://").split(":")
    client = WebSocketClient.connect(
        host,
        int(port),
        "/ws?room=7",
        headers={
            "MF-CF-Blob": json.dumps(CF),
            "cf-connecting-ip": CLIENT_IP,
            "cf-ray": RAY,
            "User-Agent": "containerflare-e2e-ws/1",
        },
    )
    assert client.status == 101, (client.status, client.headers)
    return client


def test_messages_and_metadata_through_the_worker(stack: tuple[Harness, TwistdProcess]) -> None:
    harness, _ = stack
    client = connect(harness)
    hello = json.loads(client.recv_message())
    metadata = hello["hello"]
    assert hello["platform"] == "cloudflare"
    assert metadata["path"] == "/ws?room=7"
    assert metadata["colo"] == "CDG"
    assert metadata["country"] == "FR"
    assert metadata["client_ip"] == CLIENT_IP
    assert metadata["request_id"] == RAY
    assert metadata["user_agent"] == "containerflare-e2e-ws/1"
    # The Worker really built a metadata header for the upgrade request.
    forwarded = [r for r in harness.state()["forwarded"] if r["path"] == "/ws?room=7"]
    assert forwarded and forwarded[-1]["metadata"] is not None
    for text in ("one", "two", "x" * 5000):
        client.send(text)
        assert client.recv_message() == b"echo: " + text.encode()
    client.close(1000)
    opcode, payload = client.recv()
    assert (opcode, close_code(payload)[0]) == (CLOSE, 1000)
    client.shutdown()


def test_shutdown_closes_with_1001_through_the_worker(stack: tuple[Harness, TwistdProcess]) -> None:
    harness, app = stack
    client = connect(harness)
    assert b"hello" in client.recv_message()
    app.signal(signal.SIGTERM)
    opcode, payload = client.recv()
    assert opcode == CLOSE
    assert close_code(payload)[0] == 1001
    client.close(1001)
    client.read_until_eof()
    client.shutdown()
    assert app.wait() == 0, app.stderr()
    assert "Grace period over" not in app.stderr()
