"""
C{python -m bench}: the whole benchmark in one run (see docs/benchmarks.md).
C{bench/run.sh} installs wrk and the C{bench} extra first, then runs this.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench._proc import LOAD_CPU, PINNED, ROOT, SERVER_CPU, pin_self

#: The targets of issue 7, as (name, ratio key, comparison, bound).
TARGETS = [
    ("c/b throughput, 50 connections", "http.c/b.rps.50", ">=", 0.95),
    ("c/b p99, 50 connections", "http.c/b.p99.50", "<=", 1.10),
    ("c/b throughput, 1 connection", "http.c/b.rps.1", ">=", 0.95),
    ("c/b p99, 1 connection", "http.c/b.p99.1", "<=", 1.10),
    ("d/b throughput, 50 connections", "http.d/b.rps.50", ">=", 0.85),
    ("d/b throughput, 1 connection", "http.d/b.rps.1", ">=", 0.85),
    ("cold start c/b", "cold.c/b", "<=", 1.15),
    ("command channel: 64 in flight / sequential", "command.client.64/1", ">=", 10.0),
    ("command channel: client / echo floor, 64 in flight", "command.client/floor.64", ">=", 0.5),
]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("twisted", "klein", "treq", "starlette", "uvicorn", "h11", "containerflare"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    out["wrk"] = (wrk.stdout + wrk.stderr).split("Copyright")[0].strip().removeprefix("wrk ")
    return out


def _machine() -> dict[str, object]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "pinning": f"servers on CPU {SERVER_CPU}, load generators on CPU {LOAD_CPU}"
        if PINNED else "none (one CPU)",
        "loadavg_start": os.getloadavg(),
    }


def _git() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "containerflare"],
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + (" (containerflare/ modified)" if dirty else "")


def _median_ratio(xs: list[float], ys: list[float]) -> dict[str, object]:
    per_round = [x / y for x, y in zip(xs, ys) if y]
    return {"median": statistics.median(per_round) if per_round else None,
            "rounds": [round(v, 3) for v in per_round]}


def _ratios(results: dict) -> dict[str, dict]:
    ratios: dict[str, dict] = {}
    http = results.get("http")
    if http:
        runs = http["runs"]
        for x, y in [("c", "b"), ("d", "b"), ("c", "e"), ("d_run", "b"), ("a", "b"), ("b", "e"),
                     ("b_str", "b"), ("d", "c"), ("t", "b"), ("d", "t"),
                     ("c0", "b"), ("c", "c0"), ("bf", "b"), ("c0", "bf"), ("c", "bf"),
                     ("bt", "b"), ("c0", "bt"), ("c", "bt"), ("e_log", "e"), ("d", "e_log"),
                     ("t", "bt")]:
            if x not in runs or y not in runs:
                continue
            for c in runs[x]:
                ratios[f"http.{x}/{y}.rps.{c}"] = _median_ratio(
                    [r["rps"] for r in runs[x][c]], [r["rps"] for r in runs[y][c]])
                # Inverse CPU per request: the throughput ratio the server
                # would show if it had the CPU to itself.
                ratios[f"http.{x}/{y}.cpu_eff.{c}"] = _median_ratio(
                    [r["server_cpu_us"] for r in runs[y][c]], [r["server_cpu_us"] for r in runs[x][c]])
                ratios[f"http.{x}/{y}.p99.{c}"] = _median_ratio(
                    [r["latency_us"]["p99"] for r in runs[x][c]],
                    [r["latency_us"]["p99"] for r in runs[y][c]])
    cold = results.get("cold")
    if cold:
        s = cold["seconds"]
        for x, y in [("c", "b"), ("t", "b"), ("c", "t"), ("c", "e"), ("b", "e")]:
            if x in s and y in s:
                ratios[f"cold.{x}/{y}"] = {"median": statistics.median(s[x]) / statistics.median(s[y])}
                cpu = cold["cpu_seconds"]
                ratios[f"cold.cpu.{x}/{y}"] = {"median": statistics.median(cpu[x]) / statistics.median(cpu[y])}
    command = results.get("command")
    if command:
        runs = command["runs"]
        if "client" in runs and "1" in runs["client"] and "64" in runs["client"]:
            ratios["command.client.64/1"] = _median_ratio(
                [r["per_second"] for r in runs["client"]["64"]],
                [r["per_second"] for r in runs["client"]["1"]])
        if "floor" in runs and "1" in runs["floor"] and "64" in runs["floor"]:
            ratios["command.floor.64/1"] = _median_ratio(
                [r["per_second"] for r in runs["floor"]["64"]],
                [r["per_second"] for r in runs["floor"]["1"]])
        # Measured rate over the rate of client and responder taking turns
        # (1e6 / their CPU per invoke summed): 1.0 when they never overlap.
        for kind, byc in runs.items():
            rs = [r for r in byc.get("64", []) if r.get("responder_cpu_us") is not None]
            if rs:
                ratios[f"command.{kind}.64/turns"] = _median_ratio(
                    [r["per_second"] for r in rs],
                    [1e6 / (r["client_cpu_us"] + r["responder_cpu_us"]) for r in rs])
        if "floor2" in runs and "64" in runs["floor2"]:
            ratios["command.floor2/floor.64"] = _median_ratio(
                [r["per_second"] for r in runs["floor2"]["64"]],
                [r["per_second"] for r in runs["floor"]["64"]])
        for c in ("1", "64"):
            if "client" in runs and c in runs["client"]:
                ratios[f"command.client/floor.{c}"] = _median_ratio(
                    [r["per_second"] for r in runs["client"][c]],
                    [r["per_second"] for r in runs["floor"][c]])
            if "host" in runs and c in runs["host"]:
                ratios[f"command.host/floor.{c}"] = _median_ratio(
                    [r["per_second"] for r in runs["host"][c]],
                    [r["per_second"] for r in runs["floor"][c]])
    return ratios


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def _markdown(results: dict) -> str:
    from bench._http import SERVERS

    machine = results["machine"]
    versions = results["versions"]
    lines = [
        "| run | |",
        "|---|---|",
        f"| date (UTC) | {results['date']} |",
        f"| command | `{results['invocation'].strip()}` ({results.get('elapsed_s', '?')} s) |",
        f"| code | containerflare at {results['git']} |",
        f"| machine | {machine['cpus']} x {machine['cpu']}, Linux {machine['kernel']}; {machine['pinning']} |",
        "| load average (1 min) at start / end | "
        f"{machine['loadavg_start'][0]:.2f} / {machine.get('loadavg_end', [float('nan')])[0]:.2f} |",
        "| versions | " + ", ".join(f"{k} {v}" for k, v in versions.items()) + " |",
        "",
    ]
    ratios = results["ratios"]
    http = results.get("http")
    if http:
        conns = next(iter(http["runs"].values())).keys()
        lines += ["| server | " + " | ".join(
            f"{c} conn req/s | p50 ms | p99 ms | CPU us/req" for c in conns) + " | RSS after start MiB | peak RSS MiB |",
            "|---|" + "---:|---:|---:|---:|" * len(conns) + "---:|---:|"]
        for key, byconn in http["runs"].items():
            cells = []
            for c in conns:
                rs = byconn[c]
                cells += [f"{_med([r['rps'] for r in rs]):.0f}",
                          f"{_med([r['latency_us']['p50'] for r in rs]) / 1000:.2f}",
                          f"{_med([r['latency_us']['p99'] for r in rs]) / 1000:.2f}",
                          f"{_med([r['server_cpu_us'] for r in rs]):.0f}"]
            mem = http["memory"][key]
            cells += [f"{(mem['rss_started_kib'] or 0) / 1024:.1f}", f"{(mem['peak_rss_kib'] or 0) / 1024:.1f}"]
            lines.append(f"| ({key}) {SERVERS[key].label} | " + " | ".join(cells) + " |")
        for key, byconn in http["runs"].items():
            for c, rs in byconn.items():
                bad = [r for r in rs if sum(r["errors"].values())]
                if bad:
                    lines.append(f"\n**({key}) at {c} connections had errors** (status = non-2xx): "
                                 + "; ".join(str(r["errors"]) for r in bad))
        lines.append("")
    cold = results.get("cold")
    if cold:
        lines += ["| cold start, launch to first 200 | median s | min s | max s | CPU s to first 200 (median) | runs |",
                  "|---|---:|---:|---:|---:|---:|"]
        for key, s in cold["seconds"].items():
            lines.append(f"| ({key}) {SERVERS[key].label} | {_med(s):.3f} | {min(s):.3f} | {max(s):.3f} | "
                         f"{_med(cold['cpu_seconds'][key]):.2f} | {len(s)} |")
        lines.append("")
    command = results.get("command")
    if command:
        names = {"floor": "bare LineReceiver client -> echo responder",
                 "floor2": "the same over 2 connections",
                 "client": "CommandClient -> echo responder",
                 "host": "CommandClient -> reference host (%s)" % (command.get("host_command") or [""])[0]}
        lines += ["| command channel (UNIX socket) | in flight | invokes/s | p50 ms | p99 ms "
                  "| client CPU us/invoke | responder CPU us/invoke | taking turns, invokes/s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for kind, byc in command["runs"].items():
            for c, rs in byc.items():
                client = _med([r["client_cpu_us"] for r in rs])
                peer = [r["responder_cpu_us"] for r in rs if r.get("responder_cpu_us") is not None]
                # The rate if client and responder only ever worked in turn.
                turns = (f"{_med(peer):.1f} | {1e6 / (client + _med(peer)):.0f}"
                         if peer and client + _med(peer) > 0 else "- | -")
                lines.append(f"| {names[kind]} | {c} | {_med([r['per_second'] for r in rs]):.0f} | "
                             f"{_med([r['p50_us'] for r in rs]) / 1000:.3f} | {_med([r['p99_us'] for r in rs]) / 1000:.3f} | "
                             f"{client:.1f} | {turns} |")
        for note in command.get("notes", []):
            lines.append(f"\nNote: {note}")
        lines.append("")
    lines += ["| ratio (median of per-round ratios) | value | per round | target | met |", "|---|---:|---|---:|---|"]
    targeted = {key: (name, op, bound) for name, key, op, bound in TARGETS}
    # The targets first, in the order, then everything else.
    ordered = [k for _, k, _, _ in TARGETS if k in ratios] + [k for k in ratios if k not in targeted]
    for key in ordered:
        value = ratios[key]
        med = value["median"]
        if med is None:
            continue
        target = met = ""
        if key in targeted:
            _, op, bound = targeted[key]
            target = f"{op} {bound}"
            met = "yes" if (med >= bound if op == ">=" else med <= bound) else "**no**"
        per_round = ", ".join(f"{v:.2f}" for v in value.get("rounds", []))
        lines.append(f"| {key} | {med:.3f} | {per_round} | {target} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="The containerflare benchmark in one run (see docs/benchmarks.md); "
        "bench/run.sh installs wrk and the bench extra first, then runs this.")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--connections", default="1,50", help="wrk connection counts (default 1,50)")
    parser.add_argument("--servers", default="a,b,c,d,d_run,e,b_str",
                        help="servers to load, among a,b,bf,bt,c,c0,d,d_run,e,e_log,b_str,t")
    parser.add_argument("--cold-runs", type=int, default=7, help="cold starts per server (default 7)")
    parser.add_argument("--cold-servers", default="b,t,c,e", help="servers to cold-start (default b,t,c,e)")
    parser.add_argument("--command-duration", type=float, default=2.0,
                        help="seconds per command-channel run (default 2)")
    parser.add_argument("--in-flight", default="1,64", help="invokes in flight (default 1,64)")
    parser.add_argument("--only", default="http,cold,command",
                        help="parts to run, among http,cold,command")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"),
                        help="where each run's directory goes (default bench/results)")
    args = parser.parse_args()

    if shutil.which("wrk") is None and "http" in args.only:
        sys.exit("wrk is not installed: run bench/run.sh, or apt-get install -y wrk")
    pin_self()
    started = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    logdir = out / stamp
    logdir.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        print(text, flush=True)

    results: dict = {
        "date": started.isoformat(timespec="seconds"),
        "invocation": "bench/run.sh " + " ".join(sys.argv[1:]),
        "git": _git(),
        "machine": _machine(),
        "versions": _versions(),
        "settings": vars(args),
    }
    say(f"containerflare bench {results['date']} at {results['git']}; {results['machine']['pinning']}")
    parts = args.only.split(",")
    t0 = time.monotonic()
    if "http" in parts:
        from bench._http import throughput

        say("HTTP throughput and latency (wrk, interleaved):")
        results["http"] = throughput(args.servers.split(","), [int(c) for c in args.connections.split(",")],
                                     args.duration, args.rounds, logdir, say)
    if "cold" in parts:
        from bench._http import cold_start

        say("Cold start (launch to first 200):")
        results["cold"] = cold_start(args.cold_servers.split(","), args.cold_runs, logdir, say)
    if "command" in parts:
        from bench._command import command_channel

        say("Command channel over a UNIX socket:")
        results["command"] = command_channel([int(c) for c in args.in_flight.split(",")],
                                             args.command_duration, args.rounds, logdir, say)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = round(time.monotonic() - t0, 1)
    results["ratios"] = _ratios(results)
    report = _markdown(results)
    (logdir / "results.json").write_text(json.dumps(results, indent=2))
    (logdir / "summary.md").write_text(report + "\n")
    say("")
    say(report)
    say(f"\n{results['elapsed_s']} s; results in {logdir}/results.json and summary.md")


if __name__ == "__main__":
    main()
