# -*- test-case-name: tests.test_host -*-
"""
C{python -m containerflare.command.host}: options, listening, logging.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.failure import Failure

from containerflare.command._host_dispatch import HostDispatcher
from containerflare.command._host_protocol import (
    DEFAULT_MAX_LINE,
    HostFactory,
    HostLineProtocol,
)
from containerflare.command._host_store import HostStore

DEFAULT_LISTEN = "tcp:127.0.0.1:7878"
_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}

log = Logger(namespace="containerflare.command.host")

_TCP_PORT = re.compile(r"(?:tcp:|tcp://)(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]/=]+):)?(?P<port>\d{1,5})/?\Z")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def server_description(text: str) -> str:
    """
    Turn a C{--listen} value into a Twisted server endpoint description.

    Besides any Twisted description (C{tcp:port=7878:interface=0.0.0.0},
    C{unix:/path:mode=600}, ...) this accepts C{tcp:HOST:PORT},
    C{tcp://HOST:PORT} (IPv6 in brackets) and C{unix:///absolute/path},
    the spellings of C{CF_CMD_ENDPOINT}. A bare C{tcp:PORT} listens on
    127.0.0.1 only: the host is a development tool, not a sandbox.

    @return: the description, or C{"stdio"}.
    """
    text = text.strip()
    if text == "stdio":
        return text
    match = _TCP_PORT.match(text)
    if match is not None:
        host = match.group("host") or "127.0.0.1"
        return f"tcp:{match.group('port')}:interface={_escape(host.strip('[]'))}"
    if text.startswith("unix://"):
        return "unix:" + _escape(text[len("unix://") :])
    return text


class HostOptions(usage.Options):
    """
    Command line of the reference host.
    """

    synopsis = "python -m containerflare.command.host [options]"
    longdesc = (
        "Serve the host commands of docs/commands.md (KV, D1, R2, queues) from SQLite, "
        "as JSON lines over TCP, UNIX sockets or stdio, and optionally over HTTP. "
        "Logs go to stderr."
    )

    optParameters = [
        ["db", None, None, "SQLite file for the data (D1 bindings go to DB.d1.NAME.sqlite); default: in memory."],
        ["max-line", None, DEFAULT_MAX_LINE, "Longest request line (and HTTP body) in bytes.", int],
        ["d1-time-limit", None, 10.0, "Seconds one D1 statement may run.", float],
        ["log-level", None, "info", "debug, info, warn or error."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["http"] = []
        self["allow"] = None

    def opt_listen(self, value: str) -> None:
        """Serve JSON lines on this endpoint (repeatable): stdio, tcp:PORT, tcp:HOST:PORT, tcp://HOST:PORT, unix:PATH, unix:///PATH or any Twisted server endpoint string. Default: tcp:127.0.0.1:7878."""
        self["listen"].append(value)

    def opt_http(self, value: str) -> None:
        """Also serve the HTTP transport (POST a request object) on this endpoint (repeatable; same spellings as --listen, except stdio)."""
        self["http"].append(value)

    def opt_allow(self, value: str) -> None:
        """Comma-separated binding names that may be used (repeatable); others get forbidden_binding. Default: any name."""
        names = [name.strip() for name in value.split(",") if name.strip()]
        self["allow"] = (self["allow"] or []) + names

    def postOptions(self) -> None:
        if self["log-level"] not in _LEVELS:
            raise usage.UsageError(f"--log-level must be one of {', '.join(_LEVELS)}")
        if self["max-line"] < 1024:
            raise usage.UsageError("--max-line must be at least 1024")
        if self["d1-time-limit"] <= 0:
            raise usage.UsageError("--d1-time-limit must be positive")
        if "stdio" in (v.strip() for v in self["http"]):
            raise usage.UsageError("--http cannot be stdio")
        if sum(v.strip() == "stdio" for v in self["listen"]) > 1:
            raise usage.UsageError("stdio can only be listened on once")
        if not self["listen"] and not self["http"]:
            self["listen"] = [DEFAULT_LISTEN]


def _describe(port: IListeningPort) -> str:
    address: Any = port.getHost()
    if hasattr(address, "port"):
        host = address.host
        return f"tcp:[{host}]:{address.port}" if ":" in host else f"tcp:{host}:{address.port}"
    name = getattr(address, "name", address)
    return f"unix:{name.decode('utf-8', 'replace') if isinstance(name, bytes) else name}"


async def serve(reactor: Any, options: HostOptions, store: HostStore | None = None) -> list[IListeningPort]:
    """
    Start listening as C{options} say.

    @return: the listening ports (stdio is not among them).
    """
    if store is None:
        store = HostStore(options["db"], clock=reactor, d1_time_limit=options["d1-time-limit"])
    reactor.addSystemEventTrigger("after", "shutdown", store.close)
    dispatcher = HostDispatcher(store, allow=options["allow"])
    factory = HostFactory(dispatcher, options["max-line"])
    ports: list[IListeningPort] = []
    for value in options["listen"]:
        description = server_description(value)
        if description == "stdio":
            from twisted.internet.stdio import StandardIO

            def stdin_closed(reason: Failure) -> None:
                log.info("stdin closed; stopping")
                if reactor.running:
                    reactor.stop()

            StandardIO(HostLineProtocol(dispatcher, options["max-line"], stdin_closed), reactor=reactor)
            log.info("containerflare host listening on stdio")
            continue
        port = await serverFromString(reactor, description).listen(factory)
        ports.append(port)
        log.info("containerflare host listening on {where}", where=_describe(port))
    if options["http"]:
        from containerflare.command._host_http import http_site

        site = http_site(dispatcher, options["max-line"])
        for value in options["http"]:
            port = await serverFromString(reactor, server_description(value)).listen(site)
            ports.append(port)
            log.info("containerflare host serving HTTP on {where}", where=_describe(port))
    if options["allow"] is not None:
        log.info("bindings allowed: {names}", names=", ".join(sorted(options["allow"])) or "(none)")
    return ports


def _start_logging(level: str, stream: IO[str]) -> None:
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    observer = FilteringLogObserver(textFileLogObserver(stream), [predicate])
    # redirectStandardIO: a stray print() becomes a log line on stderr
    # instead of corrupting a stdio channel.
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=True)


def main(argv: Sequence[str] | None = None, reactor: Any = None) -> int:
    """
    Run the reference host until it is stopped (SIGINT, SIGTERM, end of
    stdin in stdio mode).

    @return: the exit status.
    """
    options = HostOptions()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as e:
        sys.stderr.write(f"{options}\nerror: {e}\n")
        return 2
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    _start_logging(options["log-level"], sys.stderr)
    status = [0]

    def failed(failure: Failure) -> None:
        log.failure("cannot start the host", failure)
        status[0] = 1
        reactor.stop()

    def start() -> Deferred[Any]:
        return Deferred.fromCoroutine(serve(reactor, options)).addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.run()
    return status[0]

