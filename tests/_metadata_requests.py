"""
Requests for the metadata tests, parsed by twisted.web's real HTTP channel
from raw bytes (no private Twisted test helpers), on a fake clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from containerflare import RequestMetadata, RuntimeConfig, sign_metadata

NOW = 1_700_000_000.0

ENVIRONS: dict[str, dict[str, str]] = {
    "cloudflare": {
        "CONTAINERFLARE_PLATFORM": "cloudflare",
        "CONTAINERFLARE_WORKER": "edge-worker",
    },
    "cloud_run": {
        "K_SERVICE": "hello",
        "K_REVISION": "hello-00001-abc",
        "K_CONFIGURATION": "hello",
        "GOOGLE_CLOUD_PROJECT": "my-project",
    },
    "generic": {},
}


class _Capture(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Request) -> object:
        self.requests.append(request)
        return NOT_DONE_YET


def make_request(
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    method: bytes = b"GET",
    uri: bytes = b"/",
    peer: str = "198.51.100.7",
    secure: bool = False,
    set_uri: bytes | None = None,
) -> Request:
    """
    A request as twisted.web parses it from C{method uri HTTP/1.1} and
    C{headers}, received from C{peer}.  C{set_uri} replaces the target after
    parsing, for bytes twisted.web itself refuses (non-ASCII).
    """
    capture = _Capture()
    site = Site(capture, reactor=Clock())
    address = IPv6Address("TCP", peer, 40000) if ":" in peer else IPv4Address("TCP", peer, 40000)
    channel = site.buildProtocol(address)
    channel.makeConnection(StringTransport(peerAddress=address))  # type: ignore[union-attr]
    lines = [method + b" " + uri + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in headers)
    channel.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n")  # type: ignore[union-attr]
    assert len(capture.requests) == 1, "the request did not parse"
    request = capture.requests[0]
    if set_uri is not None:
        request.uri = set_uri
    if secure:
        request.isSecure = lambda: True  # type: ignore[method-assign]
    return request


def config(platform: str, **extra: str) -> RuntimeConfig:
    return RuntimeConfig.from_environ({**ENVIRONS[platform], **extra})


def metadata(
    platform: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    env: Mapping[str, str] | None = None,
    now: float = NOW,
    cfg: RuntimeConfig | None = None,
    **request_args: Any,
) -> RequestMetadata:
    if cfg is None:
        cfg = config(platform, **(env or {}))
    request = make_request(headers, **request_args)
    return cfg.provider.request_metadata(request, cfg, now)  # type: ignore[no-any-return]


def header_value(data: Mapping[str, Any]) -> bytes:
    """
    The metadata JSON as the Worker sends it: compact, ASCII only.
    """
    return json.dumps(data, separators=(",", ":")).encode("ascii")


def signed(value: bytes, secret: str, now: float = NOW) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-containerflare-metadata", value),
        (b"x-containerflare-signature", sign_metadata(value, secret, now).encode("ascii")),
    ]
