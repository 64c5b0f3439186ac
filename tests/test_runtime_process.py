"""
The runtime for real: C{twistd -n --pidfile= containerflare} child processes
on loopback ports, under each platform's variables, stopped by real signals.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ._process import TWISTD, clean_environ, free_port, run_twistd, wait_for_port

APPS = Path(__file__).parent / "apps"


def get(port: int, path: str = "/", host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("env", "platform"),
    [
        ({}, "generic"),
        ({"CONTAINERFLARE_WORKER": "w", "CLOUDFLARE_APPLICATION_ID": "a"}, "cloudflare"),
        ({"K_SERVICE": "svc", "K_REVISION": "svc-1", "GOOGLE_CLOUD_PROJECT": "p"}, "cloud_run"),
    ],
)
def test_serves_under_each_platform(tmp_path: Path, env: dict[str, str], platform: str) -> None:
    with run_twistd("runtime_app:app", cwd=APPS, env=env, tmp_path=tmp_path) as child:
        status, headers, body = get(child.port, "/?q=1")
        assert status == 200
        data = json.loads(body)
        assert data == {"platform": platform, "same_context": True, "path": "/?q=1"}
        child.signal(signal.SIGTERM)
        assert child.wait() == 0
    # Nothing but protocol lines may reach stdout: here, nothing at all.
    assert child.stdout() == ""
    assert "containerflare serving on" in child.stderr()


def test_cf_container_port_and_addr(tmp_path: Path) -> None:
    port = free_port()
    env = {"CF_CONTAINER_PORT": str(port), "CF_CONTAINER_ADDR": "127.0.0.1"}
    with run_twistd("runtime_app:app", cwd=APPS, env=env, port=port, tmp_path=tmp_path) as child:
        status, _, body = get(port)
        assert status == 200
        assert json.loads(body)["platform"] == "cloudflare"


def test_ipv6_interface(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback")
    port = free_port("::1")
    env = {"PORT": str(port), "CF_CONTAINER_ADDR": "::1"}
    with run_twistd("runtime_app:app", cwd=APPS, env=env, port=port, wait=False, tmp_path=tmp_path) as child:
        wait_for_port(port, host="::1", proc=child.proc)
        status, _, _ = get(port, host="::1")
        assert status == 200


def test_explicit_endpoint(tmp_path: Path) -> None:
    port = free_port()
    with run_twistd(
        "runtime_app.plain", cwd=APPS, args=("--endpoint", f"tcp:{port}:interface=127.0.0.1"),
        port=port, tmp_path=tmp_path,
    ) as child:
        assert get(port) [2] == b"plain resource"
        child.signal(signal.SIGINT)
        assert child.wait() == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT='http'"),
        ({"CF_CONTAINER_ADDR": "example.com"}, "CF_CONTAINER_ADDR='example.com'"),
    ],
)
def test_invalid_environment_stops_startup(env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "containerflare", "--app", "runtime_app:app"],
        cwd=APPS, env=clean_environ(env), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    # twistd prints usage errors on stdout; nothing else has started yet.
    assert message in result.stdout + result.stderr


def test_port_in_use_fails_startup(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*TWISTD, "-n", "--pidfile=", "containerflare", "--app", "runtime_app:app",
             "--endpoint", f"tcp:{port}:interface=127.0.0.1"],
            cwd=APPS, env=clean_environ(), capture_output=True, text=True, timeout=60,
        )
    assert result.returncode != 0
    assert "Couldn't listen" in result.stderr or "Address already in use" in result.stderr


def test_drain_on_sigterm(tmp_path: Path) -> None:
    """
    A request in flight when SIGTERM arrives gets its whole response, idle
    keep-alive connections are closed, new connections are refused, and the
    process exits 0.
    """
    marker = tmp_path / "finish"
    started = tmp_path / "started"
    with run_twistd("runtime_app:app", cwd=APPS, tmp_path=tmp_path) as child:
        # An idle keep-alive connection.
        idle = http.client.HTTPConnection("127.0.0.1", child.port, timeout=30)
        idle.request("GET", "/")
        first = idle.getresponse()
        assert first.status == 200
        first.read()

        result: dict[str, object] = {}

        def slow() -> None:
            try:
                result["response"] = get(child.port, f"/slow?wait={marker}&started={started}")
            except Exception as e:  # reported below
                result["error"] = e

        thread = threading.Thread(target=slow)
        thread.start()
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists()

        child.signal(signal.SIGTERM)
        # The idle connection is closed by the server.
        assert idle.sock is not None
        idle.sock.settimeout(10)
        assert idle.sock.recv(1) == b""
        idle.close()
        # The listener is gone while the slow request is still in flight.
        deadline = time.monotonic() + 10
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", child.port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                refused = True
        assert refused
        assert child.proc.poll() is None

        marker.write_text("go")
        thread.join(30)
        assert "error" not in result, result.get("error")
        status, headers, body = result["response"]  # type: ignore[misc]
        assert status == 200
        assert body == b"x" * 200_000
        assert headers.get("Connection", headers.get("connection")) == "close"
        assert child.wait() == 0
    assert "Draining 1 request(s) in flight" in child.stderr()


def test_grace_expiry_aborts_and_exits(tmp_path: Path) -> None:
    """
    A request that outlives --grace is cut off, and the process still exits
    by itself, with status 0.
    """
    marker = tmp_path / "never"
    started = tmp_path / "started"
    with run_twistd("runtime_app:app", cwd=APPS, args=("--grace", "0.5"), tmp_path=tmp_path) as child:
        result: dict[str, object] = {}

        def slow() -> None:
            try:
                result["response"] = get(child.port, f"/slow?wait={marker}&started={started}")
            except Exception as e:
                result["error"] = e

        thread = threading.Thread(target=slow)
        thread.start()
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        child.signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0
        thread.join(30)
        assert isinstance(result.get("error"), (http.client.HTTPException, OSError))
    assert "Grace period over" in child.stderr()
