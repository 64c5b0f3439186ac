# -*- test-case-name: tests.test_host -*-
"""
A reference host for the command channel: answers the commands of
docs/commands.md (KV, D1, R2, queues) from SQLite, for tests and local runs.

Run it::

    python -m containerflare.command.host --listen tcp:127.0.0.1:7878
    CF_CMD_ENDPOINT=tcp://127.0.0.1:7878 twistd -n --pidfile= containerflare --app app:app

or embed it: C{HostFactory(HostDispatcher(HostStore()))} is a server factory
for any Twisted endpoint. Commands run synchronously on the reactor thread
(SQLite calls of microseconds; user SQL is bounded by a time limit): fine for
a development host, not a production one. It is not a sandbox either: it
serves whoever connects, so keep it on loopback (the default).

Importing this module loads neither klein nor C{twisted.web.server}; the
HTTP face (C{--http}) loads twisted.web only when asked for.
"""

from __future__ import annotations

from containerflare.command._host_dispatch import (
    BAD_REQUEST,
    D1_ERROR,
    FORBIDDEN_BINDING,
    INTERNAL_ERROR,
    PROTOCOL_ERROR,
    PROTOCOL_VERSION,
    TOO_LARGE,
    UNKNOWN_BINDING,
    UNKNOWN_COMMAND,
    HostDispatcher,
    HostError,
)
from containerflare.command._host_main import (
    HostOptions,
    main,
    serve,
    server_description,
)
from containerflare.command._host_protocol import (
    DEFAULT_MAX_LINE,
    HostFactory,
    HostLineProtocol,
)
from containerflare.command._host_store import HostStore

__all__ = [
    "BAD_REQUEST",
    "D1_ERROR",
    "DEFAULT_MAX_LINE",
    "FORBIDDEN_BINDING",
    "INTERNAL_ERROR",
    "PROTOCOL_ERROR",
    "PROTOCOL_VERSION",
    "TOO_LARGE",
    "UNKNOWN_BINDING",
    "UNKNOWN_COMMAND",
    "HostDispatcher",
    "HostError",
    "HostFactory",
    "HostLineProtocol",
    "HostOptions",
    "HostStore",
    "main",
    "serve",
    "server_description",
]

if __name__ == "__main__":
    raise SystemExit(main())
