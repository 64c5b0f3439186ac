"""
The HTTP part: the servers compared, wrk runs interleaved across them, and
cold start (launch to first 200).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._body import HEADERS
from bench._proc import (
    PYTHON, ROOT, TWISTD, clean_environ, cpu_seconds, first_200, spawn, status_kib, stop,
)

REPORT_LUA = str(Path(__file__).with_name("report.lua"))


@dataclass(frozen=True)
class Server:
    key: str
    label: str
    argv: Callable[[int], list[str]]
    env: Callable[[int], dict[str, str]] = lambda port: {}


def _containerflare(access_log: bool, app: str = "containerflare_app") -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        args = [TWISTD, "-n", "--pidfile=", "containerflare",
                "--app", f"bench.app_klein:{app}"]
        if not access_log:
            args.append("--no-access-log")
        return args

    return argv


def _containerflare_env(port: int, platform: str = "cloudflare") -> dict[str, str]:
    # Cloudflare Containers (text log lines with colo/country); no command
    # channel, so stdin (/dev/null here) is not read as one: HTTP work only.
    return {"PORT": str(port), "CF_CONTAINER_ADDR": "127.0.0.1", "CF_CMD_ENDPOINT": "disabled",
            "CONTAINERFLARE_PLATFORM": platform}


SERVERS: dict[str, Server] = {
    s.key: s
    for s in [
        Server("a", "bare twisted.web Resource",
               lambda p: [PYTHON, "-m", "bench.serve", "twisted", "--port", str(p)]),
        Server("b", "bare Klein Site(app.resource())",
               lambda p: [PYTHON, "-m", "bench.serve", "klein", "--port", str(p)]),
        Server("bf", "(b), its start-up heap frozen (gc.freeze) as containerflare does",
               lambda p: [PYTHON, "-m", "bench.serve", "klein", "--port", str(p), "--freeze"]),
        Server("bt", "(b) under twistd -n -y (a .tac file), no request log",
               lambda p: [TWISTD, "-n", "--pidfile=", "-y", str(ROOT / "bench" / "twistd_bare.tac")],
               lambda p: {"PORT": str(p)}),
        Server("c", "twistd containerflare --no-access-log, reads metadata",
               _containerflare(False), _containerflare_env),
        Server("c0", "(c), the handler reading the headers itself (no metadata)",
               _containerflare(False, "raw_headers_app"), _containerflare_env),
        Server("d", "(c) with the default access log",
               _containerflare(True), _containerflare_env),
        Server("d_run", "(d) on Cloud Run: JSON access log (httpRequest)",
               _containerflare(True), lambda p: _containerflare_env(p, "cloud_run")),
        Server("e", "Starlette on uvicorn (asyncio, h11, no access log)",
               lambda p: [PYTHON, "-m", "uvicorn", "bench.app_starlette:app",
                          "--host", "127.0.0.1", "--port", str(p), "--no-access-log",
                          "--loop", "asyncio", "--http", "h11", "--log-level", "warning"]),
        # What an access log costs the alternative: uvicorn's own (a line per
        # request through the logging module, to the server's log file).
        Server("e_log", "(e) with uvicorn's access log",
               lambda p: [PYTHON, "-m", "uvicorn", "bench.app_starlette:app",
                          "--host", "127.0.0.1", "--port", str(p), "--access-log",
                          "--loop", "asyncio", "--http", "h11", "--log-level", "info"]),
        # twistd's own start-up cost, without containerflare; loaded, its
        # Site writes Twisted's own request log (a line per request through
        # the legacy log to twistd's log file): what (d) compares with.
        Server("t", "the bare Klein app under twistd -n web (its request log)",
               lambda p: [TWISTD, "-n", "--pidfile=", "web", "--listen",
                          f"tcp:port={p}:interface=127.0.0.1",
                          "--class", "bench.app_klein.bare_resource"]),
        Server("b_str", "bare Klein returning str (chunked)",
               lambda p: [PYTHON, "-m", "bench.serve", "klein-str", "--port", str(p)]),
    ]
}


@dataclass
class Running:
    server: Server
    port: int
    proc: subprocess.Popen[bytes]
    started_kib: dict[str, int] = field(default_factory=dict)


def start(server: Server, logdir: Path) -> Running:
    from bench._proc import free_port

    port = free_port()
    log = logdir / f"server-{server.key}.log"
    proc = spawn(server.argv(port), env=clean_environ(server.env(port)), log=log)
    try:
        first_200(port, proc)
    except BaseException as e:
        stop(proc)
        raise RuntimeError(f"({server.key}) never answered 200: {e}; see {log}") from None
    return Running(server, port, proc, status_kib(proc.pid))


def wrk(port: int, connections: int, duration: float) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s",
            "-s", REPORT_LUA]
    for name, value in HEADERS.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line[len("BENCHJSON "):])
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            return data
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


def throughput(keys: Sequence[str], connections: Sequence[int], duration: float,
               rounds: int, logdir: Path, say: Callable[[str], None]) -> dict:
    """
    Start every server, then for each round and connection count run wrk
    against each server in turn (the order rotates every round).
    """
    running = {}
    try:
        for key in keys:
            try:
                running[key] = start(SERVERS[key], logdir)
            except RuntimeError as e:
                # One broken server (the tree is shared and moving) should
                # not lose the rest of the run: reported, left out.
                say(f"  SKIPPED {e}")
        keys = [k for k in keys if k in running]
        for key in keys:  # warm up: first requests, allocator, caches
            wrk(running[key].port, max(connections), 1)
        runs: dict[str, dict[str, list[dict]]] = {k: {str(c): [] for c in connections} for k in keys}
        order = list(keys)
        for r in range(rounds):
            for c in connections:
                for key in order:
                    pid = running[key].proc.pid
                    cpu0 = cpu_seconds(pid)
                    result = wrk(running[key].port, c, duration)
                    # Server CPU per request: unlike req/s, barely moved by
                    # other work competing for the machine.
                    result["server_cpu_us"] = (cpu_seconds(pid) - cpu0) / max(result["requests"], 1) * 1e6
                    result["loadavg"] = os.getloadavg()[0]
                    result["round"] = r
                    runs[key][str(c)].append(result)
                    bad = sum(result["errors"].values())
                    say(f"  round {r + 1} c={c:<3} {key:<6} {result['rps']:8.0f} req/s  "
                        f"p50 {result['latency_us']['p50'] / 1000:6.2f} ms  "
                        f"p99 {result['latency_us']['p99'] / 1000:6.2f} ms  "
                        f"server CPU {result['server_cpu_us']:5.0f} us/req"
                        + (f"  ERRORS {result['errors']}" if bad else ""))
            order = order[1:] + order[:1]
        memory = {}
        for key, run in running.items():
            kib = status_kib(run.proc.pid)
            memory[key] = {"rss_started_kib": run.started_kib.get("VmRSS"),
                           "peak_rss_kib": kib.get("VmHWM")}
        return {"runs": runs, "memory": memory}
    finally:
        for run in running.values():
            stop(run.proc)


def cold_start(keys: Sequence[str], runs: int, logdir: Path, say: Callable[[str], None]) -> dict:
    """
    Launch to first 200, C{runs} times per server, interleaved; one
    unrecorded launch each first so every run finds the page cache warm.
    """
    from bench._proc import free_port

    times: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    order = list(keys)
    for r in range(runs + 1):
        for key in order:
            server = SERVERS[key]
            port = free_port()
            env = clean_environ(server.env(port))
            argv = server.argv(port)
            t0 = time.perf_counter()
            proc = spawn(argv, env=env, log=logdir / f"cold-{key}.log")
            try:
                t1 = first_200(port, proc)
                used = cpu_seconds(proc.pid)
            finally:
                stop(proc)
            if r > 0:
                times[key].append(t1 - t0)
                cpu[key].append(used)
        if r > 0:
            say("  cold start run %d: %s" % (r, "  ".join(
                f"{k} {times[k][-1]:.3f} s (cpu {cpu[k][-1]:.2f} s)" for k in order)))
        order = order[1:] + order[:1]
    # CPU time to the first 200 is much less sensitive than wall time to other
    # work on the machine: reported beside it.
    return {"seconds": times, "cpu_seconds": cpu}
