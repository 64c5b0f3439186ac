"""
A child process for tests/test_command_stdio.py: a L{CommandClient} on this
process's stdin/stdout while the process also logs (to stderr) and calls
C{print()}, like an app under twistd.

    python tests/apps/command_stdio_child.py MODE

MODE C{concurrent}: 20 pings at once, then one C{kv.get}, then exit.
MODE C{eof}: one ping, which fails when stdin ends.
Results are logged as C{RESULT <json>} lines on stderr.
"""

from __future__ import annotations

import json
import sys

from twisted.internet import defer, task
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from containerflare.command import CommandClient, CommandEndpoint, CommandError

log = Logger(namespace="child")


async def main(reactor: object, mode: str) -> None:
    client = CommandClient.for_endpoint(CommandEndpoint.parse("stdio"), reactor=reactor, timeout=20)
    log.info("child started in mode {mode}", mode=mode)
    # Both go to the log (stderr), never to the channel.
    print("print() output must not reach stdout")
    sys.stdout.write("sys.stdout.write output must not reach stdout either\n")
    result: dict[str, object] = {}
    try:
        if mode == "concurrent":
            pings = await defer.gatherResults([client.invoke("ping", {"n": i}) for i in range(20)])
            log.info("pings answered: {pings}", pings=pings)
            result["pings"] = pings
            result["kv"] = await client.kv("KV").get("hits")
        else:
            try:
                await client.invoke("ping", "never answered")
            except CommandError as e:
                result["error"] = type(e).__name__
                result["message"] = str(e)
            try:
                await client.invoke("ping", "after eof")
            except CommandError as e:
                result["later"] = type(e).__name__
    finally:
        await client.close()
    log.info("RESULT {json}", json=json.dumps(result))


if __name__ == "__main__":
    # The observer writes to the real stderr; redirectStandardIO sends
    # print() and sys.stdout writes into the log, as twistd does.
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=True)
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1])))
