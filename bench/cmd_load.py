"""
The command channel load generator: sequential (1 in flight) or N in flight
over a UNIX socket, for a duration; prints one JSON line.

C{python -m bench.cmd_load --kind floor|client --socket PATH --concurrency N}

C{floor} is a bare C{LineReceiver} client (ids matched in a dict, no
timeouts, no reconnection): the least any JSON-lines client must do.
C{client} is L{containerflare.command.CommandClient}.  Both are driven by
the same coroutines, so the difference is the clients'.  C{--connections 2}
spreads the floor's invokes over two connections in turn: with one, client
and responder take turns (see docs/benchmarks.md), with two they can work
at the same time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.task import react
from twisted.protocols.basic import LineReceiver

from bench._proc import cpu_seconds


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class FloorClient(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024 * 1024

    def __init__(self) -> None:
        self._pending: dict[int, Deferred[Any]] = {}
        self._next = 0

    def invoke(self, command: str, payload: Any = None) -> Deferred[Any]:
        self._next += 1
        d: Deferred[Any] = Deferred()
        self._pending[self._next] = d
        self.sendLine(_ENCODE({"id": self._next, "command": command, "payload": payload}).encode("utf-8"))
        return d

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        message = json.loads(line)
        d = self._pending.pop(message["id"])
        if message.get("ok"):
            d.callback(message.get("payload"))
        else:
            d.errback(RuntimeError(message.get("diagnostic")))


async def _worker(invoke, command: str, payload: Any, deadline: float, latencies: list[float]) -> None:
    clock = time.perf_counter
    while clock() < deadline:
        t = clock()
        await invoke(command, payload)
        latencies.append(clock() - t)


async def _load(invoke, command: str, payload: Any, concurrency: int, duration: float,
                peer: int | None = None) -> dict:
    latencies: list[float] = []
    peer0 = None if peer is None else cpu_seconds(peer)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + duration
    await gatherResults([
        Deferred.fromCoroutine(_worker(invoke, command, payload, deadline, latencies))
        for _ in range(concurrency)
    ])
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peer_cpu = None if peer0 is None else cpu_seconds(peer) - peer0  # type: ignore[arg-type]
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    return {
        "invokes": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_us": pct(50) * 1e6,
        "p99_us": pct(99) * 1e6,
        # The client process's CPU per invoke: what the client costs, much
        # less sensitive to other load on the machine than the rate.
        "client_cpu_us": cpu / len(latencies) * 1e6,
        # The responder's, over the same window (clock ticks: ~1% over 2 s).
        # With both known, 1e6 / (client + responder) is the rate the two
        # would reach taking turns, one working while the other waits.
        "responder_cpu_us": None if peer_cpu is None else peer_cpu / len(latencies) * 1e6,
    }


async def _main(reactor: Any, args: argparse.Namespace) -> None:
    payload = json.loads(args.payload)
    close = None
    if args.kind == "floor":
        protos = [
            await connectProtocol(UNIXClientEndpoint(reactor, args.socket), FloorClient())
            for _ in range(args.connections)
        ]
        if len(protos) == 1:
            invoke = protos[0].invoke
        else:
            turn = itertools.cycle([p.invoke for p in protos])

            def invoke(command: str, payload: Any) -> Deferred[Any]:
                return next(turn)(command, payload)

        def close() -> None:
            for p in protos:
                p.transport.loseConnection()
    else:
        from containerflare.command import CommandClient, CommandEndpoint

        client = await CommandClient.connect(
            CommandEndpoint.parse(f"unix://{args.socket}"), reactor=reactor
        )
        invoke = client.invoke
        close = client.close
    await _load(invoke, args.command, payload, args.concurrency, args.warmup)
    result = await _load(invoke, args.command, payload, args.concurrency, args.duration,
                         args.responder_pid)
    maybe = close()
    if isinstance(maybe, Deferred):
        await maybe
    sys.stdout.write("BENCHJSON " + json.dumps(result) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cmd_load")
    parser.add_argument("--kind", choices=["floor", "client"], required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--connections", type=int, default=1,
                        help="floor only: spread the invokes over this many connections")
    parser.add_argument("--responder-pid", type=int, default=None,
                        help="the responder's process id: also report its CPU per invoke")
    parser.add_argument("--command", default="ping")
    parser.add_argument("--payload", default='{"key":"bench","value":"' + "x" * 64 + '"}')
    args = parser.parse_args()
    if args.connections < 1 or (args.connections > 1 and args.kind != "floor"):
        parser.error("--connections: a positive number, above 1 for --kind floor only")
    react(lambda reactor: Deferred.fromCoroutine(_main(reactor, args)))


if __name__ == "__main__":
    main()
