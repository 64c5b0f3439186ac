"""
Unit tests for L{ContainerSite} and L{ContainerResource}: in-memory
transports and a fake clock.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface.verify import verifyObject

from containerflare import ContainerContext, IContainerContext, RuntimeConfig
from containerflare._context import Runtime
from containerflare._site import ContainerResource, ContainerSite
from containerflare.command import CommandClient


class _Pending(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[object] = []
        self.contexts: list[ContainerContext] = []

    def render_GET(self, request):  # noqa: N802
        self.requests.append(request)
        self.contexts.append(ContainerContext.from_request(request))
        return NOT_DONE_YET


def make_site(clock: Clock, resource: Resource | None = None) -> tuple[ContainerSite, _Pending]:
    pending = resource or _Pending()
    runtime = Runtime(RuntimeConfig.from_environ({}), CommandClient.unavailable("test"), clock)
    site = ContainerSite(ContainerResource(pending, runtime), clock=clock, access_log=False)
    return site, pending  # type: ignore[return-value]


def connect(site: ContainerSite) -> tuple[object, StringTransport]:
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def test_idle_connections_close_and_drain_waits_for_them() -> None:
    clock = Clock()
    site, _ = make_site(clock)
    channel, transport = connect(site)
    assert site.inflight == 0
    d = site.drain(5)
    assert transport.disconnecting
    # The drain waits for the connection to be really gone.
    result: list[object] = []
    d.addCallback(result.append)
    assert result == []
    channel.connectionLost(None)  # type: ignore[attr-defined]
    assert result == [None]
    assert clock.getDelayedCalls() == []


def test_in_flight_request_completes_then_connection_closes() -> None:
    clock = Clock()
    site, pending = make_site(clock)
    channel, transport = connect(site)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: example\r\n\r\n")  # type: ignore[attr-defined]
    assert site.inflight == 1
    request = pending.requests[0]

    result: list[object] = []
    site.drain(5).addCallback(result.append)
    assert not transport.disconnecting
    assert result == []

    request.write(b"done")  # type: ignore[attr-defined]
    request.finish()  # type: ignore[attr-defined]
    assert b"connection: close" in transport.value().lower()
    assert transport.disconnecting
    assert result == []
    channel.connectionLost(None)  # type: ignore[attr-defined]
    assert result == [None]
    assert site.inflight == 0
    assert clock.getDelayedCalls() == []


def test_grace_expiry_aborts() -> None:
    clock = Clock()
    site, _ = make_site(clock)
    channel, transport = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")  # type: ignore[attr-defined]
    result: list[object] = []
    site.drain(3).addCallback(result.append)
    clock.advance(2.9)
    assert result == []
    clock.advance(0.2)
    assert result == [None]
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_request_gets_one_context() -> None:
    clock = Clock()
    site, pending = make_site(clock)
    channel, _ = connect(site)
    channel.dataReceived(b"GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[attr-defined]
    request = pending.requests[0]
    context = pending.contexts[0]
    assert IContainerContext(request) is context
    assert ContainerContext.from_request(request) is context
    assert verifyObject(IContainerContext, context)
    assert context.metadata is context.metadata
    assert context.metadata.path == "/a?b=c"
    assert context.platform.name == "generic"


def test_contexts_do_not_leak_between_requests() -> None:
    clock = Clock()
    site, pending = make_site(clock)
    channel, _ = connect(site)
    channel.dataReceived(  # type: ignore[attr-defined]
        b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    pending.requests[0].finish()  # type: ignore[attr-defined]
    channel.dataReceived(b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[attr-defined]
    first, second = pending.contexts
    assert first is not second
    assert (first.metadata.path, second.metadata.path) == ("/one", "/two")


def test_unavailable_client_fails_invoke() -> None:
    clock = Clock()
    site, pending = make_site(clock)
    channel, _ = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[attr-defined]
    d: Deferred[object] = pending.contexts[0].invoke("kv.get", {"binding": "KV", "key": "k"})
    failures: list[object] = []
    d.addErrback(failures.append)
    assert len(failures) == 1
    assert "test" in str(failures[0].value)  # type: ignore[attr-defined]


def test_non_leaf_resources_traverse_transparently() -> None:
    clock = Clock()
    root = Resource()
    leaf = _Pending()
    root.putChild(b"api", leaf)
    site, _ = make_site(clock, root)  # type: ignore[arg-type]
    channel, _ = connect(site)
    channel.dataReceived(b"GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[attr-defined]
    assert len(leaf.requests) == 1
    assert leaf.requests[0].prepath == [b"api"]  # type: ignore[attr-defined]
    assert leaf.contexts[0].metadata.path == "/api/x"


def test_request_not_served_by_containerflare_gets_a_generic_context() -> None:
    """
    A bare Klein/twisted.web request (a user's own test, say) still gets a
    context: generic platform, an unavailable command client, same object
    for the whole request.
    """
    from twisted.web.server import Site

    pending = _Pending()
    site = Site(pending)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    (request,) = pending.requests
    context = pending.contexts[0]
    assert context is IContainerContext(request)
    assert context.platform.name == "generic"
    failures: list[object] = []
    context.invoke("kv.get").addErrback(failures.append)
    assert "not served by containerflare" in str(failures[0].value)  # type: ignore[attr-defined]


def test_channel_answers_is_secure_once_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The channel asks Twisted whether its transport is TLS once, and keeps
    the answer for the connection's requests.
    """
    from twisted.internet.interfaces import ISSLTransport
    from twisted.internet.testing import StringTransport
    from twisted.web.http import HTTPChannel
    from zope.interface import directlyProvides

    from containerflare._site import _Channel

    original = HTTPChannel.isSecure
    asked: list[object] = []

    def counting(self: HTTPChannel) -> bool:
        asked.append(self)
        return bool(original(self))

    monkeypatch.setattr(HTTPChannel, "isSecure", counting)
    for tls in (False, True):
        channel = _Channel()
        transport = StringTransport()
        if tls:
            directlyProvides(transport, ISSLTransport)
        channel.transport = transport
        assert channel.isSecure() is tls and channel.isSecure() is tls
        assert asked.count(channel) == 1
