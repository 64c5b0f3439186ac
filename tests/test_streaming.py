"""
containerflare.stream: chunks written as they come, back-pressure, errors
and disconnects; driven through twisted.web's real HTTP channel in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from containerflare import stream


class FlowTransport(StringTransport):
    """
    Like a TCP transport: pauses its producer once more than C{limit} bytes
    wait to be sent; L{drain} sends them and resumes it.
    """

    def __init__(self, limit: int = 1 << 30) -> None:
        super().__init__()
        self.limit = limit
        self.paused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.limit and self.producer is not None and not self.paused:
            self.paused = True
            self.producer.pauseProducing()

    def writeSequence(self, seq) -> None:
        self.write(b"".join(seq))

    def drain(self) -> bytes:
        data = self.value()
        self.clear()
        if self.paused:
            self.paused = False
            self.producer.resumeProducing()
        return data


class Streaming(Resource):
    isLeaf = True

    def __init__(self, chunks, **kw) -> None:
        super().__init__()
        self.chunks = chunks
        self.kw = kw
        self.results: list[object] = []

    def render(self, request):
        stream(request, self.chunks, **self.kw).addBoth(self.results.append)
        return NOT_DONE_YET


def serve(resource: Resource, transport: StringTransport | None = None, method: bytes = b"GET"):
    channel = Site(resource).buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = transport or StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(method + b" / HTTP/1.1\r\nHost: example\r\n\r\n")
    return channel, transport


def body_of(raw: bytes) -> bytes:
    """
    Decode a chunked HTTP/1.1 response body.
    """
    _, _, rest = raw.partition(b"\r\n\r\n")
    out = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return out


def test_async_chunks_are_sent_as_they_come() -> None:
    """
    Each chunk reaches the transport when the iterable yields it, before the
    next exists; the response ends once the iterable does.
    """
    gates = [Deferred(), Deferred()]

    async def chunks() -> AsyncIterator[bytes | str]:
        yield b"first "
        await gates[0]
        yield "s\u00e9cond "
        yield b""
        await gates[1]
        yield b"third"

    resource = Streaming(chunks(), content_type="text/plain; charset=utf-8")
    _, transport = serve(resource)
    assert body_of(transport.value()) == b"first "
    assert b"0\r\n\r\n" not in transport.value()
    assert b"content-type: text/plain; charset=utf-8" in transport.value().lower()
    gates[0].callback(None)
    assert body_of(transport.value()) == "first s\u00e9cond ".encode()
    gates[1].callback(None)
    assert body_of(transport.value()) == "first s\u00e9cond third".encode()
    assert transport.value().endswith(b"0\r\n\r\n")
    assert resource.results == [None]


def test_back_pressure_stops_pulling_chunks() -> None:
    """
    While the transport is full the iterable is not asked for more: a large
    body is never held in memory.
    """
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(50):
            pulled.append(i)
            yield b"x" * 1000

    transport = FlowTransport(limit=4000)
    resource = Streaming(chunks())
    serve(resource, transport)
    received = b""
    rounds = 0
    while not resource.results:
        rounds += 1
        assert rounds < 100
        # Paused: at most one chunk beyond what filled the buffer was taken.
        assert len(transport.value()) <= 4000 + 1100
        assert len(pulled) <= (len(received) + len(transport.value())) // 1000 + 1
        received += transport.drain()
    received += transport.drain()
    assert rounds > 5
    assert body_of(received) == b"x" * 50_000
    assert resource.results == [None]


def test_client_disconnect_closes_the_iterable() -> None:
    """
    When the client goes away the generator is closed (its finally runs)
    and nothing more is written.
    """
    closed: list[bool] = []
    gate: Deferred[None] = Deferred()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"one"
            await gate
            yield b"two"
        finally:
            closed.append(True)

    resource = Streaming(chunks())
    channel, transport = serve(resource)
    assert body_of(transport.value()) == b"one"
    channel.connectionLost(Failure(ConnectionDone()))
    assert closed == [True]
    assert resource.results == [None]
    assert gate.called  # cancelled: nothing left waiting on it


def test_error_before_the_first_chunk_fails_the_deferred() -> None:
    def chunks() -> Iterator[bytes]:
        raise ValueError("no data")
        yield b""  # pragma: no cover

    resource = Streaming(chunks())
    serve(resource)
    [result] = resource.results
    assert isinstance(result, Failure) and result.check(ValueError)


def test_error_after_the_first_chunk_aborts_the_connection() -> None:
    """
    A body cannot be repaired once sent: the connection is aborted without
    the final chunk, so the client sees a truncated response.
    """
    gate: Deferred[None] = Deferred()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        await gate
        raise ValueError("cursor died")

    resource = Streaming(chunks())
    channel, transport = serve(resource)
    gate.callback(None)
    assert transport.disconnecting or getattr(transport, "aborted", False) or transport.disconnected
    assert not transport.value().endswith(b"0\r\n\r\n")
    assert resource.results == []  # waits for the connection to go
    channel.connectionLost(Failure(ConnectionDone()))
    assert resource.results == [None]


def test_head_does_not_run_the_iterable() -> None:
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        pulled.append(1)
        yield b"body"

    resource = Streaming(chunks())
    _, transport = serve(resource, method=b"HEAD")
    assert pulled == []
    assert resource.results == [None]
    assert transport.value().startswith(b"HTTP/1.1 200 OK")
    assert b"body" not in transport.value()
