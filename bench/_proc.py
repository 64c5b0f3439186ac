"""
Process plumbing for the benchmarks: free ports, CPU pinning, waiting for a
first 200, peak RSS, stopping what we started (by PID only).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")
TWISTD = str(BIN / "twistd")

#: CPU for servers and CPU for load generators / drivers, when there are two.
_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPU = _CPUS[-1]
LOAD_CPU = _CPUS[0]
PINNED = len(_CPUS) >= 2

# Variables that would make a child believe it runs on some platform.
_PLATFORM_PREFIXES = ("CF_", "CONTAINERFLARE_", "CLOUDFLARE_", "K_", "CLOUD_RUN_")
_PLATFORM_VARS = {"PORT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "GOOGLE_CLOUD_REGION", "REGION"}


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _PLATFORM_VARS and not k.startswith(_PLATFORM_PREFIXES)
    }
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if extra:
        env.update(extra)
    return env


def pin_self() -> None:
    if PINNED:
        os.sched_setaffinity(0, {LOAD_CPU})


def _pin_server() -> None:
    if PINNED:
        os.sched_setaffinity(0, {SERVER_CPU})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(argv: Sequence[str], *, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """
    Start a server pinned to the server CPU, its output in C{log}.
    """
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            cwd=str(ROOT),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin_server,
        )


_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def first_200(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> float:
    """
    Poll C{GET /} until it answers 200; return the C{time.perf_counter()} of
    that answer.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(_REQUEST)
                head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"no 200 from port {port} after {timeout} s")


def status_kib(pid: int) -> dict[str, int]:
    """
    VmRSS and VmHWM (peak RSS) of a process, in KiB.
    """
    result = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            result[key] = int(value.split()[0])
    return result


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """
    User + system CPU time a process has used so far (clock-tick resolution).
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
