"""
The HTTP transport (treq, persistent pool) against a small local web server
(non-2xx, bodies that are not JSON, slow answers, oversized bodies) and the
reference host's HTTP face, over real loopback sockets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from containerflare.command import (
    CommandClient,
    CommandEndpoint,
    CommandFailure,
    CommandTimeout,
    ProtocolError,
    TransportClosed,
)

from ._process import ROOT, clean_environ, free_port, wait_for_port


class Host(Resource):
    """
    Answers each POST as told by the command: C{ping} echoes, C{status:N}
    answers HTTP N, C{garbage} answers 200 with HTML, C{slow} never answers,
    C{huge} answers a body over the limit, C{wrong-id} echoes another id.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[Any] = []
        self.slow: list[Any] = []

    def render_POST(self, request: Any) -> Any:
        body = json.loads(request.content.read())
        self.bodies.append(body)
        self.headers.append(request.requestHeaders)
        command = body["command"]
        request.setHeader(b"content-type", b"application/json")
        if command == "ping":
            return json.dumps({"id": body["id"], "ok": True, "payload": body["payload"], "diagnostic": None}).encode()
        if command == "fail":
            return json.dumps(
                {"id": body["id"], "ok": False, "payload": {"code": "bad_request"}, "diagnostic": "field 'key'"}
            ).encode()
        if command.startswith("status:"):
            request.setResponseCode(int(command.split(":")[1]))
            return json.dumps({"ok": False, "payload": {"code": "too_large"}, "diagnostic": "body too big"}).encode()
        if command == "garbage":
            request.setHeader(b"content-type", b"text/html")
            return b"<html>oops</html>"
        if command == "huge":
            return b'{"ok": true, "payload": "' + b"x" * 5000 + b'"}'
        if command == "wrong-id":
            return json.dumps({"id": body["id"] + 1000, "ok": True, "payload": None}).encode()
        self.slow.append(request)
        return NOT_DONE_YET


@pytest.fixture
def web() -> Iterator[tuple[Host, str]]:
    host = Host()
    port = reactor.listenTCP(0, Site(host), interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        yield host, f"http://127.0.0.1:{port.getHost().port}/commands"
    finally:
        port.stopListening()


def client_for(url: str, **kwargs: Any) -> CommandClient:
    return CommandClient.for_endpoint(CommandEndpoint.parse(url), **kwargs)


@pytest_twisted.ensureDeferred
async def test_posts_the_request_and_reads_the_reply(web: tuple[Host, str]) -> None:
    host, url = web
    client = await CommandClient.connect(CommandEndpoint.parse(url))
    try:
        results = await gatherResults([client.invoke("ping", {"n": i}) for i in range(10)])
        assert results == [{"n": i} for i in range(10)]
        # Several pooled connections: requests may arrive in any order.
        assert sorted(b["payload"]["n"] for b in host.bodies) == list(range(10))
        assert all(b["command"] == "ping" and isinstance(b["id"], int) for b in host.bodies)
        assert len({b["id"] for b in host.bodies}) == 10
        assert all(h.getRawHeaders(b"content-type") == [b"application/json"] for h in host.headers)
        with pytest.raises(CommandFailure) as info:
            await client.invoke("fail", {})
        assert info.value.code == "bad_request" and info.value.diagnostic == "field 'key'"
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_errors_map_onto_the_command_errors(web: tuple[Host, str]) -> None:
    _, url = web
    client = client_for(url, max_line_length=1000)
    try:
        with pytest.raises(ProtocolError) as p:
            await client.invoke("status:413")
        assert "HTTP 413" in str(p.value) and "body too big" in str(p.value)
        with pytest.raises(TransportClosed) as t:
            await client.invoke("status:502")
        assert "HTTP 502" in str(t.value)
        with pytest.raises(ProtocolError) as g:
            await client.invoke("garbage")
        assert "not JSON" in str(g.value)
        with pytest.raises(ProtocolError) as h:
            await client.invoke("huge")
        assert "exceeds 1000 bytes" in str(h.value)
        with pytest.raises(ProtocolError):
            await client.invoke("wrong-id")
        # Still usable after all that.
        assert await client.invoke("ping", 1) == 1
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_timeout_and_close_with_requests_in_flight(web: tuple[Host, str]) -> None:
    host, url = web
    client = client_for(url)
    with pytest.raises(CommandTimeout):
        await client.invoke("slow", timeout=0.2)
    pending = [client.invoke("slow") for _ in range(3)]
    while len(host.slow) < 4:
        await _tick()
    await client.close()
    outcomes = await DeferredList(pending, consumeErrors=True)
    assert all(not ok and result.check(TransportClosed) for ok, result in outcomes)
    with pytest.raises(TransportClosed):
        await client.invoke("ping")


@pytest_twisted.ensureDeferred
async def test_connection_refused_is_transport_closed() -> None:
    client = client_for(f"http://127.0.0.1:{free_port()}/")
    try:
        with pytest.raises(TransportClosed) as info:
            await client.invoke("ping")
        assert "refused" in str(info.value).lower()
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_against_the_reference_hosts_http_face(tmp_path: Path) -> None:
    port = free_port()
    with open(tmp_path / "host.err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "containerflare.command.host", "--listen", f"tcp:127.0.0.1:{free_port()}",
             "--http", f"tcp:127.0.0.1:{port}"],
            cwd=str(ROOT), env=clean_environ(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        wait_for_port(port, proc=proc)
        client = await CommandClient.connect(CommandEndpoint.parse(f"http://127.0.0.1:{port}/"))
        try:
            kv = client.kv("KV")
            await kv.put("hits", "41", metadata={"by": "test"})
            value = await kv.get_with_metadata("hits")
            assert (value.value, value.metadata) == ("41", {"by": "test"})
            with pytest.raises(CommandFailure) as info:
                await client.invoke("kv.frobnicate", {})
            assert info.value.code == "unknown_command"
        finally:
            await client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _tick() -> None:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.01, d.callback, None)  # type: ignore[attr-defined]
    await d
