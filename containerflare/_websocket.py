# -*- test-case-name: tests.test_websocket -*-
"""
WebSockets on containerflare's site, with Autobahn (the C{websocket} extra).

L{WebSocketResource} is Autobahn's resource plus two things: the protocol
gets the upgrade request's L{ContainerContext} as C{container_context}
before its handshake runs, and the site's drain knows the connection, so
that a shutdown closes it with a C{1001 going away} close frame within the
grace period.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource as _AutobahnResource
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

from containerflare.interfaces import IContainerContext

_log = Logger()

#: The close code sent on shutdown (RFC 6455: the endpoint is going away).
GOING_AWAY = WebSocketProtocol.CLOSE_STATUS_CODE_GOING_AWAY


class _Upgraded:
    """
    One WebSocket as the site's drain sees it.
    """

    def __init__(self, protocol: Any, transport: Any) -> None:
        self.protocol = protocol
        self.transport = transport
        self.closed: Deferred[None] = Deferred()

    def lost(self) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    def go_away(self) -> None:
        protocol = self.protocol
        if protocol.state == WebSocketProtocol.STATE_OPEN:
            # sendClose() only accepts application codes; 1001 is the
            # protocol's own "going away".  Autobahn drops the TCP
            # connection after the peer's reply or closeHandshakeTimeout.
            protocol.sendCloseFrame(code=GOING_AWAY, reasonUtf8=b"server shutting down")
        elif protocol.state in (
            WebSocketProtocol.STATE_CONNECTING,
            WebSocketProtocol.STATE_PROXY_CONNECTING,
        ):
            protocol.dropConnection(abort=False)

    def abort(self) -> None:
        self.transport.abortConnection()


def _watch(protocol: Any, upgraded: _Upgraded) -> None:
    # Autobahn's is_closed fires when it *decides* to drop the connection,
    # before the close frame is flushed: the drain waits for the real end.
    connection_lost = protocol.connectionLost

    def lost(reason: Any) -> None:
        try:
            connection_lost(reason)
        finally:
            upgraded.lost()

    protocol.connectionLost = lost


class WebSocketResource(_AutobahnResource):  # type: ignore[misc]
    """
    Serve a WebSocket: C{WebSocketResource(factory)} where C{factory} is an
    C{autobahn.twisted.websocket.WebSocketServerFactory}.  Return it from a
    Klein route or put it in a resource tree.

    Each protocol it builds has C{container_context}, the upgrade request's
    L{ContainerContext} (its C{.metadata} describes the upgrade request),
    already set when C{onConnect} runs.
    """

    def render(self, request: IRequest) -> Any:
        channel: Any = getattr(request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is None:
            return super().render(request)
        site = getattr(request, "_cf_site", None)
        context = IContainerContext(request)

        # What Autobahn's render does, with the context set and the
        # connection handed to the site before the handshake runs.
        protocol = self._factory.buildProtocol(request.getClientAddress())
        if not protocol:
            request.setResponseCode(500)
            return b""
        protocol.container_context = context
        upgraded = _Upgraded(protocol, transport)
        _watch(protocol, upgraded)
        channel.transport = None
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        elif isinstance(transport.protocol, ProtocolWrapper):
            transport.protocol.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        # twisted.web paused the transport while serving the request.
        if hasattr(transport, "resumeProducing"):
            transport.resumeProducing()
        data = request.method + b" " + request.uri + b" HTTP/1.1\r\n"
        for name, values in request.requestHeaders.getAllRawHeaders():
            data += name + b": " + b",".join(values) + b"\r\n"
        data += b"\r\n"
        content = request.content
        if content is not None:
            data += content.read()
        protocol.dataReceived(data)
        # The request is over as HTTP; the drain now waits for the WebSocket.
        if site is not None and hasattr(site, "upgraded"):
            site.upgraded(request, upgraded)
        return NOT_DONE_YET
