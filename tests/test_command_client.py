"""
Unit tests for L{CommandClient}: timeouts, reconnection with backoff,
waiting for a connection, cancellation, closing; in memory with a
L{task.Clock} and fake endpoints.  Every test ends with no delayed calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from containerflare.command import (
    CommandClient,
    CommandEndpoint,
    CommandError,
    CommandFailure,
    CommandRequest,
    CommandResponse,
    CommandTimeout,
    ProtocolError,
    TransportClosed,
    Unavailable,
)
from containerflare.command._client import ReconnectingTransport, StdioTransport

from .test_command_protocol import outcome, pending


class Connection:
    """
    One fake connection: the protocol (as ClientService wrapped it) and the
    transport it writes to.
    """

    def __init__(self, proto: Any, transport: StringTransport) -> None:
        self.proto = proto
        self.transport = transport
        self._read = 0
        self.lost = False

    def requests(self) -> list[dict[str, Any]]:
        data = self.transport.value()[self._read :]
        self._read += len(data)
        return [json.loads(line) for line in data.split(b"\n") if line]

    def reply(self, rid: int | None, payload: Any = None, *, ok: bool = True, diagnostic: str | None = None) -> None:
        obj: dict[str, Any] = {} if rid is None else {"id": rid}
        obj.update(ok=ok, payload=payload, diagnostic=diagnostic)
        self.proto.dataReceived(json.dumps(obj).encode() + b"\n")

    def lose(self, why: str = "host went away") -> None:
        if not self.lost:
            self.lost = True
            self.transport.loseConnection()
            self.proto.connectionLost(Failure(ConnectionLost(why)))


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    An endpoint whose connection attempts the test completes or refuses.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[Any, Deferred[Any]]] = []
        self.connections: list[Connection] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.attempts.append((factory, d))
        return d

    def accept(self) -> Connection:
        factory, d = self.attempts[-1]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        d.callback(proto)
        conn = Connection(proto, transport)
        self.connections.append(conn)
        return conn

    def refuse(self) -> None:
        _, d = self.attempts[-1]
        d.errback(ConnectionRefusedError("nobody home"))


class Harness:
    def __init__(self, timeout: float = 5.0) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint()
        self.transport = ReconnectingTransport(
            self.endpoint,
            clock=self.clock,
            description="tcp://fake:1",
            retry_policy=lambda attempt: float(attempt),
        )
        self.client = CommandClient(
            self.transport, clock=self.clock, timeout=timeout, endpoint=CommandEndpoint.parse("tcp://fake:1")
        )

    def close(self) -> None:
        d = self.client.close()
        for conn in self.endpoint.connections:
            # StringTransport never reports the loss by itself.
            conn.lose("closed")
        assert outcome(d) is None
        assert self.clock.getDelayedCalls() == []


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def test_invoke_returns_the_payload(harness: Harness) -> None:
    conn = harness.endpoint.accept()
    d = harness.client.invoke("kv.get", {"binding": "KV", "key": "k"})
    (req,) = conn.requests()
    assert req == {"id": req["id"], "command": "kv.get", "payload": {"binding": "KV", "key": "k"}}
    conn.reply(req["id"], {"value": "v", "metadata": None})
    assert outcome(d) == {"value": "v", "metadata": None}
    # The timeout was cancelled with the reply.
    assert harness.clock.getDelayedCalls() == []


def test_ok_false_is_command_failure(harness: Harness) -> None:
    conn = harness.endpoint.accept()
    d = harness.client.invoke("kv.frob", {})
    (req,) = conn.requests()
    conn.reply(req["id"], {"code": "unknown_command"}, ok=False, diagnostic="unknown command 'kv.frob'")
    failure = outcome(d)
    assert failure.check(CommandFailure)
    error = failure.value
    assert isinstance(error, CommandError)
    assert (error.command, error.diagnostic, error.payload, error.code) == (
        "kv.frob",
        "unknown command 'kv.frob'",
        {"code": "unknown_command"},
        "unknown_command",
    )
    assert "unknown_command" in str(error)


def test_send_gives_the_response_even_when_not_ok(harness: Harness) -> None:
    conn = harness.endpoint.accept()
    d = harness.client.send(CommandRequest("kv.frob"))
    (req,) = conn.requests()
    conn.reply(req["id"], {"code": "x"}, ok=False, diagnostic="no")
    assert outcome(d) == CommandResponse(False, {"code": "x"}, "no", req["id"])


def test_default_timeout(harness: Harness) -> None:
    conn = harness.endpoint.accept()
    d = harness.client.invoke("slow")
    harness.clock.advance(4.9)
    assert pending(d)
    harness.clock.advance(0.1)
    failure = outcome(d)
    assert failure.check(CommandTimeout)
    assert failure.value.timeout == 5.0 and failure.value.sent
    assert conn.transport.connected  # a timeout does not drop the connection


def test_per_call_timeout(harness: Harness) -> None:
    harness.endpoint.accept()
    d = harness.client.invoke("slow", timeout=0.5)
    harness.clock.advance(0.5)
    assert outcome(d).check(CommandTimeout)
    assert harness.clock.getDelayedCalls() == []


def test_late_reply_after_timeout_goes_to_nobody(harness: Harness) -> None:
    """
    FIFO host (no ids): the late reply to a timed-out request is discarded;
    the next caller gets its own reply.
    """
    conn = harness.endpoint.accept()
    slow = harness.client.invoke("kv.get", "slow", timeout=1)
    harness.clock.advance(1)
    assert outcome(slow).check(CommandTimeout)
    fast = harness.client.invoke("kv.get", "fast")
    conn.reply(None, "late reply for slow")
    assert pending(fast)
    conn.reply(None, "reply for fast")
    assert outcome(fast) == "reply for fast"


def test_invalid_arguments_fail_the_deferred() -> None:
    client = CommandClient.unavailable("x")
    assert outcome(client.invoke("")).check(ProtocolError)
    assert outcome(client.invoke(None)).check(ProtocolError)  # type: ignore[arg-type]
    assert outcome(client.invoke("ping", timeout=0)).check(ValueError)
    assert outcome(client.invoke("ping", timeout=float("nan"))).check(ValueError)
    assert outcome(client.invoke("ping", timeout=float("inf"))).check(ValueError)
    assert outcome(client.send("ping")).check(TypeError)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CommandClient.for_endpoint(CommandEndpoint.parse("disabled"), timeout=-1)


def test_invoke_while_disconnected_waits_for_the_connection(harness: Harness) -> None:
    d = harness.client.invoke("ping", "early")
    assert harness.transport.waiting == 1
    conn = harness.endpoint.accept()
    (req,) = conn.requests()
    assert req["payload"] == "early"
    conn.reply(req["id"], "pong")
    assert outcome(d) == "pong"


def test_invoke_while_disconnected_times_out_unsent(harness: Harness) -> None:
    harness.endpoint.refuse()
    d = harness.client.invoke("ping", timeout=2)
    harness.clock.advance(1)  # first retry (policy: 1 s)
    harness.endpoint.refuse()
    harness.clock.advance(1)
    failure = outcome(d)
    assert failure.check(CommandTimeout)
    assert not failure.value.sent
    assert "not sent" in str(failure.value)
    # Once connected, the timed-out request is not written.
    harness.clock.advance(2)
    conn = harness.endpoint.accept()
    assert conn.requests() == []


def test_reconnects_with_backoff(harness: Harness) -> None:
    assert len(harness.endpoint.attempts) == 1
    harness.endpoint.refuse()
    harness.clock.advance(0.99)
    assert len(harness.endpoint.attempts) == 1
    harness.clock.advance(0.01)
    assert len(harness.endpoint.attempts) == 2
    harness.endpoint.refuse()
    harness.clock.advance(1.99)  # second retry after 2 s
    assert len(harness.endpoint.attempts) == 2
    harness.clock.advance(0.01)
    assert len(harness.endpoint.attempts) == 3
    conn = harness.endpoint.accept()
    d = harness.client.invoke("ping")
    (req,) = conn.requests()
    conn.reply(req["id"], "up")
    assert outcome(d) == "up"


def test_connection_lost_fails_in_flight_at_once_and_reconnects(harness: Harness) -> None:
    conn = harness.endpoint.accept()
    ds = [harness.client.invoke("ping", i) for i in range(3)]
    conn.lose("host killed")
    for d in ds:
        failure = outcome(d)
        assert failure.check(TransportClosed)
        assert "host killed" in str(failure.value)
    # Commands made now wait for the reconnection (not re-sent: new ones).
    later = harness.client.invoke("ping", "later")
    harness.clock.advance(1)
    assert len(harness.endpoint.attempts) == 2
    conn2 = harness.endpoint.accept()
    (req,) = conn2.requests()
    assert req["payload"] == "later"
    conn2.reply(req["id"], "again")
    assert outcome(later) == "again"


def test_cancelling_a_waiting_invoke_frees_it(harness: Harness) -> None:
    d = harness.client.invoke("ping", "cancelled")
    keep = harness.client.invoke("ping", "kept")
    d.cancel()
    assert outcome(d).check(CancelledError)
    assert harness.transport.waiting == 1
    conn = harness.endpoint.accept()
    (req,) = conn.requests()
    assert req["payload"] == "kept"
    conn.reply(req["id"], "ok")
    assert outcome(keep) == "ok"


def test_cancelling_a_sent_invoke_discards_its_reply(harness: Harness) -> None:
    conn = harness.endpoint.accept()
    d = harness.client.invoke("ping", 1)
    d.cancel()
    assert outcome(d).check(CancelledError)
    assert harness.clock.getDelayedCalls() == []
    proto = harness.transport.protocol
    assert proto is not None and proto.abandoned == 1
    other = harness.client.invoke("ping", 2)
    conn.reply(None, "for 1")
    conn.reply(None, "for 2")
    assert outcome(other) == "for 2"
    assert proto.abandoned == 0


def test_cancelling_an_invoke_sent_after_waiting(harness: Harness) -> None:
    d = harness.client.invoke("ping", 1)
    conn = harness.endpoint.accept()
    assert len(conn.requests()) == 1
    d.cancel()
    assert outcome(d).check(CancelledError)
    assert harness.transport.protocol is not None
    assert harness.transport.protocol.abandoned == 1


def test_close_fails_everything_and_stops_reconnecting() -> None:
    h = Harness()
    h.endpoint.refuse()
    waiting = h.client.invoke("ping", "waiting")
    h.clock.advance(1)
    conn = h.endpoint.accept()
    in_flight = h.client.invoke("ping", "in flight")
    assert pending(in_flight)
    unsent = Harness()  # a second client, closed while still disconnected
    unsent_d = unsent.client.invoke("ping")
    h.close()
    unsent.close()
    for d in (in_flight, unsent_d):
        failure = outcome(d)
        assert failure.check(TransportClosed)
        assert "closed" in str(failure.value)
    assert outcome(waiting).check(TransportClosed)  # written when connected, then failed
    attempts = len(h.endpoint.attempts)
    h.clock.advance(100)
    assert len(h.endpoint.attempts) == attempts
    assert outcome(h.client.invoke("ping")).check(TransportClosed)
    assert conn.transport.disconnecting
    # Closing twice is fine.
    assert outcome(h.client.close()) is None


def test_close_does_not_hang_when_the_connection_does_not_go_away() -> None:
    h = Harness()
    conn = h.endpoint.accept()
    d = h.client.close()
    assert pending(d)
    assert conn.transport.disconnecting
    h.clock.advance(2.0)  # CLOSE_GRACE
    assert outcome(d) is None
    assert h.clock.getDelayedCalls() == []


def test_close_while_connecting() -> None:
    h = Harness()
    d = h.client.close()
    # The pending attempt was cancelled.
    assert outcome(d) is None
    assert h.clock.getDelayedCalls() == []


def test_connect_fires_once_connected() -> None:
    h = Harness()
    d = h.client._when_connected(10)
    assert pending(d)
    h.endpoint.accept()
    assert outcome(d) is h.client
    assert h.clock.getDelayedCalls() == []
    h.close()


def test_connect_fails_after_its_timeout_and_closes_the_client() -> None:
    h = Harness()
    d = h.client._when_connected(3)
    h.endpoint.refuse()
    h.clock.advance(1)
    h.endpoint.refuse()
    h.clock.advance(2)
    failure = outcome(d)
    assert failure.check(TransportClosed)
    assert "could not connect to tcp://fake:1 within 3 s" in str(failure.value)
    assert "nobody home" in str(failure.value)
    assert h.clock.getDelayedCalls() == []
    assert outcome(h.client.invoke("ping")).check(TransportClosed)


def test_unavailable_client_fails_at_once_without_io() -> None:
    client = CommandClient.unavailable("host command channel is not available on Google Cloud Run")
    d = client.invoke("kv.get", {"binding": "KV", "key": "k"})
    failure = outcome(d)
    assert failure.check(Unavailable)
    assert failure.value.reason == "host command channel is not available on Google Cloud Run"
    assert not client.available
    assert outcome(client.close()) is None


def test_disabled_endpoints_give_unavailable_clients() -> None:
    clock = Clock()
    client = CommandClient.for_endpoint(CommandEndpoint.default("cloud_run", stdin_is_tty=False), reactor=clock)
    assert outcome(client.invoke("ping")).value.reason == "host command channel is not available on Google Cloud Run"
    d = CommandClient.connect("disabled", reactor=clock)
    connected = outcome(d)
    assert isinstance(connected, CommandClient)
    assert outcome(connected.invoke("ping")).check(Unavailable)
    assert clock.getDelayedCalls() == []


class FakeStdio:
    """
    Stands in for StandardIO: connects the protocol to a StringTransport.
    """

    def __init__(self, proto: Any, reactor: Any = None) -> None:
        self.proto = proto
        self.transport = StringTransport()
        proto.makeConnection(self.transport)


def stdio_client(clock: Clock) -> tuple[CommandClient, Connection]:
    client = CommandClient.for_endpoint(CommandEndpoint.parse("stdio"), reactor=clock, timeout=5, _stdio=FakeStdio)
    transport = client._transport
    assert isinstance(transport, StdioTransport)
    stdio = transport._stdio
    return client, Connection(stdio.proto, stdio.transport)


def test_stdio_invoke_and_connect_at_once() -> None:
    clock = Clock()
    client, conn = stdio_client(clock)
    d = client.invoke("ping", "x")
    (req,) = conn.requests()
    conn.reply(req["id"], "x")
    assert outcome(d) == "x"
    connected = client._when_connected(5)
    assert outcome(connected) is client
    closing = client.close()
    assert conn.transport.disconnecting
    conn.proto.connectionLost(Failure(ConnectionLost("closed")))
    assert outcome(closing) is None
    assert clock.getDelayedCalls() == []


def test_stdio_end_of_input_fails_everything_and_does_not_reconnect() -> None:
    clock = Clock()
    client, conn = stdio_client(clock)
    ds = [client.invoke("ping", i) for i in range(3)]
    conn.proto.connectionLost(Failure(ConnectionLost("stdin closed")))
    for d in ds:
        assert outcome(d).check(TransportClosed)
    later = client.invoke("ping")
    failure = outcome(later)
    assert failure.check(TransportClosed) and "end of stdin" in str(failure.value)
    assert clock.getDelayedCalls() == []
    assert outcome(client.close()) is None


def test_typed_helper_is_reachable_from_the_client(harness: Harness) -> None:
    conn = harness.endpoint.accept()
    d = harness.client.kv("KV").get("hits")
    (req,) = conn.requests()
    assert req["command"] == "kv.get" and req["payload"] == {"binding": "KV", "key": "hits"}
    conn.reply(req["id"], {"value": "41", "metadata": None})
    assert outcome(d) == "41"


def test_endpoint_text_is_parsed() -> None:
    with pytest.raises(ValueError, match="'tcp://nowhere'"):
        CommandClient.for_endpoint("tcp://nowhere")
    failure = outcome(CommandClient.connect("junk"))
    assert failure.check(ValueError)


def test_waiting_requests_are_sent_in_order_before_new_ones() -> None:
    h = Harness()
    first = h.client.invoke("ping", 1)
    ready = h.client._when_connected(10)
    second = h.client.invoke("ping", 2)
    ready.addCallback(lambda client: client.invoke("ping", 3))
    conn = h.endpoint.accept()
    assert [r["payload"] for r in conn.requests()] == [1, 2, 3]
    for d in (first, second):
        d.addErrback(lambda f: None)
    h.close()


def test_unsendable_payload_fails_at_once_even_while_disconnected(harness: Harness) -> None:
    d = harness.client.invoke("ping", {"bad": object()})
    assert outcome(d).check(ProtocolError)
    assert harness.transport.waiting == 0
