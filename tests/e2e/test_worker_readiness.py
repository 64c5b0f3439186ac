"""
A slow start behind the example Worker in workerd: the Container class's
ping gets an answer at once (the port is bound), requests through the Worker
get the app's 503 + Retry-After while the start-up hooks run, not a
container error, and the app's answers once they are done.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests._process import ROOT, free_port, run_twistd
from tests.e2e._worker import container_env, http, run_harness, wrangler_vars

APPS = ROOT / "tests" / "apps"


def test_slow_start_through_the_worker(tmp_path: Path) -> None:
    gate, log = tmp_path / "gate", tmp_path / "journal"
    port = free_port()
    with run_harness(port, tmp_path=tmp_path) as harness:
        env = container_env(wrangler_vars())
        env.update(CF_CMD_ENDPOINT=harness.bridge(), LIFECYCLE_GATE=str(gate), LIFECYCLE_JOURNAL=str(log))
        with run_twistd(
            "lifecycle_app:app", cwd=APPS, env=env, port=port, args=("--health-path", "/healthz"), tmp_path=tmp_path
        ) as app:
            status, headers, body = http("GET", harness.url + "/")
            assert status == 503, body
            assert headers["retry-after"] == "1"
            assert json.loads(body)["status"] == "starting"
            # The Container class's readiness ping reached the app and was
            # answered (503 counts): the container was not reported as failed.
            state = harness.state()
            assert len(state["starts"]) == 1
            pings = [r for r in state["forwarded"] if r["host"] == "ping"]
            assert pings and pings[0]["status"] == 503
            assert not log.exists() or "startup done" not in log.read_text()

            gate.write_text("go")
            for _ in range(200):
                if http("GET", harness.url + "/healthz")[0] == 200:
                    break
                time.sleep(0.05)
            status, _, body = http("GET", harness.url + "/")
            assert (status, body) == (200, b"pool=open readiness=ready")
            assert len(harness.state()["starts"]) == 1
            assert app.proc.poll() is None
