# -*- test-case-name: tests.test_site -*-
"""
The site containerflare serves: a resource wrapper that gives every request
its L{ContainerContext}, and a L{Site} that knows what is in flight so that
shutdown can drain it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer

from containerflare._context import Runtime, attach
from containerflare._correlation import current_request, enter, leave
from containerflare._correlation import install as install_correlation
from containerflare._lifecycle import gate
from containerflare._logging import log_access

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
    from twisted.web.iweb import IRequest

_log = Logger()


@implementer(IResource)
class ContainerResource:
    """
    Wraps the app's resource, transparently, and attaches the runtime to each
    request on its way in.  While the runtime is not ready (start-up hooks
    running) requests get a 503 instead; C{health_path} (bytes) is answered
    by the built-in health check.
    """

    def __init__(
        self, wrapped: IResource, runtime: Runtime, *, health_path: bytes | None = None
    ) -> None:
        self.wrapped = wrapped
        self.runtime = runtime
        self.health_path = health_path
        # Read for every request by Site.getResourceFor: an attribute, not a
        # property (the wrapped resource is fixed).
        self.isLeaf = bool(getattr(wrapped, "isLeaf", False))
        # Deferred callbacks added while a request is handled keep its log
        # correlation (see containerflare._correlation).
        install_correlation()

    def _gated(self, request: IRequest) -> IResource | None:
        # The common case (no health path, serving) in two attribute reads.
        readiness = self.runtime.readiness
        if self.health_path is None and (readiness is None or readiness._serving):
            return None
        return gate(readiness, self.health_path, request)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:  # noqa: N802
        gated = self._gated(request)
        if gated is not None:
            return gated
        attach(request, self.runtime)
        return self.wrapped.getChildWithDefault(name, request)

    def putChild(self, path: bytes, child: IResource) -> None:  # noqa: N802
        self.wrapped.putChild(path, child)

    def render(self, request: IRequest) -> Any:
        gated = self._gated(request)
        if gated is not None:
            return gated.render(request)
        attach(request, self.runtime)
        if current_request() is request:  # ContainerSite set it already
            return self.wrapped.render(request)
        token = enter(request)
        try:
            return self.wrapped.render(request)
        finally:
            leave(token)


class _Channel(HTTPChannel):
    """
    An HTTP/1.1 channel that tells its site when it opens and closes.
    """

    site: ContainerSite
    _cf_secure: bool | None = None

    def isSecure(self) -> bool:  # noqa: N802
        # Asked several times per request (Klein's URL, the metadata's
        # scheme) and the same for the connection's life: Twisted's answer
        # is an interface adaptation of the transport each time.
        secure = self._cf_secure
        if secure is None:
            secure = self._cf_secure = bool(super().isSecure())
        return secure

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.site._channels.add(self)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.site._channel_closed(self)


class _Request(Request):
    """
    A request that counts itself in flight from processing to its end.

    Twisted drops C{request.channel} when the request finishes, so the site
    and channel are kept here for the bookkeeping.
    """

    _cf_site: ContainerSite | None = None
    _cf_channel: _Channel | None = None
    _cf_started: float | None = None

    def process(self) -> None:
        channel: _Channel = self.channel  # type: ignore[assignment]
        self._cf_channel = channel
        self._cf_site = site = channel.site
        self._cf_started = site._clock.seconds()
        # Keyed by id(): Request.__hash__ is a Python-level call.
        site._inflight[id(self)] = self
        if site._draining:
            site._request_started_draining(self)
        # Log events from traversal and rendering carry this request.
        token = enter(self)
        try:
            super().process()
        finally:
            leave(token)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            site = self._cf_site
            if site is not None:
                site._request_ended(self)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        try:
            super().connectionLost(reason)
        finally:
            site = self._cf_site
            if site is not None:
                site._request_ended(self)


class ContainerSite(Site):
    """
    A L{Site} that tracks its connections and in-flight requests and can
    drain them: see L{ContainerSite.drain}.
    """

    protocol = _Channel  # type: ignore[assignment]
    requestFactory = _Request
    # "Starting factory ..." lines on every start and stop say nothing useful.
    noisy = False

    def __init__(
        self,
        resource: IResource,
        *,
        clock: IReactorTime | None = None,
        access_log: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(resource, **kw)
        self.access_log = access_log
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self._clock = clock
        self._channels: set[_Channel] = set()
        # id(request) -> request, for the requests being handled.
        self._inflight: dict[int, _Request] = {}
        # Connections taken over from HTTP (WebSockets): see upgraded().
        self._upgraded: set[Any] = set()
        self._draining = False
        self._drained: list[Deferred[None]] = []

    def log(self, request: http.Request) -> None:
        if self.access_log:
            log_access(request, getattr(request, "_cf_started", None), self._clock.seconds())

    @property
    def inflight(self) -> int:
        """
        How many requests are being handled now.
        """
        return len(self._inflight)

    @property
    def draining(self) -> bool:
        return self._draining

    def _request_started_draining(self, request: _Request) -> None:
        # A pipelined request arriving while draining is still served, and
        # its connection closes after it.
        request.channel.persistent = False
        request.setHeader(b"connection", b"close")

    def _request_ended(self, request: _Request) -> None:
        if self._inflight.pop(id(request), None) is not None and self._draining:
            self._check_drained()

    def _channel_closed(self, channel: _Channel) -> None:
        self._channels.discard(channel)
        self._check_drained()

    def upgraded(self, request: _Request, connection: Any) -> None:
        """
        C{request}'s connection now speaks another protocol (a WebSocket):
        it is no longer an HTTP request in flight, but the drain still waits
        for it.  C{connection} has C{go_away()} (start a clean close, e.g.
        a 1001 close frame), C{abort()}, and C{closed}, a L{Deferred} that
        fires once the connection is lost.
        """
        self._inflight.pop(id(request), None)
        if request._cf_channel is not None:
            self._channels.discard(request._cf_channel)
        self._upgraded.add(connection)

        def closed(_: object) -> None:
            self._upgraded.discard(connection)
            self._check_drained()

        connection.closed.addBoth(closed)
        if self._draining and connection in self._upgraded:
            connection.go_away()

    def _check_drained(self) -> None:
        # Drained means every response is written *and* flushed: the reactor
        # drops open connections without flushing them once shutdown goes on.
        if (
            self._draining
            and not self._inflight
            and not self._channels
            and not self._upgraded
            and self._drained
        ):
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def drain(self, grace: float) -> Deferred[None]:
        """
        Stop keeping connections alive and wait for the requests in flight.

        Idle keep-alive connections close now; busy ones close once their
        response is written and flushed.  After C{grace} seconds whatever is
        still open is aborted.  The listening port must already be closed by the caller.

        @return: a L{Deferred} that fires (never fails) when no request is
            in flight and every connection is closed.
        """
        self._draining = True
        busy = {request._cf_channel for request in self._inflight.values()}
        for channel in list(self._channels):
            if channel in busy:
                channel.persistent = False
            else:
                channel.loseConnection()
        for request in self._inflight.values():
            if not request.startedWriting:
                request.setHeader(b"connection", b"close")
        for connection in list(self._upgraded):
            connection.go_away()

        if not self._inflight and not self._channels and not self._upgraded:
            return succeed(None)

        _log.info(
            "Draining {count} request(s) in flight, for up to {grace} s",
            count=len(self._inflight),
            grace=grace,
        )
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        timer: IDelayedCall = self._clock.callLater(grace, self._abort_remaining)

        def finished(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        d.addCallback(finished)
        return d

    def _abort_remaining(self) -> None:
        _log.warn(
            "Grace period over: aborting {count} request(s) and {channels} connection(s)",
            count=len(self._inflight),
            channels=len(self._channels),
        )
        channels = set(self._channels)
        channels.update(r._cf_channel for r in self._inflight.values() if r._cf_channel is not None)
        for channel in channels:
            if channel.transport is not None:
                cast("ITCPTransport", channel.transport).abortConnection()
        for connection in list(self._upgraded):
            connection.abort()
        self._upgraded.clear()
        # abortConnection reports connectionLost later: do not wait for it.
        self._inflight.clear()
        self._channels.clear()
        self._check_drained()
