# -*- test-case-name: tests.test_testing -*-
"""
The machinery behind L{containerflare.testing}: a fake command host spoken
to over an in-memory JSON-lines connection, and an in-memory HTTP client
around an app served the way C{twistd containerflare} serves it.

Nothing here opens a socket or runs the reactor: bytes move between the two
ends of a connection only when a test calls C{flush()}, as with
L{treq.testing.StubTreq}.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Union

from attrs import frozen
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IProtocol, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer
from twisted.web.resource import IResource
from zope.interface import implementer

from containerflare import _metadata, _trust
from containerflare._context import Runtime
from containerflare._environ import RuntimeConfig
from containerflare._lifecycle import Lifecycle, Readiness, check_health_path
from containerflare._site import ContainerResource
from containerflare.command._client import CommandClient, ReconnectingTransport
from containerflare.command._endpoint import CommandEndpoint
from containerflare.command._host_dispatch import HostError
from containerflare.command._messages import CommandRequest, CommandResponse, _is_id

if TYPE_CHECKING:
    from treq.response import _Response as TreqResponse
    from twisted.internet.interfaces import IProtocolFactory, IReactorTime
    from twisted.web.iweb import IResponse

    from containerflare._metadata import RequestMetadata

_log = Logger()

_METADATA = _metadata.METADATA_HEADER.encode("ascii")
_SIGNATURE = _trust.SIGNATURE_HEADER.encode("ascii")

#: The base URL of requests given as a path only.
DEFAULT_BASE_URL = "http://container.test"

#: How many rounds C{flush()} runs at most before it gives up (a handler
#: that keeps talking to the host forever).
MAX_FLUSH_ROUNDS = 1000

ReplyFunction = Callable[[Any], Any]
Reply = Union[ReplyFunction, Any]


@frozen
class _Fixed:
    value: Any


@frozen
class _Failing:
    code: str
    diagnostic: str | None


class _HostProtocol(LineReceiver):
    """
    The host end of one connection: one JSON request per line in, one JSON
    response per line out, with the request's C{id}.
    """

    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024 * 1024

    def __init__(self, host: FakeHost) -> None:
        self.host = host

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            self._write({"ok": False, "payload": {"code": "protocol_error"}, "diagnostic": f"line is not valid JSON: {e}"})
            return
        rid = obj.get("id") if isinstance(obj, dict) else None
        if rid is not None and not _is_id(rid):
            rid = None
        command = obj.get("command") if isinstance(obj, dict) else None
        if not isinstance(command, str) or not command:
            self._write(_error(rid, "protocol_error", "a request needs a non-empty string 'command'"))
            return
        request = CommandRequest(command, obj.get("payload"))
        self.host._answer(request).addCallback(self._reply, rid)

    def _reply(self, response: CommandResponse, rid: int | None) -> None:
        obj: dict[str, Any] = {}
        if rid is not None:
            obj["id"] = rid
        obj.update(ok=response.ok, payload=response.payload, diagnostic=response.diagnostic)
        self._write(obj)

    def _write(self, obj: dict[str, Any]) -> None:
        if self.transport is None or getattr(self.transport, "disconnecting", False):
            return
        try:
            data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as e:
            # A reply set by the test that JSON cannot carry: say so on the
            # wire, as a real host would fail, and in the log.
            _log.error("FakeHost reply cannot be written as JSON: {error}", error=e)
            data = json.dumps(
                _error(obj.get("id"), "internal_error", f"reply is not JSON: {e}")
            ).encode("utf-8")
        self.transport.write(data + self.delimiter)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        self._write(_error(None, "too_large", "line too long"))


def _error(rid: int | None, code: str, diagnostic: str) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if rid is not None:
        obj["id"] = rid
    obj.update(ok=False, payload={"code": code}, diagnostic=diagnostic)
    return obj


class _Loopback:
    """
    An in-memory connection between a client protocol and a host protocol.
    Bytes (and the close) cross only in L{pump}.
    """

    def __init__(self, client: IProtocol, server: IProtocol) -> None:
        self.client = client
        self.server = server
        self.client_transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 40000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 7878),
        )
        self.server_transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 7878),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
        )
        self.closed = False

    def start(self) -> None:
        self.server.makeConnection(self.server_transport)
        self.client.makeConnection(self.client_transport)

    def pump(self) -> bool:
        """
        Deliver what each side wrote to the other, then a close.

        @return: whether anything moved.
        """
        if self.closed:
            return False
        moved = False
        for source, sink in (
            (self.client_transport, self.server),
            (self.server_transport, self.client),
        ):
            data = source.value()
            if data:
                source.clear()
                sink.dataReceived(data)
                moved = True
        if self.client_transport.disconnecting or self.server_transport.disconnecting:
            # Whatever was written before the close was delivered above.
            self.closed = True
            from twisted.internet.error import ConnectionDone

            for protocol in (self.server, self.client):
                protocol.connectionLost(Failure(ConnectionDone("in-memory connection closed")))
            moved = True
        return moved


@implementer(IStreamClientEndpoint)
class _HostEndpoint:
    """
    A client endpoint whose every connection reaches a L{FakeHost} in
    memory.
    """

    def __init__(self, host: FakeHost) -> None:
        self._host = host

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        addr = IPv4Address("TCP", "127.0.0.1", 7878)
        protocol = factory.buildProtocol(addr)
        if protocol is None:
            return succeed(None)  # type: ignore[arg-type]
        loop = _Loopback(protocol, _HostProtocol(self._host))
        self._host._loops.append(loop)
        loop.start()
        return succeed(protocol)


class FakeHost:
    """
    A command host for tests: the replies are set per command by the test,
    and every command received is recorded.

    It speaks the real wire format (C{docs/commands.md}) to a real
    L{CommandClient} over an in-memory connection, so a command goes through
    the same client code as in production (ids, timeouts, C{ok: false} as
    L{containerflare.command.CommandFailure}).  Replies travel when
    L{flush} (or the flush of the L{StubContainer} using this host) is
    called.

    A command with no reply set is answered C{ok: false} with code
    C{unknown_command}, as a real host answers a command it does not know.

    @ivar received: the requests received, oldest first.
    """

    def __init__(self) -> None:
        self._replies: dict[str, _Fixed | _Failing | ReplyFunction] = {}
        self.received: list[CommandRequest] = []
        self._loops: list[_Loopback] = []

    # -- what the test sets

    def reply(self, command: str, value: Reply) -> None:
        """
        Answer C{command} with C{ok: true} and C{value} as payload, or, when
        C{value} is callable, with what it returns when called with the
        request's payload.

        A reply function may return a L{Deferred} (the reply is sent when it
        fires), raise L{HostError} (the reference host's: answered C{ok:
        false} with its code and diagnostic) or
        raise anything else (answered C{ok: false}, code
        C{internal_error}).
        """
        self._replies[command] = value if callable(value) else _Fixed(value)

    def fail(self, command: str, code: str, diagnostic: str | None = None) -> None:
        """
        Answer C{command} with C{ok: false}, C{payload: {"code": code}} and
        C{diagnostic}.
        """
        self._replies[command] = _Failing(code, diagnostic or f"{command} failed ({code})")

    def forget(self, command: str) -> None:
        """
        Stop answering C{command} (it becomes C{unknown_command} again).
        """
        self._replies.pop(command, None)

    # -- what the test reads

    @property
    def commands(self) -> list[str]:
        """
        The names of the commands received, oldest first.
        """
        return [request.command for request in self.received]

    def payloads(self, command: str) -> list[Any]:
        """
        The payloads of the C{command} requests received, oldest first.
        """
        return [request.payload for request in self.received if request.command == command]

    @property
    def connections(self) -> int:
        """
        How many client connections are open now.
        """
        return sum(1 for loop in self._loops if not loop.closed)

    # -- wiring

    def endpoint(self) -> IStreamClientEndpoint:
        """
        A Twisted client endpoint whose connections reach this host in
        memory.
        """
        return _HostEndpoint(self)

    def client(self, clock: IReactorTime | None = None, *, timeout: float = 30.0) -> CommandClient:
        """
        A real L{CommandClient} connected to this host.

        @param clock: what command timeouts are measured on (a new
            L{Clock} when omitted).
        @param timeout: the client's default command timeout, in seconds.
        """
        if clock is None:
            clock = Clock()
        transport = ReconnectingTransport(
            self.endpoint(), clock=clock, description="fake host"
        )
        return CommandClient(
            transport,
            clock=clock,
            timeout=timeout,
            endpoint=CommandEndpoint.parse("tcp://127.0.0.1:7878"),
        )

    def flush(self) -> bool:
        """
        Deliver the requests written to this host and its replies, until
        nothing moves.

        @return: whether anything moved.
        """
        moved_any = False
        for _ in range(MAX_FLUSH_ROUNDS):
            moved = False
            for loop in list(self._loops):
                moved |= loop.pump()
            self._loops = [loop for loop in self._loops if not loop.closed]
            if not moved:
                break
            moved_any = True
        return moved_any

    def _answer(self, request: CommandRequest) -> Deferred[CommandResponse]:
        self.received.append(request)
        reply = self._replies.get(request.command)
        if reply is None:
            return succeed(
                CommandResponse(
                    ok=False,
                    payload={"code": "unknown_command"},
                    diagnostic=f"unknown command {request.command!r} (no reply set on this FakeHost)",
                )
            )
        if isinstance(reply, _Fixed):
            return succeed(CommandResponse(ok=True, payload=reply.value))
        if isinstance(reply, _Failing):
            return succeed(
                CommandResponse(ok=False, payload={"code": reply.code}, diagnostic=reply.diagnostic)
            )
        d = maybeDeferred(reply, request.payload)
        return d.addCallbacks(
            lambda value: CommandResponse(ok=True, payload=value),
            lambda failure: _failure_response(request.command, failure),
        )


def _failure_response(command: str, failure: Failure) -> CommandResponse:
    error = failure.value
    if isinstance(error, HostError):
        return CommandResponse(
            ok=False,
            payload={"code": error.code},
            diagnostic=error.diagnostic or f"{command} failed ({error.code})",
        )
    _log.failure("FakeHost reply function for {command} raised", failure, command=command)
    return CommandResponse(
        ok=False,
        payload={"code": "internal_error"},
        diagnostic=f"reply function raised {type(error).__name__}: {error}",
    )


# -- the in-memory HTTP client -------------------------------------------------


@implementer(IBodyProducer)
class _BytesProducer:
    """
    A request body produced at once (no cooperator, no reactor).
    """

    def __init__(self, body: bytes | str) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(body, bytes):
            raise TypeError(
                f"StubContainer sends bytes or str bodies (or json=...), not {type(body).__name__}"
            )
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:  # noqa: N802
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


#: "Use the stub's own metadata" (the default of the C{metadata} argument).
_DEFAULT: Any = _Unset()

Metadata = Union["RequestMetadata", Mapping[str, Any], str, bytes, None]


@implementer(IAgent)
class _MetadataAgent:
    """
    Adds the metadata header (and its signature) to each request, as the
    Worker does, unless the request already carries one.
    """

    def __init__(self, agent: IAgent, stub: StubContainer) -> None:
        self._agent = agent
        self._stub = stub

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,  # noqa: N803
    ) -> Deferred[IResponse]:
        headers = Headers() if headers is None else headers.copy()
        metadata = self._stub._next_metadata
        self._stub._next_metadata = _DEFAULT
        if metadata is _DEFAULT:
            metadata = self._stub.metadata
        if not headers.hasHeader(_METADATA):
            value = encode_metadata(metadata)
            if value is not None:
                headers.setRawHeaders(_METADATA, [value])
                secret = self._stub.secret
                if secret is not None and self._stub.sign and not headers.hasHeader(_SIGNATURE):
                    signature = _trust.sign_metadata(value, secret, self._stub.clock.seconds())
                    headers.setRawHeaders(_SIGNATURE, [signature.encode("ascii")])
        return self._agent.request(method, uri, headers, bodyProducer)


def encode_metadata(metadata: Metadata) -> bytes | None:
    """
    The bytes of the C{x-containerflare-metadata} header the Worker would
    send for C{metadata}: compact JSON with non-ASCII characters escaped.

    @param metadata: a L{RequestMetadata}, a dict (sent as given, so tests
        can send what a Worker must not), text or bytes (sent verbatim), or
        L{None} (no header).
    """
    if metadata is None:
        return None
    if isinstance(metadata, bytes):
        return metadata
    if isinstance(metadata, str):
        return metadata.encode("utf-8")
    to_dict = getattr(metadata, "to_dict", None)
    obj = to_dict() if callable(to_dict) else dict(metadata)  # type: ignore[arg-type]
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@frozen
class StubResponse:
    """
    A finished response, body included (what L{StubContainer.fetch}
    returns).

    @ivar code: the status code.
    @ivar headers: the response headers.
    @ivar body: the whole body.
    """

    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """
        The (last) value of the response header C{name}, or L{None}.
        """
        values = self.headers.getRawHeaders(name)
        return None if not values else values[-1]

    @property
    def text(self) -> str:
        """
        The body decoded as UTF-8.
        """
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """
        The body parsed as JSON.
        """
        return json.loads(self.body)


class NotFinished(AssertionError):
    """
    L{StubContainer.fetch} flushed everything it could and the response is
    still not complete: the handler waits for something the stub does not
    drive (a Deferred of its own, a real network call, a timer: advance
    C{stub.clock}).
    """


class StubContainer:
    """
    An in-memory client for an app served the way C{twistd containerflare}
    serves it: the real L{ContainerResource} and L{Runtime} around the app's
    resource, a L{RuntimeConfig} read from a chosen environment, the Worker's
    metadata header on every request, and a L{FakeHost} behind a real
    L{CommandClient}.  No socket, no reactor: see L{flush}.

    @ivar config: the L{RuntimeConfig} the app sees.
    @ivar runtime: the L{Runtime} (config, command client, clock).
    @ivar host: the L{FakeHost} answering the app's commands.
    @ivar clock: the runtime's clock (command timeouts, signature times).
    @ivar metadata: what the metadata header carries by default.
    @ivar secret: the metadata secret, when given.
    @ivar sign: whether requests are signed with C{secret}.
    """

    def __init__(
        self,
        app: Any,
        *,
        platform: str | None = None,
        environ: Mapping[str, str] | None = None,
        metadata: Metadata = None,
        secret: str | None = None,
        sign: bool = True,
        host: FakeHost | None = None,
        clock: Clock | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        lifecycle: Lifecycle | None = None,
        health_path: str | None = None,
    ) -> None:
        """
        @param app: a C{klein.Klein}, or any L{IResource}.
        @param platform: C{"cloudflare"}, C{"cloud_run"} or C{"generic"};
            when omitted the platform is detected from C{environ}, as in
            production (generic for an empty one).
        @param environ: the environment the runtime reads (nothing from
            L{os.environ}); C{platform} and C{secret} are added to it as
            C{CONTAINERFLARE_PLATFORM} and C{CONTAINERFLARE_METADATA_SECRET}.
        @param metadata: what the Worker's C{x-containerflare-metadata}
            header carries on each request: a L{RequestMetadata}, a dict,
            raw text, or L{None} for no header.
        @param secret: the metadata secret: the runtime requires a valid
            signature, and the stub signs each header with it (unless
            C{sign} is false).
        @param host: the fake command host (a new one when omitted).
        @param clock: the runtime's clock (a L{Clock} at the current time
            when omitted).
        @param base_url: what paths given alone (C{"/kv/x"}) are relative to.
        @param timeout: the command client's default timeout, in seconds.
        @param lifecycle: the app's L{Lifecycle}, when it has start-up or
            shutdown hooks: requests get the runtime's C{503} until
            L{start} has run the start-up hooks, and L{close} runs the
            shutdown hooks.
        @param health_path: the built-in health check's path
            (C{--health-path}), e.g. C{"/healthz"}.
        """
        env = dict(environ or {})
        if platform is not None:
            env["CONTAINERFLARE_PLATFORM"] = platform
        if secret is not None:
            env["CONTAINERFLARE_METADATA_SECRET"] = secret
        self.config = RuntimeConfig.from_environ(env)
        if clock is None:
            clock = Clock()
            clock.advance(int(time.time()))
        self.clock = clock
        self.host = host if host is not None else FakeHost()
        self.metadata = metadata
        self.secret = secret
        self.sign = sign
        self.base_url = base_url.rstrip("/")
        self._next_metadata: Any = _DEFAULT

        # The command channel the runtime would have: none on Cloud Run (or
        # when disabled), else the fake host in place of stdio/TCP/HTTP.
        text = self.config.command_endpoint
        if text is not None:
            endpoint = CommandEndpoint.parse(text)
        else:
            endpoint = CommandEndpoint.default(self.config.platform.name, stdin_is_tty=False)
        client: CommandClient
        if endpoint.kind == "disabled":
            client = CommandClient.unavailable(endpoint.reason or "the command channel is disabled")
        else:
            client = self.host.client(clock, timeout=timeout)
        self.lifecycle = lifecycle
        readiness = Readiness()
        if lifecycle is None or not lifecycle.startup_hooks:
            readiness.mark_ready()
        self.runtime = Runtime(self.config, client, clock, readiness)
        if lifecycle is not None:
            lifecycle.runtime = self.runtime

        from treq.client import HTTPClient
        from treq.testing import RequestTraversalAgent

        self.resource = ContainerResource(
            _as_resource(app),
            self.runtime,
            health_path=None if health_path is None else check_health_path(health_path),
        )
        self._agent = RequestTraversalAgent(self.resource)
        self._http = HTTPClient(
            agent=_MetadataAgent(self._agent, self), data_to_body_producer=_BytesProducer
        )

    @property
    def command_client(self) -> CommandClient:
        """
        The runtime's command client (talking to L{host}).
        """
        return self.runtime.command_client

    @property
    def readiness(self) -> Readiness:
        """
        The runtime's readiness (C{.state}: starting, ready, stopping,
        failed).
        """
        readiness = self.runtime.readiness
        assert readiness is not None
        return readiness

    def start(self) -> None:
        """
        Run the lifecycle's start-up hooks (with L{clock} for their
        timeouts), flushing so that hooks talking to the host finish; the
        app then serves requests.

        @raise containerflare.StartupFailed: a hook failed (the app stays
            unready, as under twistd).
        @raise NotFinished: a hook still waits for something flushing does
            not drive (advance L{clock} and call L{flush}).
        """
        lifecycle = self.lifecycle
        readiness = self.readiness
        if lifecycle is None or not lifecycle.startup_hooks:
            readiness.mark_ready()
            return
        outcome: list[Any] = []
        lifecycle.startup(self.clock).addBoth(outcome.append)
        self.flush()
        if not outcome:
            raise NotFinished("the start-up hooks did not finish")
        if isinstance(outcome[0], Failure):
            readiness.mark_failed()
            outcome[0].raiseException()
        readiness.mark_ready()

    # -- requests, treq style (Deferreds)

    def request(
        self, method: str, url: str, *, metadata: Metadata = _DEFAULT, **kwargs: Any
    ) -> Deferred[TreqResponse]:
        """
        Make a request, like C{treq.request}; call L{flush} for it to
        progress, or use L{fetch}.

        @param url: an absolute URL, or a path (relative to C{base_url}).
        @param metadata: this request's metadata header instead of the
            stub's (L{None}: no header).
        @param kwargs: C{treq.request}'s: C{headers}, C{params}, C{data},
            C{json}, C{cookies}, C{allow_redirects}...
        @return: a Deferred firing with treq's response.
        """
        if url.startswith("/"):
            url = self.base_url + url
        self._next_metadata = metadata
        try:
            d = self._http.request(method, url, **kwargs)
        finally:
            self._next_metadata = _DEFAULT
        self.flush()
        return d

    def get(self, url: str, **kwargs: Any) -> Deferred[TreqResponse]:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Deferred[TreqResponse]:
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Deferred[TreqResponse]:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Deferred[TreqResponse]:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Deferred[TreqResponse]:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Deferred[TreqResponse]:
        return self.request("DELETE", url, **kwargs)

    # -- requests, synchronous

    def fetch(self, method: str, url: str, **kwargs: Any) -> StubResponse:
        """
        Make a request, flush until its response is complete, and return
        it with its body.  Works in any test (pytest or trial) without
        touching Deferreds.

        @raise NotFinished: the response cannot complete by flushing alone.
        @raise Exception: whatever the request failed with.
        """
        d = self.request(method, url, **kwargs)

        def read(response: Any) -> Deferred[StubResponse]:
            return response.content().addCallback(
                lambda body: StubResponse(code=response.code, headers=response.headers, body=body)
            )

        outcome: list[Any] = []
        d.addCallback(read).addBoth(outcome.append)
        for _ in range(3):
            if outcome:
                break
            self.flush()
        if not outcome:
            d.cancel()
            outcome.clear()
            raise NotFinished(
                f"{method} {url}: the response did not complete; the handler waits for "
                "something flush() does not drive (advance stub.clock for timers, or fire "
                "the Deferred it waits on, then call flush())"
            )
        result = outcome[0]
        if isinstance(result, Failure):
            result.raiseException()
        assert isinstance(result, StubResponse)
        return result

    # -- driving

    def flush(self) -> None:
        """
        Move everything that can move: requests to the app, commands to the
        host, replies back, responses to the client, until nothing does.
        """
        for _ in range(MAX_FLUSH_ROUNDS):
            self._agent.flush()
            if not self.host.flush():
                self._agent.flush()
                return

    def close(self) -> None:
        """
        Shut down as C{twistd containerflare} does after the drain: run the
        lifecycle's shutdown hooks, then close the command client, and
        flush; afterwards no timer is left on L{clock}.
        """
        self.readiness.mark_stopping()
        outcome: list[Any] = []
        d: Deferred[Any] = succeed(None)
        lifecycle = self.lifecycle
        if lifecycle is not None and lifecycle.shutdown_hooks:
            d.addCallback(lambda _: lifecycle.shutdown(self.clock))
        d.addCallback(lambda _: self.command_client.close())
        d.addBoth(outcome.append)
        self.flush()
        if not outcome:
            raise NotFinished("the shutdown hooks or the command client did not finish")


def _as_resource(app: Any) -> IResource:
    resource = getattr(app, "resource", None)
    if callable(resource) and not IResource.providedBy(app):
        made = resource()
        if IResource.providedBy(made):
            return made  # type: ignore[no-any-return]
    if IResource.providedBy(app):
        return app  # type: ignore[no-any-return]
    raise TypeError(f"expected a klein.Klein or an IResource, got {app!r}")
