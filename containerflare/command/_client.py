# -*- test-case-name: tests.test_command_client -*-
"""
L{CommandClient}: C{invoke}/C{send} returning Deferreds, with timeouts, over
stdio, TCP, UNIX sockets (reconnecting) or HTTP.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from containerflare.command._endpoint import CommandEndpoint
from containerflare.command._errors import (
    CommandFailure,
    CommandTimeout,
    ProtocolError,
    TransportClosed,
    Unavailable,
)
from containerflare.command._messages import CommandRequest, CommandResponse
from containerflare.command._protocol import (
    DEFAULT_MAX_ABANDONED,
    DEFAULT_MAX_LINE,
    CommandProtocol,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from containerflare.command._bindings import D1, KV, R2, Queue

_log = Logger()

#: Seconds a command waits for its reply unless told otherwise.
DEFAULT_TIMEOUT = 30.0

#: Seconds close() waits for a connection to go away before giving up on it.
CLOSE_GRACE = 2.0


class NotSent(CancelledError):
    """
    A request was cancelled while it still waited for a connection: the host
    never saw it.
    """


class ICommandTransport(Interface):
    """
    How a L{CommandClient} reaches its host (private seam).
    """

    description = Attribute("Where the host is, for messages and logs.")

    def request(request: CommandRequest) -> Deferred[CommandResponse]:
        """
        Send C{request}; fire with the host's response.  Cancelling the
        Deferred gives up on the reply (failing with L{NotSent} when the
        request was never written).
        """

    def when_ready() -> Deferred[None]:
        """
        Fire once requests can be written (at once for transports without a
        connection step).
        """

    def close() -> Deferred[None]:
        """
        Fail everything waiting with L{TransportClosed}, stop reconnecting,
        let go of the connection.
        """


# -- transports ----------------------------------------------------------


@implementer(ICommandTransport)
class UnavailableTransport:
    """
    No channel: every request fails at once with L{Unavailable}, no I/O.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.description = "disabled"

    def request(self, request: CommandRequest) -> Deferred[CommandResponse]:
        return fail(Unavailable(self.reason))

    def when_ready(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


class _Waiter:
    __slots__ = ("deferred", "inner", "request")

    def __init__(self, request: CommandRequest) -> None:
        self.request = request
        self.deferred: Deferred[CommandResponse] | None = None
        self.inner: Deferred[CommandResponse] | None = None


class _LineTransport:
    """
    What stdio and socket transports share: one L{CommandProtocol} at a
    time, requests made while there is none wait for one.
    """

    def __init__(
        self,
        *,
        clock: IReactorTime,
        description: str,
        max_line_length: int = DEFAULT_MAX_LINE,
        max_abandoned: int = DEFAULT_MAX_ABANDONED,
    ) -> None:
        self.clock = clock
        self.description = description
        self._max_line_length = max_line_length
        self._max_abandoned = max_abandoned
        # One id sequence per client, so ids in logs are unique.
        self._ids: Iterator[int] = itertools.count(1)
        self.protocol: CommandProtocol | None = None
        self._waiters: list[_Waiter] = []
        self._ready: list[Deferred[None]] = []
        self._closed: str | None = None
        self._closing: Deferred[None] | None = None

    def build_protocol(self) -> CommandProtocol:
        return CommandProtocol(
            max_line_length=self._max_line_length,
            max_abandoned=self._max_abandoned,
            ids=self._ids,
            on_connected=self._connected,
            on_lost=self._lost,
            description=self.description,
        )

    # -- requests

    def request(self, request: CommandRequest) -> Deferred[CommandResponse]:
        if self._closed is not None:
            return fail(TransportClosed(self._closed))
        proto = self.protocol
        if proto is not None and proto.writable:
            return proto.send(request)
        try:
            # Fail a payload that cannot be sent now, not after the wait.
            request.encode(0)
        except ProtocolError:
            return fail()
        waiter = _Waiter(request)

        def cancel(d: Deferred[CommandResponse]) -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                d.errback(Failure(NotSent()))
            elif waiter.inner is not None:
                waiter.inner.cancel()

        waiter.deferred = Deferred(cancel)
        self._waiters.append(waiter)
        return waiter.deferred

    def when_ready(self) -> Deferred[None]:
        if self._closed is not None:
            return fail(TransportClosed(self._closed))
        proto = self.protocol
        if proto is not None and proto.writable:
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._ready.remove(d) if d in self._ready else None)
        self._ready.append(d)
        return d

    @property
    def waiting(self) -> int:
        """
        Requests waiting for a connection.
        """
        return len(self._waiters)

    # -- connection events

    def _connected(self, proto: CommandProtocol) -> None:
        if self._closed is not None:
            proto.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.protocol = proto
        _log.info("Command channel connected to {host}", host=self.description)
        # Waiting requests first, in the order they were made, then whoever
        # waited for the connection itself (and may send more).
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not proto.writable:
                # A callback above dropped the connection: wait for the next.
                self._waiters.append(waiter)
                continue
            waiter.inner = inner = proto.send(waiter.request)
            assert waiter.deferred is not None
            inner.chainDeferred(waiter.deferred)
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(None)

    def _lost(self, proto: CommandProtocol, reason: Failure) -> None:
        if self.protocol is proto:
            self.protocol = None
        if self._closed is None:
            _log.warn(
                "Command channel to {host} lost: {why}",
                host=self.description,
                why=reason.getErrorMessage() if reason is not None else "closed",
            )

    def _fail_waiting(self, error: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            assert waiter.deferred is not None
            waiter.deferred.errback(Failure(error))
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(Failure(error))

    # -- closing

    def close(self) -> Deferred[None]:
        if self._closing is None:
            self._closed = "command client closed"
            error = TransportClosed(self._closed)
            self._fail_waiting(error)
            proto = self.protocol
            if proto is not None:
                proto.fail_all(error)
            self._closing = _bounded(self._shutdown(), self.clock, CLOSE_GRACE, self._abort)
        return _follow(self._closing)

    def _shutdown(self) -> Deferred[Any]:
        raise NotImplementedError()

    def _abort(self) -> None:
        proto = self.protocol
        transport = proto.transport if proto is not None else None
        if transport is None:
            return
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()


@implementer(ICommandTransport)
class StdioTransport(_LineTransport):
    """
    The channel on this process's stdin and stdout (fd 0 and 1), through
    L{twisted.internet.stdio.StandardIO}.  It does not reconnect: end of
    stdin fails everything waiting with L{TransportClosed}.
    """

    def __init__(self, *, reactor: Any, stdio: Callable[..., Any] | None = None, **kwargs: Any) -> None:
        super().__init__(clock=reactor, description="stdio host", **kwargs)
        if stdio is None:
            from twisted.internet.stdio import StandardIO

            stdio = StandardIO
        self._stdio = stdio(self.build_protocol(), reactor=reactor)

    def _lost(self, proto: CommandProtocol, reason: Failure) -> None:
        super()._lost(proto, reason)
        if self._closed is None:
            self._closed = "stdio command channel closed (end of stdin)"
            self._fail_waiting(TransportClosed(self._closed))

    def _shutdown(self) -> Deferred[Any]:
        proto = self.protocol
        if proto is None or proto.transport is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        original = proto._on_lost

        def lost(p: CommandProtocol, reason: Failure) -> None:
            if original is not None:
                original(p, reason)
            if not done.called:
                done.callback(None)

        proto._on_lost = lost
        proto.transport.loseConnection()
        return done


@implementer(IStreamClientEndpoint)
class _WatchedEndpoint:
    """
    An endpoint that remembers why the last connection attempt failed.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint
        self.last_failure: Failure | None = None

    def connect(self, factory: Any) -> Deferred[Any]:
        d = self._endpoint.connect(factory)

        def failed(f: Failure) -> Failure:
            if not f.check(CancelledError):
                self.last_failure = f
            return f

        return d.addErrback(failed)


class _Factory(Factory):
    noisy = False

    def __init__(self, build: Callable[[], CommandProtocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: Any) -> CommandProtocol:
        return self._build()


@implementer(ICommandTransport)
class ReconnectingTransport(_LineTransport):
    """
    A TCP or UNIX connection kept up by a L{ClientService} (reconnecting
    with backoff).  Requests in flight when a connection drops fail with
    L{TransportClosed} at once; they are not sent again (commands need not
    be idempotent).
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        *,
        clock: IReactorTime,
        description: str,
        retry_policy: Callable[[int], float] | None = None,
        **kwargs: Any,
    ) -> None:
        from twisted.application.internet import ClientService, backoffPolicy

        super().__init__(clock=clock, description=description, **kwargs)
        self.endpoint = _WatchedEndpoint(endpoint)
        self.service = ClientService(
            self.endpoint,
            _Factory(self.build_protocol),
            retryPolicy=retry_policy if retry_policy is not None else backoffPolicy(maxDelay=10.0),
            clock=clock,
        )
        self.service.startService()

    def why_not_connected(self) -> str:
        failure = self.endpoint.last_failure
        if failure is None:
            return "no connection yet"
        return failure.getErrorMessage()

    def _shutdown(self) -> Deferred[Any]:
        return self.service.stopService()  # type: ignore[no-any-return]


