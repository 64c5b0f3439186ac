# -*- test-case-name: tests.test_host -*-
"""
The reference host's JSON-lines server protocol and factory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from containerflare.command._host_dispatch import HostDispatcher

DEFAULT_MAX_LINE = 16 * 1024 * 1024
_HEAD = 128


@implementer(IHalfCloseableProtocol)
class HostLineProtocol(LineReceiver):
    """
    One connection to the reference host: request lines in, response lines
    out, answered one after the other as they arrive.

    L{LineReceiver}'s own framing re-scans and re-copies its whole buffer on
    every chunk and can only drop the connection on an oversized line; this
    framing scans each byte once, answers an oversized line with
    C{too_large} and skips it without buffering it, so memory stays bounded
    by C{MAX_LENGTH}.

    When the peer stops sending (end of stdin, a TCP half-close) the replies
    already written are flushed before the connection closes.
    """

    delimiter = b"\n"
    log = Logger()
    # A TCP, UNIX or stdio transport: also a producer, with .disconnecting.
    transport: Any

    def __init__(
        self,
        dispatcher: HostDispatcher,
        max_line: int = DEFAULT_MAX_LINE,
        on_lost: Callable[[Failure], Any] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.MAX_LENGTH = max_line
        self._on_lost = on_lost
        self._pending = bytearray()
        self._skipping: bytes | None = None  # head of the oversized line being skipped
        self._peer: IAddress | None = None

    def connectionMade(self) -> None:
        self._peer = self.transport.getPeer()
        self.log.debug("connection from {peer}", peer=self._peer)
        # Stop reading while the peer is not reading our replies.
        self.transport.registerProducer(self.transport, True)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.log.debug("connection from {peer} closed", peer=self._peer)
        self._pending.clear()
        if self._on_lost is not None:
            self._on_lost(reason)

    def readConnectionLost(self) -> None:
        # Everything was answered synchronously: flush and close.
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        # Nobody reads our replies any more.
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._skipping is not None:
            end = data.find(b"\n")
            if end == -1:
                return
            self.lineLengthExceeded(self._skipping)
            self._skipping = None
            data = data[end + 1 :]
        scanned = len(self._pending)
        self._pending += data
        pending = self._pending
        start = 0
        while not self.transport.disconnecting:
            end = pending.find(b"\n", max(start, scanned))
            if end == -1:
                break
            if end - start > self.MAX_LENGTH:
                self.lineLengthExceeded(bytes(pending[start : start + _HEAD]))
            else:
                self.lineReceived(bytes(pending[start:end]))
            start = end + 1
        del pending[:start]
        if len(pending) > self.MAX_LENGTH:
            self._skipping = bytes(pending[:_HEAD])
            pending.clear()

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        self.sendLine(self.dispatcher.handle_line(line))

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Answer a line over C{MAX_LENGTH} bytes; C{line} is its beginning.
        """
        self.sendLine(self.dispatcher.oversized(line, self.MAX_LENGTH))


class HostFactory(Factory):
    """
    Builds L{HostLineProtocol}s sharing one dispatcher (and so one store).
    """

    noisy = False

    def __init__(self, dispatcher: HostDispatcher, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.dispatcher = dispatcher
        self.max_line = max_line

    def buildProtocol(self, addr: IAddress | None) -> HostLineProtocol:
        protocol = HostLineProtocol(self.dispatcher, self.max_line)
        protocol.factory = self
        return protocol
