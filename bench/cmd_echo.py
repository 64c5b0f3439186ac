"""
The echo responder: a bare C{LineReceiver} on a UNIX socket answering every
request line C{{"id": .., "ok": true, "payload": ..}} at once.

C{python -m bench.cmd_echo --listen /path/to.sock}
"""

from __future__ import annotations

import argparse
import json

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class Echo(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024 * 1024

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        message = json.loads(line)
        self.sendLine(_ENCODE(
            {"id": message.get("id"), "ok": True, "payload": message.get("payload"),
             "diagnostic": None}
        ).encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cmd_echo")
    parser.add_argument("--listen", required=True, help="UNIX socket path")
    args = parser.parse_args()
    from twisted.internet import reactor

    reactor.listenUNIX(args.listen, Factory.forProtocol(Echo))
    reactor.run()


if __name__ == "__main__":
    main()
