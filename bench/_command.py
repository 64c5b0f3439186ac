"""
The command channel part: invokes per second and p50/p99 over a UNIX
socket, sequential and N in flight, for
  - floor:  a bare LineReceiver client against the echo responder,
  - floor2: the same over two connections (more than one in flight only),
  - client: containerflare's CommandClient against the same responder,
  - host:   CommandClient against the reference host
            (C{python -m containerflare.command.host}), when it exists.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench._proc import PYTHON, ROOT, clean_environ, spawn, stop

#: What the reference host is asked: C{ping} answers its payload unchanged
#: (docs/commands.md), so the host's protocol and dispatch are what is measured.
HOST_COMMAND = "ping"
HOST_PAYLOAD = {"key": "bench", "value": "x" * 64}


def _wait_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"responder exited with {proc.returncode}")
        if path.exists():
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(path))
                    return
            except OSError:
                pass
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {path}")


def _load(kind: str, sock: Path, responder: int, concurrency: int, duration: float,
          command: str | None = None, payload: object = None, connections: int = 1) -> dict:
    argv = [PYTHON, "-m", "bench.cmd_load", "--kind", kind, "--socket", str(sock),
            "--concurrency", str(concurrency), "--duration", str(duration),
            "--responder-pid", str(responder), "--connections", str(connections)]
    if command is not None:
        argv += ["--command", command, "--payload", json.dumps(payload)]
    out = subprocess.run(argv, cwd=str(ROOT), env=clean_environ(), capture_output=True,
                         text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError(f"cmd_load {kind} failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")


def client_available() -> str | None:
    """
    Why the CommandClient cannot be benchmarked yet, or None.
    """
    try:
        from containerflare.command import CommandClient
    except ImportError as e:
        return f"containerflare.command does not import: {e}"
    if not hasattr(CommandClient, "connect"):
        return "CommandClient.connect does not exist yet"
    return None


def host_available() -> bool:
    return importlib.util.find_spec("containerflare.command.host") is not None


def command_channel(concurrencies: Sequence[int], duration: float, rounds: int,
                    logdir: Path, say: Callable[[str], None]) -> dict:
    notes = []
    # floor2: the floor over two connections (with more than one in flight),
    # where client and responder can work at the same time instead of in turn.
    kinds = ["floor", "floor2"]
    missing = client_available()
    if missing is None:
        kinds.append("client")
        if host_available():
            kinds.append("host")
        else:
            notes.append("reference host not available: host runs skipped")
    else:
        notes.append(missing + ": client runs skipped")
    results: dict[str, dict[str, list[dict]]] = {
        k: {str(c): [] for c in concurrencies if k != "floor2" or c > 1} for k in kinds
    }
    procs = []
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp:
        echo_sock = Path(tmp) / "echo.sock"
        host_sock = Path(tmp) / "host.sock"
        try:
            echo = spawn([PYTHON, "-m", "bench.cmd_echo", "--listen", str(echo_sock)],
                         env=clean_environ(), log=logdir / "cmd-echo.log")
            procs.append(echo)
            _wait_socket(echo_sock, echo)
            if "host" in kinds:
                host = spawn([PYTHON, "-m", "containerflare.command.host",
                              "--listen", f"unix:{host_sock}"],
                             env=clean_environ(), log=logdir / "cmd-host.log")
                procs.append(host)
                _wait_socket(host_sock, host)
            order = list(kinds)
            for r in range(rounds):
                for c in concurrencies:
                    for kind in order:
                        if kind == "floor2" and c == 1:
                            continue
                        if kind == "floor2":
                            result = _load("floor", echo_sock, echo.pid, c, duration, connections=2)
                        elif kind == "host":
                            result = _load("client", host_sock, host.pid, c, duration,
                                           HOST_COMMAND, HOST_PAYLOAD)
                        else:
                            result = _load(kind, echo_sock, echo.pid, c, duration)
                        result["round"] = r
                        results[kind][str(c)].append(result)
                        say(f"  round {r + 1} in flight {c:<3} {kind:<6} "
                            f"{result['per_second']:8.0f} invokes/s  "
                            f"p50 {result['p50_us'] / 1000:6.3f} ms  p99 {result['p99_us'] / 1000:6.3f} ms")
                order = order[1:] + order[:1]
        finally:
            for proc in procs:
                stop(proc)
    return {"runs": results, "notes": notes,
            "host_command": [HOST_COMMAND, HOST_PAYLOAD] if "host" in kinds else None}