def _follow(d: Deferred[None]) -> Deferred[None]:
    """
    A new Deferred that fires with L{None} when C{d} fires (so that several
    callers can wait for one close).
    """
    result: Deferred[None] = Deferred()

    def fire(outcome: object) -> object:
        result.callback(None)
        return outcome

    d.addBoth(fire)
    return result


def _bounded(
    d: Deferred[Any], clock: IReactorTime, grace: float, on_expiry: Callable[[], object]
) -> Deferred[None]:
    """
    Fire (with L{None}) when C{d} does or C{grace} seconds pass, whichever is
    first; C{on_expiry} runs in the second case.  Failures of C{d} are logged.
    """
    result: Deferred[None] = Deferred()

    def expire() -> None:
        _log.warn("Command channel did not close within {grace} s; abandoning it", grace=grace)
        on_expiry()
        if not result.called:
            result.callback(None)

    timer = clock.callLater(grace, expire)

    def finished(outcome: object) -> None:
        if timer.active():
            timer.cancel()
        if isinstance(outcome, Failure):
            _log.failure("Error closing the command channel", outcome)
        if not result.called:
            result.callback(None)

    d.addBoth(finished)
    return result


# -- the client ----------------------------------------------------------


class CommandClient:
    """
    Sends commands to the host.  Build one with L{CommandClient.connect} (a
    Deferred that fires once connected), L{CommandClient.for_endpoint}
    (returns at once, connects in the background) or
    L{CommandClient.unavailable}.

    @ivar endpoint: the L{CommandEndpoint} it talks to.
    @ivar timeout: the default timeout of a command, in seconds.
    """

    def __init__(
        self,
        transport: ICommandTransport,
        *,
        clock: IReactorTime | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        endpoint: CommandEndpoint | None = None,
    ) -> None:
        _check_timeout(timeout)
        self._transport = transport
        self._clock = clock
        self.timeout = timeout
        self.endpoint = endpoint
        self._closed = False

    # -- construction

    @classmethod
    def unavailable(cls, reason: str) -> CommandClient:
        """
        A client whose every command fails at once with L{Unavailable}
        carrying C{reason}, without any I/O.
        """
        return cls(UnavailableTransport(reason), endpoint=CommandEndpoint.disabled(reason))

    @classmethod
    def for_endpoint(
        cls,
        endpoint: CommandEndpoint | str,
        *,
        reactor: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_line_length: int = DEFAULT_MAX_LINE,
        retry_policy: Callable[[int], float] | None = None,
        _stdio: Callable[..., Any] | None = None,
    ) -> CommandClient:
        """
        A client for C{endpoint}, returned at once.  TCP and UNIX clients
        connect in the background and reconnect with backoff; a command
        made before the connection is up waits for it, within its timeout.

        @param endpoint: a L{CommandEndpoint}, or its text for
            L{CommandEndpoint.parse}.
        @param reactor: the reactor (default: the global one).
        @param timeout: default seconds a command waits for its reply.
        @param max_line_length: longest reply line read on stream
            transports (bytes), 16 MiB by default.
        @param retry_policy: seconds to wait before reconnection attempt
            N (see L{twisted.application.internet.backoffPolicy}).
        """
        _check_timeout(timeout)
        if isinstance(endpoint, str):
            endpoint = CommandEndpoint.parse(endpoint)
        if endpoint.kind == "disabled":
            return cls.unavailable(endpoint.reason or "the command channel is disabled")
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        transport: ICommandTransport
        if endpoint.kind == "stdio":
            transport = StdioTransport(reactor=reactor, stdio=_stdio, max_line_length=max_line_length)
        elif endpoint.kind in ("tcp", "unix"):
            transport = ReconnectingTransport(
                endpoint.client_endpoint(reactor),
                clock=reactor,
                description=str(endpoint),
                retry_policy=retry_policy,
                max_line_length=max_line_length,
            )
        elif endpoint.kind == "http":
            from containerflare.command._http import HTTPTransport

            assert endpoint.url is not None
            transport = HTTPTransport(endpoint.url, reactor=reactor, max_body=max_line_length)
        else:  # pragma: no cover - CommandEndpoint.parse makes no other kind
            raise ValueError(f"unknown command endpoint kind {endpoint.kind!r}")
        return cls(transport, clock=reactor, timeout=timeout, endpoint=endpoint)

    @classmethod
    def connect(
        cls,
        endpoint: CommandEndpoint | str,
        *,
        reactor: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> Deferred[CommandClient]:
        """
        A client for C{endpoint}, once it is connected (at once for stdio,
        HTTP and disabled endpoints).

        @return: a Deferred firing with the L{CommandClient}, or failing with
            L{TransportClosed} (the client closed) when no connection came
            within C{timeout} seconds.
        """
        try:
            client = cls.for_endpoint(endpoint, reactor=reactor, timeout=timeout, **kwargs)
        except Exception:
            return fail()
        return client._when_connected(timeout)

    def _when_connected(self, timeout: float) -> Deferred[CommandClient]:
        ready = self._transport.when_ready()
        if ready.called:
            return ready.addCallback(lambda _: self)
        clock = self._clock
        assert clock is not None
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            ready.cancel()

        timer = clock.callLater(timeout, expire)

        def done(result: object) -> object:
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                why_not = getattr(self._transport, "why_not_connected", lambda: "")()
                reason = (
                    f"could not connect to {self.endpoint} within {timeout:g} s"
                    if expired
                    else f"could not connect to {self.endpoint}"
                )
                if why_not:
                    reason += f" ({why_not})"
                closing = self.close()

                def closed(_: object) -> Failure:
                    return Failure(TransportClosed(reason))

                return closing.addCallback(closed)
            return self

        return ready.addBoth(done)  # type: ignore[return-value]

    # -- commands

    def send(self, request: CommandRequest, *, timeout: float | None = None) -> Deferred[CommandResponse]:
        """
        Send C{request} and wait for the host's response.

        @param timeout: seconds to wait (default: the client's timeout).
        @return: a Deferred firing with the L{CommandResponse}, C{ok: false}
            included (L{invoke} turns that into L{CommandFailure}); or
            failing with L{CommandTimeout}, L{TransportClosed},
            L{Unavailable} or L{ProtocolError}.  Cancelling it frees the
            request's slot (its late reply, if any, is discarded).
        """
        try:
            limit = self.timeout if timeout is None else _check_timeout(timeout)
        except ValueError:
            return fail()
        if not isinstance(request, CommandRequest):
            return fail(TypeError(f"expected a CommandRequest, got {request!r}"))
        if self._closed:
            return fail(TransportClosed("command client closed"))
        d = self._transport.request(request)
        if d.called:
            return d
        return self._timed(d, request.command, limit)

    def invoke(self, command: str, payload: Any = None, *, timeout: float | None = None) -> Deferred[Any]:
        """
        Run C{command} on the host with C{payload}.

        @param command: e.g. C{"kv.get"} (see C{docs/commands.md}).
        @param payload: its arguments (anything C{json} can write).
        @param timeout: seconds to wait (default: the client's timeout, 30 s
            unless set).
        @return: a Deferred firing with the reply's payload, or failing with
            L{CommandFailure} (C{ok: false}), L{CommandTimeout},
            L{TransportClosed}, L{Unavailable} or L{ProtocolError}.
        """
        try:
            request = CommandRequest(command, payload)
        except (TypeError, ValueError):
            return fail(ProtocolError(f"invalid command name {command!r}: expected a non-empty string"))
        d = self.send(request, timeout=timeout)
        return d.addCallback(_payload_of, command)

    def _timed(self, d: Deferred[CommandResponse], command: str, timeout: float) -> Deferred[CommandResponse]:
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor

            clock = self._clock = reactor  # type: ignore[assignment]
            assert clock is not None
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer: IDelayedCall = clock.callLater(timeout, expire)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if expired and isinstance(result, Failure) and result.check(CancelledError):
                return Failure(CommandTimeout(command, timeout, sent=not result.check(NotSent)))
            return result

        return d.addBoth(done)

    # -- typed helpers (docs/commands.md)

    def kv(self, binding: str) -> KV:
        """
        Typed helpers for the Workers KV namespace C{binding}.
        """
        from containerflare.command._bindings import KV

        return KV(self, binding)

    def d1(self, binding: str) -> D1:
        """
        Typed helpers for the D1 database C{binding}.
        """
        from containerflare.command._bindings import D1

        return D1(self, binding)

    def r2(self, binding: str) -> R2:
        """
        Typed helpers for the R2 bucket C{binding}.
        """
        from containerflare.command._bindings import R2

        return R2(self, binding)

    def queue(self, binding: str) -> Queue:
        """
        Typed helpers for the Queue producer C{binding}.
        """
        from containerflare.command._bindings import Queue

        return Queue(self, binding)

    # -- lifetime

    @property
    def available(self) -> bool:
        """
        Whether this client has a channel at all (C{False} for
        L{CommandClient.unavailable} ones).
        """
        return not isinstance(self._transport, UnavailableTransport)

    def close(self) -> Deferred[None]:
        """
        Stop: commands waiting (for a connection or a reply) fail with
        L{TransportClosed} at once, reconnection stops, the connection is
        let go.  Fires when done, within a couple of seconds at most; later
        commands fail with L{TransportClosed}.
        """
        self._closed = True
        try:
            return self._transport.close()
        except Exception:
            _log.failure("Error closing the command client")
            return succeed(None)

    def __repr__(self) -> str:
        return f"<CommandClient {self.endpoint or self._transport.description}>"


def _payload_of(response: CommandResponse, command: str) -> Any:
    if response.ok:
        return response.payload
    raise CommandFailure(command, response.diagnostic, response.payload)


def _check_timeout(timeout: float) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


__all__ = ["DEFAULT_TIMEOUT", "CommandClient"]
