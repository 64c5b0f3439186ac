"""
Start-up and shutdown hooks and readiness in a real C{twistd -n containerflare}.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from pathlib import Path

from tests._process import ROOT, run_twistd

APPS = ROOT / "tests" / "apps"


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, headers={"Host": "ping"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def wait_until(predicate, what: str, tries: int = 400) -> None:
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def journal(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_starting_then_ready_then_shutdown_hooks(tmp_path: Path) -> None:
    """
    The port answers at once; while the start-up hook waits, requests (the
    Cloudflare ping included) and the health path get 503 + Retry-After;
    then the app serves; on SIGTERM the shutdown hooks run in reverse order,
    a hanging one is cut by its timeout, and the process exits 0.
    """
    gate, log = tmp_path / "gate", tmp_path / "journal"
    env = {"LIFECYCLE_GATE": str(gate), "LIFECYCLE_JOURNAL": str(log)}
    with run_twistd(
        "lifecycle_app:app", cwd=APPS, env=env, args=("--health-path", "/healthz"), tmp_path=tmp_path
    ) as child:
        wait_until(lambda: "startup waiting" in journal(log), "the start-up hook")
        status, headers, body = get(child.port, "/")
        assert status == 503
        assert headers["retry-after"] == "1"
        assert json.loads(body)["status"] == "starting"
        status, headers, body = get(child.port, "/healthz")
        assert (status, json.loads(body)) == (503, {"status": "starting"})
        assert "retry-after" in headers

        gate.write_text("go")
        wait_until(lambda: get(child.port, "/healthz")[0] == 200, "readiness")
        status, _, body = get(child.port, "/healthz")
        assert json.loads(body) == {"status": "ready"}
        status, _, body = get(child.port, "/")
        assert (status, body) == (200, b"pool=open readiness=ready")
        assert get(child.port, "/healthz", "HEAD")[2] == b""

        child.signal(signal.SIGTERM)
        assert child.wait() == 0, child.stderr()
    lines = journal(log)
    assert lines[:3] == ["startup first", "startup waiting", "startup done"]
    # Reverse order of registration: slow_shutdown first (cut after 0.5 s),
    # then close_pool, which still saw the open pool.
    assert lines[3:] == ["shutdown slow", "shutdown close_pool pool=open"]
    err = child.stderr()
    assert "lifecycle_app.slow_shutdown did not finish within 0.5 s" in err
    assert "containerflare stopped" in err


def test_shutdown_hooks_run_after_the_drain(tmp_path: Path) -> None:
    """
    A request in flight when SIGTERM arrives finishes (and its client gets
    the whole answer) before the shutdown hooks run.
    """
    gate, log, release = tmp_path / "gate", tmp_path / "journal", tmp_path / "release"
    gate.write_text("go")
    env = {"LIFECYCLE_GATE": str(gate), "LIFECYCLE_JOURNAL": str(log)}
    with run_twistd("lifecycle_app:app", cwd=APPS, env=env, tmp_path=tmp_path) as child:
        wait_until(lambda: "startup done" in journal(log), "start-up")
        result: list[tuple[int, bytes]] = []

        def slow_request() -> None:
            status, _, body = get(child.port, f"/slow?wait={release}")
            result.append((status, body))

        client = threading.Thread(target=slow_request)
        client.start()
        wait_until(lambda: "request started" in journal(log), "the request")
        child.signal(signal.SIGTERM)
        # Shutdown waits for the request: no hook has run yet.
        time.sleep(0.3)
        assert not any(line.startswith("shutdown") for line in journal(log))
        release.write_text("go")
        client.join(20)
        assert child.wait() == 0, child.stderr()
    assert result == [(200, b"slow done")]
    lines = journal(log)
    assert lines.index("request finished") < lines.index("shutdown slow")


def test_failing_startup_hook_exits_non_zero(tmp_path: Path) -> None:
    """
    A start-up hook that raises: the app never serves, the shutdown hooks
    still run, and the process exits 1 with a message naming the hook.
    """
    log = tmp_path / "journal"
    with run_twistd(
        "lifecycle_app:broken", cwd=APPS, env={"LIFECYCLE_JOURNAL": str(log)}, wait=False, tmp_path=tmp_path
    ) as child:
        assert child.wait() == 1
    err = child.stderr()
    assert (
        "start-up hook lifecycle_app.explode failed: RuntimeError: database unreachable; "
        "not serving, exiting with status 1"
    ) in err
    assert "Traceback" in err
    assert journal(log) == ["shutdown after failure"]


def test_startup_hook_timeout_exits_non_zero(tmp_path: Path) -> None:
    """
    A start-up hook that never finishes is cut by its timeout.
    """
    with run_twistd("lifecycle_app:hanging.app", cwd=APPS, wait=False, tmp_path=tmp_path) as child:
        assert child.wait() == 1
    assert "Hanging.never failed: HookTimeout: lifecycle_app.Hanging.never did not finish within 0.5 s" in child.stderr()


def test_health_path_from_the_environment(tmp_path: Path) -> None:
    """
    CONTAINERFLARE_HEALTH_PATH turns the health path on; an app without hooks
    is ready at once.
    """
    with run_twistd(
        "runtime_app:app", cwd=APPS, env={"CONTAINERFLARE_HEALTH_PATH": "/_health"}, tmp_path=tmp_path
    ) as child:
        status, headers, body = get(child.port, "/_health")
        assert (status, json.loads(body)) == (200, {"status": "ready"})
        assert headers["cache-control"] == "no-store"


def test_bad_health_path_is_a_usage_error(tmp_path: Path) -> None:
    with run_twistd(
        "runtime_app:app", cwd=APPS, env={"CONTAINERFLARE_HEALTH_PATH": "healthz"}, wait=False, tmp_path=tmp_path
    ) as child:
        assert child.wait() != 0
    assert "CONTAINERFLARE_HEALTH_PATH: the health path must start with '/'" in child.stderr() + child.stdout()
