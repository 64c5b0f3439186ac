"""
Profile one server under load: C{python -m bench.profile c [--seconds 5]}.

Starts the server (as the benchmark does), loads it with wrk at 50
connections, records it with py-spy (sampling; the server runs unmodified)
and prints where the time goes: the top functions by own time, and the share
of samples spent under each containerflare / Klein / Twisted function named
in C{--focus}.  The raw collapsed stacks are kept for flame graphs.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import threading
from pathlib import Path

from bench._http import SERVERS, start, wrk
from bench._proc import ROOT, pin_self, stop


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus", default="containerflare/,klein/,twisted/web/server.py,"
                        "twisted/web/http.py,twisted/logger/,twisted/python/log.py")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "profiles"))
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).with_name("py-spy"))

    pin_self()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"{args.server}.collapsed.txt"
    run = start(SERVERS[args.server], out)
    try:
        wrk(run.port, args.connections, 1)  # warm up
        load = threading.Thread(target=wrk, args=(run.port, args.connections, args.seconds + 1))
        load.start()
        subprocess.run([py_spy, "record", "--pid", str(run.proc.pid), "--format", "raw",
                        "--rate", "250", "--function", "--duration", str(int(args.seconds)),
                        "--output", str(raw), "--nonblocking"],
                       check=True, capture_output=True)
        load.join()
    finally:
        stop(run.proc)

    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    focus = [f for f in args.focus.split(",") if f]
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        # "func (file.py:line)" -> "func (file.py)": one entry per function.
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if any(f in frame for f in focus):
                inclusive[frame] += count
    print(f"{total} samples of ({args.server}) {SERVERS[args.server].label}; raw stacks: {raw}")
    print("\nown time:")
    for frame, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("\ninclusive time (focus):")
    for frame, n in inclusive.most_common(args.top * 2):
        print(f"  {100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
