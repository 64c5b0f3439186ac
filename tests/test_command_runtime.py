"""
The command channel inside the runtime: a real C{twistd -n containerflare}
child whose handlers call C{ctx.invoke}, with the channel chosen by
C{CF_CMD_ENDPOINT} or C{--command-endpoint}: stdio (this test is the host on
the child's stdin/stdout, which must carry nothing but protocol lines), TCP
to the reference host, and disabled.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ._process import TWISTD, clean_environ, free_port, run_twistd, wait_for_port
from .test_command_sockets import running_host

APPS = Path(__file__).parent / "apps"


def call(port: int, command: str, payload: Any = None) -> dict[str, Any]:
    query = urllib.parse.urlencode({"command": command, "payload": json.dumps(payload)})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/invoke?{query}", timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


class StdioHost(threading.Thread):
    """
    Answers the child's request lines: C{ping} echoes, anything else is
    C{unknown_command}.  Keeps every line the child wrote to stdout.
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[bytes] = []

    def run(self) -> None:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            try:
                request = json.loads(line)
                if request["command"] == "ping":
                    reply = {"id": request["id"], "ok": True, "payload": request["payload"], "diagnostic": None}
                else:
                    reply = {"id": request["id"], "ok": False, "payload": {"code": "unknown_command"},
                             "diagnostic": f"unknown command {request['command']!r}"}
            except (ValueError, KeyError, TypeError):
                continue  # not a request: the assertions below catch it
            try:
                self.proc.stdin.write(json.dumps(reply).encode() + b"\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return


def test_stdio_channel_under_twistd(tmp_path: Path) -> None:
    port = free_port()
    env = clean_environ({"CF_CMD_ENDPOINT": "stdio", "PORT": str(port)})
    with open(tmp_path / "twistd.err", "wb") as err:
        proc = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "containerflare", "--app", "command_app:app"],
            cwd=str(APPS), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
        )
    host = StdioHost(proc)
    host.start()
    try:
        wait_for_port(port, proc=proc)
        assert call(port, "ping", {"hello": "world"}) == {"result": {"hello": "world"}}
        failed = call(port, "kv.frob", {})
        assert failed["error"] == "CommandFailure" and "unknown_command" in failed["message"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        host.join(timeout=10)
    stderr = (tmp_path / "twistd.err").read_text(errors="replace")
    # Every stdout line was a protocol request; the prints and logs went to stderr.
    assert len(host.lines) == 2, host.lines
    for line in host.lines:
        assert set(json.loads(line)) == {"id", "command", "payload"}
    assert "print() from the handler before ping" in stderr
    assert "invoking kv.frob" in stderr


def test_tcp_channel_from_the_environment_and_the_option(tmp_path: Path) -> None:
    with running_host(tmp_path, "tcp") as host:
        endpoint = str(host.endpoint)
        with run_twistd("command_app:app", cwd=APPS, env={"CF_CMD_ENDPOINT": endpoint}, tmp_path=tmp_path) as child:
            assert call(child.port, "ping", [1, 2]) == {"result": [1, 2]}
            put = call(child.port, "kv.put", {"binding": "KV", "key": "k", "value": "v"})
            assert put == {"result": None}
            got = call(child.port, "kv.get", {"binding": "KV", "key": "k"})
            assert got == {"result": {"value": "v", "metadata": None}}
        # The option wins over the environment.
        with run_twistd(
            "command_app:app", cwd=APPS, env={"CF_CMD_ENDPOINT": "disabled"},
            args=("--command-endpoint", endpoint), tmp_path=tmp_path,
        ) as child:
            got = call(child.port, "kv.get", {"binding": "KV", "key": "k"})
            assert got == {"result": {"value": "v", "metadata": None}}


def test_cloud_run_has_no_channel(tmp_path: Path) -> None:
    with run_twistd("command_app:app", cwd=APPS, env={"K_SERVICE": "svc"}, tmp_path=tmp_path) as child:
        got = call(child.port, "ping")
        assert got["error"] == "Unavailable"
        assert "not available on Google Cloud Run" in got["message"]
