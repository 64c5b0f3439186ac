"""
The host command channel: a standalone Twisted client that sends commands
(C{kv.get}, C{d1.query}, ...) to a host over stdio, TCP, UNIX sockets or
HTTP and returns Deferreds.  It imports nothing from the web side (no Klein,
no C{twisted.web.server}); treq is loaded only for HTTP endpoints.

    endpoint = CommandEndpoint.parse("tcp://127.0.0.1:7878")
    client = await CommandClient.connect(endpoint)
    value = await client.invoke("kv.get", {"binding": "KV", "key": "hits"})
    value = await client.kv("KV").get("hits")

The commands and their payloads are specified in C{docs/commands.md}.
"""

from containerflare.command._bindings import (
    D1,
    KV,
    R2,
    KVValue,
    Queue,
    QueueMessage,
    R2Object,
)
from containerflare.command._client import DEFAULT_TIMEOUT, CommandClient
from containerflare.command._endpoint import CommandEndpoint
from containerflare.command._errors import (
    CommandError,
    CommandFailure,
    CommandTimeout,
    ProtocolError,
    TransportClosed,
    Unavailable,
)
from containerflare.command._messages import CommandRequest, CommandResponse
from containerflare.command._protocol import DEFAULT_MAX_LINE, CommandProtocol

__all__ = [
    "D1",
    "DEFAULT_MAX_LINE",
    "DEFAULT_TIMEOUT",
    "KV",
    "R2",
    "CommandClient",
    "CommandEndpoint",
    "CommandError",
    "CommandFailure",
    "CommandProtocol",
    "CommandRequest",
    "CommandResponse",
    "CommandTimeout",
    "KVValue",
    "ProtocolError",
    "Queue",
    "QueueMessage",
    "R2Object",
    "TransportClosed",
    "Unavailable",
]
