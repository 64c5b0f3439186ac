"""
The request path in process, without sockets or a load generator:
C{python -m bench.inproc [--rounds 5]}.

Each variant runs in its own interpreter (containerflare patches Deferred
for log correlation once its resource exists, which would slow a bare
variant measured after it) and pushes the same request through a real
C{HTTPChannel} on a C{StringTransport} many times; the figure is the
fastest of several batches, in microseconds of CPU per request.  Much
steadier than wrk on a shared machine, so it is what decides a small
change; wrk in C{python -m bench} is what users would see.

C{--instructions} counts instructions per request under valgrind instead:
exact and repeatable whatever else runs on the machine.  C{--collector off}
disables the garbage collector once the site is warm: its passes make steps
of several thousand instructions per request in the counts (more or fewer
of them fall in the measured window from one run to the next), so a change
of 1% is only visible without them; memory grows meanwhile (Klein's
per-request cycles are not freed), which is fine for a few thousand
requests.

Variants:
  - bare:        Site(Klein app), no access log             (b)
  - cf:          ContainerSite + ContainerResource, handler reads metadata,
                 no access log                               (c)
  - cf-nometa:   as cf, handler does not read metadata
  - cf-log:      cf with the access log, written by the runtime's own
                 observer to /dev/null                       (d)
  - cf-log-json: cf-log on Cloud Run: JSON lines             (d_run)
  - bare-str:    bare, the handler returning str (chunked)   (b_str)
  - twisted:     a bare twisted.web Resource, no Klein       (a)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench._body import HEADERS, body

VARIANTS = ("bare", "cf", "cf-nometa", "cf-log", "cf-log-json", "bare-str", "twisted")

_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    + b"".join(f"{k}: {v}\r\n".encode() for k, v in HEADERS.items())
    + b"\r\n"
)


#: What every variant answers (chunked or not, the JSON is in one piece).
_BODY = body("127.0.0.1:8080", HEADERS["User-Agent"], HEADERS["CF-Ray"])
_BODY_RUN = body("127.0.0.1:8080", HEADERS["User-Agent"], None)


def _site(variant: str):
    from bench.app_klein import make_app

    if variant == "twisted":
        from twisted.web.server import Site

        from bench.app_twisted import resource

        site = Site(resource)
        site.log = lambda request: None
        return site
    if variant in ("bare", "bare-str"):
        from twisted.web.server import Site

        site = Site(make_app(read_metadata=False, as_str=variant == "bare-str").resource())
        site.log = lambda request: None
        return site
    from twisted.internet import reactor

    from containerflare import RuntimeConfig
    from containerflare._context import Runtime
    from containerflare._site import ContainerResource, ContainerSite
    from containerflare.command import CommandClient

    platform = "cloud_run" if variant == "cf-log-json" else "cloudflare"
    config = RuntimeConfig.from_environ({"CONTAINERFLARE_PLATFORM": platform})
    runtime = Runtime(config, CommandClient.unavailable("bench"), reactor)
    app = make_app(read_metadata=variant != "cf-nometa")
    access_log = variant.startswith("cf-log")
    if access_log:
        from twisted.logger import globalLogBeginner

        from containerflare._logging import make_observer

        sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        globalLogBeginner.beginLoggingTo([make_observer(config, stream=sink)],
                                         discardBuffer=True, redirectStandardIO=False)
    return ContainerSite(ContainerResource(app.resource(), runtime), clock=reactor,
                         access_log=access_log)


def measure(variant: str, batch: int, batches: int, collector: bool = True) -> dict:
    import gc

    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    site = _site(variant)
    site.startFactory()
    channel = site.buildProtocol(None)
    # The channel's idle timeout, reset per request: on the real reactor,
    # which does not run here, every cancelled call would pile up.
    channel.callLater = Clock().callLater
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(_REQUEST)
    first = transport.value()
    # On Cloud Run cf-ray is not trusted: no request id there.
    expected = _BODY_RUN if variant == "cf-log-json" else _BODY
    if not first.startswith(b"HTTP/1.1 200") or expected not in first:
        raise RuntimeError(f"{variant}: {first[:600]!r}, expected the body {expected!r}")
    # The start-up heap (tens of thousands of objects) out of the collector's
    # reach: its full passes over it come every few thousand requests, a step
    # in the counts that has nothing to do with the request path.
    gc.collect()
    gc.freeze()
    if not collector:
        gc.disable()
    times = []
    for _ in range(batches):
        t0 = time.process_time()
        for _ in range(batch):
            channel.dataReceived(_REQUEST)
            transport.clear()
        times.append((time.process_time() - t0) / batch * 1e6)
    channel.connectionLost(None)
    return {"best_us": min(times), "median_us": statistics.median(times)}


def _instructions(variant: str, batch: int, collector: str) -> int:
    """
    Instructions executed by a child that serves C{batch} requests (after
    one warm-up request), counted by valgrind.
    """
    import re

    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-m", "bench.inproc", "--variant", variant, "--batch", str(batch),
         "--batches", "1", "--collector", collector],
        env=_env(), capture_output=True, text=True, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError(out.stderr[-2000:])
    return int(match.group(1).replace(",", ""))


def _env() -> dict[str, str]:
    from bench._proc import clean_environ

    return clean_environ()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inproc")
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per request with valgrind instead of timing "
                        "(deterministic; apt-get install valgrind)")
    parser.add_argument("--collector", choices=("on", "off"), default="on",
                        help="off: the garbage collector disabled while measuring "
                        "(exactly repeatable instruction counts)")
    args = parser.parse_args()
    if args.instructions:
        # Two runs per variant; the difference divided by the difference in
        # requests cancels start-up and imports.
        # 3000 requests apart: the collector's passes make steps in the
        # counts that a shorter run does not average out.
        small, large = 200, 3200
        base = None
        for v in args.variants.split(","):
            per_request = (_instructions(v, large, args.collector) - _instructions(v, small, args.collector)) / (large - small)
            base = base or (per_request if v == "bare" else None)
            extra = f"  {per_request / base:.3f} x bare" if base else ""
            print(f"{v:10} {per_request / 1000:8.1f} k instructions/request{extra}", flush=True)
        return
    if args.variant:
        print(json.dumps(measure(args.variant, args.batch, args.batches, args.collector == "on")))
        return
    from bench._proc import clean_environ, pin_self

    pin_self()
    variants = args.variants.split(",")
    best: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            out = subprocess.run(
                [sys.executable, "-m", "bench.inproc", "--variant", v, "--batch", str(args.batch),
                 "--batches", str(args.batches), "--collector", args.collector],
                env=clean_environ(), capture_output=True, text=True, check=True)
            best[v].append(json.loads(out.stdout.splitlines()[-1])["best_us"])
        variants = variants[1:] + variants[:1]
    base = min(best.get("bare", [0])) or None
    for v, xs in best.items():
        ratio = f"  bare/{v} {base / min(xs):.2f}" if base else ""
        print(f"{v:10} {min(xs):7.1f} us/request (best of rounds: {', '.join(f'{x:.1f}' for x in xs)}){ratio}")


if __name__ == "__main__":
    main()
