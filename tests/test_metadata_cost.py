"""
Cost: the metadata is built only for handlers that ask, once per request.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from zope.interface import implementer

from containerflare import ContainerContext, IMetadataProvider, RuntimeConfig
from containerflare._context import Runtime
from containerflare._platforms import GenericProvider
from containerflare._site import ContainerResource, ContainerSite
from containerflare.command import CommandClient


@implementer(IMetadataProvider)
class CountingProvider:
    name = "generic"

    def __init__(self) -> None:
        self.calls = 0
        self._real = GenericProvider()

    def detect(self, environ: Any) -> Any:
        return self._real.detect(environ)

    def platform(self, environ: Any) -> Any:
        return self._real.platform(environ)

    def request_metadata(self, request: Any, config: Any, now: float) -> Any:
        self.calls += 1
        return self._real.request_metadata(request, config, now)


class App(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        if request.path == b"/asks":
            ctx = ContainerContext.from_request(request)
            first = ctx.metadata
            assert ContainerContext.from_request(request).metadata is first
            assert ctx.metadata is first
            return first.path.encode()
        return b"no metadata"


def test_built_once_and_only_when_asked() -> None:
    provider = CountingProvider()
    config = attrs.evolve(RuntimeConfig.from_environ({}), provider=provider)
    clock = Clock()
    runtime = Runtime(config, CommandClient.unavailable("test"), clock)
    site = ContainerSite(ContainerResource(App(), runtime), clock=clock, access_log=False)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    channel.makeConnection(transport)  # type: ignore[union-attr]

    channel.dataReceived(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[union-attr]
    assert provider.calls == 0
    channel.dataReceived(b"GET /asks HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[union-attr]
    assert provider.calls == 1
    assert transport.value().endswith(b"/asks")
    channel.dataReceived(b"GET /asks HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[union-attr]
    assert provider.calls == 2
    channel.connectionLost(None)  # type: ignore[union-attr]
    assert clock.getDelayedCalls() == []
