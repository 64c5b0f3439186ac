"""
WebSockets through a real C{twistd -n containerflare}: handshake, the
upgrade request's metadata, messages, and a 1001 close frame on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

from tests._process import ROOT, run_twistd
from tests._wsclient import CLOSE, TEXT, WebSocketClient, close_code

APPS = ROOT / "tests" / "apps"


def journal(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def open_ws(port: int, **headers: str) -> WebSocketClient:
    client = WebSocketClient.connect("127.0.0.1", port, "/ws?room=7", headers=headers)
    assert client.status == 101, client.headers
    return client


def test_messages_and_metadata_of_the_upgrade(tmp_path: Path) -> None:
    env = {"WEBSOCKET_JOURNAL": str(tmp_path / "journal")}
    with run_twistd("websocket_app:app", cwd=APPS, env=env, tmp_path=tmp_path) as child:
        client = open_ws(child.port, **{"User-Agent": "ws-test/1.0"})
        hello = json.loads(client.recv_message())
        assert hello["platform"] == "generic"
        assert hello["hello"]["path"] == "/ws?room=7"
        assert hello["hello"]["method"] == "GET"
        assert hello["hello"]["user_agent"] == "ws-test/1.0"
        for text in ("one", "two", "x" * 70000):
            client.send(text)
            assert client.recv_message() == b"echo: " + text.encode()
        client.close(1000)
        opcode, payload = client.recv()
        assert (opcode, close_code(payload)[0]) == (CLOSE, 1000)
        assert client.read_until_eof() == b""
        client.shutdown()
        for _ in range(100):
            if journal(tmp_path / "journal"):
                break
            time.sleep(0.05)
        assert journal(tmp_path / "journal") == ["closed clean=True code=1000"]
        # Plain HTTP on the same server still works after an upgrade.
        with urllib.request.urlopen(child.url + "/", timeout=20) as response:
            assert response.read() == b"generic"


def test_shutdown_closes_websockets_with_1001(tmp_path: Path) -> None:
    """
    On SIGTERM every open WebSocket gets a close frame with code 1001; a
    client that answers it is closed cleanly, one that does not is dropped
    after Autobahn's close timeout; both well inside the grace period, and
    the process exits 0.
    """
    env = {"WEBSOCKET_JOURNAL": str(tmp_path / "journal")}
    with run_twistd(
        "websocket_app:app", cwd=APPS, env=env, args=("--grace", "20"), tmp_path=tmp_path
    ) as child:
        polite, silent = open_ws(child.port), open_ws(child.port)
        for client in (polite, silent):
            assert b"hello" in client.recv_message()
        child.signal(signal.SIGTERM)
        for client in (polite, silent):
            opcode, payload = client.recv()
            assert opcode == CLOSE
            assert close_code(payload) == (1001, "server shutting down")
        polite.close(1001)
        assert polite.read_until_eof() == b""
        assert silent.read_until_eof() == b""
        assert child.wait() == 0, child.stderr()
        polite.shutdown()
        silent.shutdown()
    err = child.stderr()
    # Closed by the drain, not by the grace period running out.
    assert "Grace period over" not in err
    assert sorted(journal(tmp_path / "journal")) == [
        "closed clean=False code=1006",
        "closed clean=True code=1001",
    ]


def test_text_frames_are_text(tmp_path: Path) -> None:
    with run_twistd("websocket_app:app", cwd=APPS, tmp_path=tmp_path) as child:
        client = open_ws(child.port)
        client.recv_message()
        client.send("héllo")
        opcode, payload = client.recv()
        assert (opcode, payload.decode()) == (TEXT, "echo: héllo")
        client.shutdown()
