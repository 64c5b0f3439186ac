# -*- test-case-name: tests.test_command_http -*-
"""
The HTTP transport: each command is one POST of the request object to the
host's URL, answered by one response object (C{docs/commands.md}, "HTTP
transport").  On Cloudflare this is how a container reaches the Worker's
bindings: the Worker's outbound handler for the URL's host answers.

Imported only when an C{http://} or C{https://} endpoint is used, so treq and
TLS stay out of processes that do not need them.
"""

from __future__ import annotations

import itertools
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from zope.interface import implementer

from containerflare.command._client import (
    CLOSE_GRACE,
    ICommandTransport,
    _bounded,
    _follow,
)
from containerflare.command._errors import ProtocolError, TransportClosed
from containerflare.command._messages import CommandRequest, CommandResponse, _preview

_log = Logger()

#: Persistent connections kept to the host.
MAX_PERSISTENT = 16


class _TooLarge(Exception):
    pass


@implementer(ICommandTransport)
class HTTPTransport:
    """
    POSTs commands to C{url} with treq over a persistent connection pool.

    Non-2xx answers are transport errors: 4xx (the host refused the request
    as sent) is L{ProtocolError}, anything else L{TransportClosed}; a body
    that is not a response object is L{ProtocolError}; a connection error is
    L{TransportClosed}.
    """

    def __init__(self, url: str, *, reactor: Any, max_body: int) -> None:
        self.url = url
        self.description = url
        self.clock = reactor
        self._max_body = max_body
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = MAX_PERSISTENT
        self._http = HTTPClient(Agent(reactor, pool=self._pool))
        self._ids = itertools.count(1)
        self._in_flight: set[Deferred[CommandResponse]] = set()
        self._closed = False
        self._closing: Deferred[None] | None = None

    def request(self, request: CommandRequest) -> Deferred[CommandResponse]:
        if self._closed:
            return fail(TransportClosed("command client closed"))
        rid = next(self._ids)
        try:
            body = request.encode(rid)
        except ProtocolError:
            return fail()
        d = Deferred.fromCoroutine(self._post(body, request.command, rid))
        self._in_flight.add(d)

        def finished(result: Any) -> Any:
            self._in_flight.discard(d)
            if self._closed and isinstance(result, Failure) and result.check(CancelledError):
                return Failure(TransportClosed("command client closed"))
            return result

        return d.addBoth(finished)

    async def _post(self, body: bytes, command: str, rid: int) -> CommandResponse:
        try:
            response = await self._http.post(
                self.url,
                data=body,
                headers=Headers(
                    {b"Content-Type": [b"application/json"], b"Accept": [b"application/json"]}
                ),
            )
            content = await self._read(response)
        except (CancelledError, ProtocolError):
            raise
        except Exception as e:
            if _was_cancelled(e):
                # treq reports a cancelled request as ResponseNeverReceived.
                raise CancelledError() from None
            raise TransportClosed(f"{command}: HTTP request to {self.url} failed: {e}") from None
        status = response.code
        if not 200 <= status < 300:
            detail = _diagnostic(content)
            message = f"{command}: {self.url} answered HTTP {status}: {detail}"
            _log.warn("Command host error: {message}", message=message)
            if 400 <= status < 500:
                raise ProtocolError(message)
            raise TransportClosed(message)
        try:
            reply = CommandResponse.decode(content)
        except ProtocolError as e:
            raise ProtocolError(f"{command}: {e}") from None
        if reply.id is not None and reply.id != rid:
            raise ProtocolError(f"{command}: reply carries id {reply.id}, request had {rid}")
        return reply

    async def _read(self, response: Any) -> bytes:
        # Bounded like a stream transport's line: a body over the limit
        # aborts the connection instead of filling memory.
        limit = self._max_body
        if response.length is not None and isinstance(response.length, int) and response.length > limit:
            response.deliverBody(_Discard())
            raise ProtocolError(f"reply body of {response.length} bytes exceeds {limit} bytes")
        chunks: list[bytes] = []
        size = 0

        def collect(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size > limit:
                raise _TooLarge()
            chunks.append(data)

        try:
            await treq.collect(response, collect)
        except _TooLarge:
            raise ProtocolError(f"reply body exceeds {limit} bytes") from None
        return b"".join(chunks)

    def when_ready(self) -> Deferred[None]:
        if self._closed:
            return fail(TransportClosed("command client closed"))
        return Deferred.fromCoroutine(_none())

    def close(self) -> Deferred[None]:
        if self._closing is None:
            self._closed = True
            for d in list(self._in_flight):
                d.cancel()
            self._closing = _bounded(
                self._pool.closeCachedConnections(), self.clock, CLOSE_GRACE, lambda: None
            )
        return _follow(self._closing)


async def _none() -> None:
    return None


class _Discard:
    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass


def _was_cancelled(error: Exception) -> bool:
    reasons = getattr(error, "reasons", None) or ()
    return any(isinstance(r, Failure) and r.check(CancelledError) for r in reasons)


def _diagnostic(content: bytes) -> str:
    try:
        reply = CommandResponse.decode(content)
    except ProtocolError:
        return _preview(content[:200])
    return reply.diagnostic or _preview(reply.payload)


__all__ = ["HTTPTransport"]
