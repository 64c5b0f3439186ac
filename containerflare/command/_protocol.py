# -*- test-case-name: tests.test_command_protocol -*-
"""
The JSON-lines protocol of the command channel, for stdio, TCP and UNIX
sockets.

Each request gets an C{id}; a reply is matched by its C{id}, so replies may
come in any order.  A reply without C{id} answers the oldest request still
in its slot (FIFO, for hosts written for the reference, which has no ids).
A request whose caller gave up (timeout, cancel) keeps its slot, so its late
reply is recognised and discarded instead of being handed to the next
caller.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from containerflare.command._errors import ProtocolError, TransportClosed
from containerflare.command._messages import CommandRequest, CommandResponse, _is_id

#: Longest reply line read (bytes, without the newline).
DEFAULT_MAX_LINE = 16 * 1024 * 1024

#: Abandoned slots (timed out or cancelled, reply not yet seen) kept per
#: connection; past this the host is hopelessly behind and the connection is
#: dropped rather than risk matching a reply to the wrong caller.
DEFAULT_MAX_ABANDONED = 10_000

# How much of a bad line is kept to find its id and to log it.
_PREFIX = 256
_ID_AT_START = re.compile(rb'\A\s*\{\s*"id"\s*:\s*(\d{1,16})\s*[,}]')

_log = Logger()


class _Slot:
    """
    One request written to the host and not yet answered.

    @ivar deferred: the caller's Deferred, or L{None} once the caller gave
        up (the slot stays until the reply comes, to keep FIFO order).
    """

    __slots__ = ("command", "deferred", "id")

    def __init__(self, id: int, command: str, deferred: Deferred[CommandResponse] | None) -> None:
        self.id = id
        self.command = command
        self.deferred = deferred


class CommandProtocol(LineReceiver):
    """
    The client side of one connection to a host.

    @ivar MAX_LENGTH: the longest reply line accepted; a longer one fails
        the request it answers with L{ProtocolError} and is skipped without
        being buffered.
    """

    delimiter = b"\n"

    def __init__(
        self,
        *,
        max_line_length: int = DEFAULT_MAX_LINE,
        max_abandoned: int = DEFAULT_MAX_ABANDONED,
        ids: Iterator[int] | None = None,
        on_connected: Callable[[CommandProtocol], object] | None = None,
        on_lost: Callable[[CommandProtocol, Failure], object] | None = None,
        description: str = "host",
    ) -> None:
        self.MAX_LENGTH = max_line_length
        self._max_abandoned = max_abandoned
        self._ids = ids if ids is not None else itertools.count(1)
        self._on_connected = on_connected
        self._on_lost = on_lost
        self.description = description
        # Insertion order is send order: the first slot is the oldest.
        self._slots: dict[int, _Slot] = {}
        self._abandoned = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._discarding = False
        self._lost: str | None = None

    # -- connection ----------------------------------------------------

    def connectionMade(self) -> None:
        if self._on_connected is not None:
            self._on_connected(self)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        why = reason.getErrorMessage() if reason is not None else "connection closed"
        self._lost = f"connection to {self.description} lost: {why}"
        self._chunks = []
        if self._on_lost is not None:
            # The client forgets this connection first, so callbacks of the
            # failures below that invoke again do not come back here.
            self._on_lost(self, reason)
        self.fail_all(TransportClosed(self._lost))

    @property
    def writable(self) -> bool:
        """
        Whether requests can be written now.
        """
        return (
            bool(self.connected)
            and self._lost is None
            and self.transport is not None
            and not getattr(self.transport, "disconnecting", False)
        )

    @property
    def in_flight(self) -> int:
        """
        Requests written and still awaited by their callers.
        """
        return len(self._slots) - self._abandoned

    @property
    def abandoned(self) -> int:
        """
        Slots kept for requests whose callers gave up.
        """
        return self._abandoned

    def fail_all(self, error: Exception) -> None:
        """
        Fail every awaited request with C{error} and forget every slot.
        """
        slots = list(self._slots.values())
        self._slots.clear()
        self._abandoned = 0
        for slot in slots:
            d, slot.deferred = slot.deferred, None
            if d is not None:
                d.errback(Failure(error))

    # -- sending -------------------------------------------------------

    def send(self, request: CommandRequest) -> Deferred[CommandResponse]:
        """
        Write C{request} and wait for its reply.

        @return: a Deferred firing with the L{CommandResponse} (C{ok} true
            or false), or failing with L{TransportClosed} when the
            connection is lost first, or L{ProtocolError} when the request
            cannot be written or its reply cannot be read.  Cancelling it
            gives up on the reply (its slot stays until the reply comes).
        """
        if not self.writable:
            return fail(TransportClosed(self._lost or f"not connected to {self.description}"))
        rid = next(self._ids)
        try:
            line = request.encode(rid)
        except ProtocolError:
            return fail()
        slot = _Slot(rid, request.command, None)
        d: Deferred[CommandResponse] = Deferred(lambda _: self._abandon(slot))
        slot.deferred = d
        self._slots[rid] = slot
        self.transport.writeSequence((line, self.delimiter))  # type: ignore[union-attr]
        return d

    def _abandon(self, slot: _Slot) -> None:
        # Called by Deferred.cancel (timeouts cancel too); the Deferred then
        # fails with CancelledError.
        if slot.deferred is None or self._slots.get(slot.id) is not slot:
            return
        slot.deferred = None
        self._abandoned += 1
        if self._abandoned > self._max_abandoned:
            _log.error(
                "{count} requests to {host} abandoned without a reply; dropping the connection",
                count=self._abandoned,
                host=self.description,
            )
            self._drop()

    def _drop(self) -> None:
        transport = self.transport
        if transport is None:
            return
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()

    # -- receiving -----------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # LineReceiver's own loop hands the rest of the buffer to
        # lineLengthExceeded and loses the lines after an oversized one; this
        # one skips just the oversized line and never holds more than
        # MAX_LENGTH bytes of it.
        delimiter = self.delimiter
        start = 0
        end = len(data)
        while start < end and self._lost is None:
            index = data.find(delimiter, start)
            if self._discarding:
                if index < 0:
                    return
                self._discarding = False
                start = index + 1
                continue
            if index < 0:
                tail = data[start:] if start else data
                self._chunks.append(tail)
                self._size += len(tail)
                if self._size > self.MAX_LENGTH:
                    prefix = b"".join(self._chunks)[:_PREFIX]
                    self._chunks = []
                    self._size = 0
                    self._discarding = True
                    self.lineLengthExceeded(prefix)
                return
            piece = data[start:index]
            start = index + 1
            if self._chunks:
                size = self._size + len(piece)
                if size > self.MAX_LENGTH:
                    # The start of the line (where its id is) may be split
                    # across the held chunks and this piece: keep both.
                    line = (b"".join(self._chunks)[:_PREFIX] + piece[:_PREFIX])[:_PREFIX]
                else:
                    line = b"".join(self._chunks) + piece
                self._chunks = []
                self._size = 0
            else:
                size = len(piece)
                line = piece
            if size > self.MAX_LENGTH:
                self.lineLengthExceeded(line[:_PREFIX])
            else:
                self.lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A reply line was longer than C{MAX_LENGTH}; C{line} is its start.
        """
        self._bad_line(line, f"reply line longer than {self.MAX_LENGTH} bytes")

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        try:
            response = CommandResponse.decode(line)
        except ProtocolError as e:
            self._bad_line(line, str(e))
            return
        self._deliver(response)

    def _deliver(self, response: CommandResponse) -> None:
        rid = response.id
        if rid is None:
            slot = self._oldest()
            if slot is None:
                _log.warn(
                    "Reply without id from {host} but no request is waiting; dropped: {reply!r}",
                    host=self.description,
                    reply=_short(response),
                )
                return
        else:
            slot = self._slots.pop(rid, None)
            if slot is None:
                _log.warn(
                    "Reply with unknown id {id} from {host}; dropped",
                    id=rid,
                    host=self.description,
                )
                return
        d = self._settle(slot)
        if d is None:
            _log.info(
                "Late reply to {command} (id {id}) from {host} discarded: its caller gave up",
                command=slot.command,
                id=slot.id,
                host=self.description,
            )
            return
        d.callback(response)

    def _bad_line(self, line: bytes, why: str) -> None:
        # The request this line answers fails; which one: the id at the start
        # of the line, else the oldest (what a reply without id would have
        # answered), so the order of the ones after it is kept.
        match = _ID_AT_START.match(line[:_PREFIX])
        rid = int(match.group(1)) if match is not None else None
        if rid is not None and _is_id(rid):
            slot = self._slots.pop(rid, None)
        else:
            slot = self._oldest()
        if slot is None:
            _log.warn(
                "Unreadable reply from {host} matches no waiting request; dropped ({why})",
                host=self.description,
                why=why,
            )
            return
        d = self._settle(slot)
        _log.warn(
            "Unreadable reply from {host} for {command} (id {id}): {why}",
            host=self.description,
            command=slot.command,
            id=slot.id,
            why=why,
        )
        if d is not None:
            d.errback(Failure(ProtocolError(f"{slot.command}: {why}")))

    def _oldest(self) -> _Slot | None:
        for rid in self._slots:
            return self._slots.pop(rid)
        return None

    def _settle(self, slot: _Slot) -> Deferred[CommandResponse] | None:
        d, slot.deferred = slot.deferred, None
        if d is None:
            self._abandoned -= 1
        return d


def _short(response: CommandResponse) -> str:
    text = repr(response.to_dict())
    return text if len(text) <= 200 else text[:200] + "..."


__all__ = ["DEFAULT_MAX_ABANDONED", "DEFAULT_MAX_LINE", "CommandProtocol"]
