"""
The stdio transport in a real child process: its stdin and stdout are the
channel (this test is the host) while it also logs and prints; stdout must
carry nothing but protocol lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from ._process import ROOT, clean_environ

CHILD = Path(__file__).parent / "apps" / "command_stdio_child.py"


def start_child(mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode],
        cwd=str(ROOT),
        env=clean_environ({"PYTHONPATH": str(ROOT)}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_requests(stdout: IO[bytes], count: int, seen: list[bytes]) -> list[dict[str, Any]]:
    requests = []
    for _ in range(count):
        line = stdout.readline()
        assert line, "the child closed stdout early"
        seen.append(line)
        requests.append(json.loads(line))
    return requests


def reply(stdin: IO[bytes], obj: dict[str, Any]) -> None:
    stdin.write(json.dumps(obj).encode() + b"\n")
    stdin.flush()


class Watchdog:
    """
    Kills the child (by its PID) if the test hangs on a read.
    """

    def __init__(self, proc: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
        self._timer = threading.Timer(seconds, proc.kill)
        self._timer.start()

    def stop(self) -> None:
        self._timer.cancel()


def result_of(stderr: str) -> dict[str, Any]:
    lines = [line for line in stderr.splitlines() if "RESULT " in line]
    assert len(lines) == 1, stderr
    return json.loads(lines[0].split("RESULT ", 1)[1])  # type: ignore[no-any-return]


def test_stdio_channel_carries_only_protocol_lines() -> None:
    proc = start_child("concurrent")
    dog = Watchdog(proc)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        seen: list[bytes] = []
        pings = read_requests(proc.stdout, 20, seen)
        assert [r["command"] for r in pings] == ["ping"] * 20
        assert len({r["id"] for r in pings}) == 20
        # Answer in reverse order: matched by id.
        for request in reversed(pings):
            reply(proc.stdin, {"id": request["id"], "ok": True, "payload": request["payload"], "diagnostic": None})
        (kv,) = read_requests(proc.stdout, 1, seen)
        assert kv["command"] == "kv.get" and kv["payload"] == {"binding": "KV", "key": "hits"}
        # A reference-style host: no id in the reply (FIFO).
        reply(proc.stdin, {"ok": True, "payload": {"value": "41", "metadata": None}, "diagnostic": None})
        rest, err = proc.communicate(timeout=30)
    finally:
        dog.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.decode(errors="replace")
    assert proc.returncode == 0, stderr
    # Nothing after the 21 request lines, and every line was a request.
    assert rest == b""
    for line in seen:
        assert line.endswith(b"\n")
        obj = json.loads(line)
        assert set(obj) == {"id", "command", "payload"}
    # The prints and logs went to stderr.
    assert "print() output must not reach stdout" in stderr
    assert "sys.stdout.write output must not reach stdout either" in stderr
    assert "child started in mode concurrent" in stderr
    result = result_of(stderr)
    assert result == {"pings": [{"n": i} for i in range(20)], "kv": "41"}


def test_end_of_stdin_fails_waiting_invokes() -> None:
    proc = start_child("eof")
    dog = Watchdog(proc)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        seen: list[bytes] = []
        (request,) = read_requests(proc.stdout, 1, seen)
        assert request["payload"] == "never answered"
        proc.stdin.close()  # the host goes away without answering
        rest = proc.stdout.read()
        err = proc.stderr.read() if proc.stderr is not None else b""
        proc.wait(timeout=30)
    finally:
        dog.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.decode(errors="replace")
    assert proc.returncode == 0, stderr
    assert rest == b""
    result = result_of(stderr)
    assert result["error"] == "TransportClosed"
    assert result["later"] == "TransportClosed"
