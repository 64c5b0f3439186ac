"""
The benchmark's own tools keep working: the suite never runs C{bench/}
itself (timed figures do not belong in tests), but docs/benchmarks.md
reports what these tools measure, so the command-channel load generator is
driven here for a moment against the echo responder over a real UNIX
socket, and the summary's command-channel figures are checked on known
numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench._command import _wait_socket

from ._process import ROOT, clean_environ, stop_process


def _env() -> dict[str, str]:
    return clean_environ({"PYTHONPATH": str(ROOT)})


@pytest.fixture
def echo(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "echo.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cmd_echo", "--listen", str(path)],
        cwd=str(ROOT), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_socket(path, proc)
        yield path, proc.pid
    finally:
        stop_process(proc)


def _load(kind: str, path: Path, pid: int, in_flight: int, connections: int = 1) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cmd_load", "--kind", kind, "--socket", str(path),
         "--concurrency", str(in_flight), "--duration", "0.3", "--warmup", "0.1",
         "--responder-pid", str(pid), "--connections", str(connections)],
        cwd=str(ROOT), env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if line.startswith("BENCHJSON ")]
    assert out.returncode == 0 and len(lines) == 1, out.stderr[-2000:]
    return json.loads(lines[0].removeprefix("BENCHJSON "))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("kind", "in_flight", "connections"),
    [("floor", 1, 1), ("floor", 8, 2), ("client", 8, 1)],
)
def test_command_load_against_the_echo_responder(
    echo: tuple[Path, int], kind: str, in_flight: int, connections: int
) -> None:
    path, pid = echo
    result = _load(kind, path, pid, in_flight, connections)
    assert result["invokes"] > 0
    assert result["per_second"] == pytest.approx(result["invokes"] / result["seconds"])
    assert result["p50_us"] <= result["p99_us"]
    assert result["client_cpu_us"] > 0
    # The responder's CPU over the window: clock ticks, so possibly 0 in
    # 0.3 s, but read (not None) and never negative.
    assert result["responder_cpu_us"] is not None and result["responder_cpu_us"] >= 0


def test_more_than_one_connection_is_for_the_floor_only(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cmd_load", "--kind", "client",
         "--socket", str(tmp_path / "none.sock"), "--connections", "2"],
        cwd=str(ROOT), env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--connections" in out.stderr


def _run(per_second: float, client_cpu_us: float, responder_cpu_us: float) -> dict:
    return {"per_second": per_second, "p50_us": 1000.0, "p99_us": 2000.0,
            "client_cpu_us": client_cpu_us, "responder_cpu_us": responder_cpu_us}  # fmt: skip


def test_the_summary_shows_the_taking_turns_rate() -> None:
    from bench.__main__ import _markdown, _ratios

    results = {
        "command": {
            "runs": {
                "floor": {"1": [_run(5000, 100, 100)], "64": [_run(40000, 15, 10)]},
                "floor2": {"64": [_run(60000, 15, 10)]},
                "client": {"1": [_run(4000, 150, 100)], "64": [_run(30000, 20, 13.3)]},
            },
            "notes": [],
            "host_command": None,
        },
        "date": "2026-12-04T00:00:00+00:00",
        "invocation": "bench/run.sh --only command",
        "git": "0000000",
        "machine": {"cpus": 2, "cpu": "test", "kernel": "test", "pinning": "none",
                    "loadavg_start": [0.0, 0.0, 0.0], "loadavg_end": [0.0, 0.0, 0.0]},  # fmt: skip
        "versions": {},
    }
    ratios = _ratios(results)
    # 1e6 / (15 + 10) = 40000: taking turns exactly.
    assert ratios["command.floor.64/turns"]["median"] == pytest.approx(1.0)
    assert ratios["command.floor2.64/turns"]["median"] == pytest.approx(1.5)
    assert ratios["command.floor2/floor.64"]["median"] == pytest.approx(1.5)
    assert ratios["command.client.64/1"]["median"] == pytest.approx(7.5)
    results["ratios"] = ratios
    text = _markdown(results)
    assert "| the same over 2 connections | 64 | 60000 |" in text
    assert "| CommandClient -> echo responder | 64 | 30000 | 1.000 | 2.000 | 20.0 | 13.3 | 30030 |" in text
