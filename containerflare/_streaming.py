# -*- test-case-name: tests.test_streaming -*-
"""
Streaming a response body piece by piece, with back-pressure.

A handler may always call C{request.write} itself; L{stream} adds the
chores: it writes each chunk of an (async) iterable as it comes, waits
while the client's socket is full (so a large body is never held in
memory), stops the iterable when the client goes away, and finishes the
request.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Union

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

_log = Logger()

Chunk = Union[bytes, str]  # noqa: UP007 - a runtime alias on Python 3.10


@implementer(IPushProducer)
class _Producer:
    """
    Paused by the transport when the client reads slower than we write.
    """

    def __init__(self) -> None:
        self._resumed: Deferred[None] | None = None
        self.stopped = False

    def pauseProducing(self) -> None:
        if self._resumed is None:
            self._resumed = Deferred()

    def resumeProducing(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.callback(None)

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumeProducing()

    async def wait(self) -> None:
        if self._resumed is not None:
            await self._resumed


def stream(
    request: IRequest,
    chunks: AsyncIterable[Chunk] | Iterable[Chunk],
    *,
    content_type: bytes | str | None = None,
) -> Deferred[None]:
    """
    Write C{chunks} to C{request} as they come, then finish it.

    From a Klein handler, C{return stream(request, chunks())}; from a plain
    resource, call it and return C{NOT_DONE_YET}.  Each chunk is written
    (and sent, chunked) as soon as the iterable yields it; C{str} chunks are
    encoded as UTF-8 and empty ones skipped.  While the client's socket is
    full the iterable is not asked for more.  If the client disconnects (or
    the returned L{Deferred} is cancelled) the iterable is closed.

    An exception from the iterable before the first chunk fails the
    returned L{Deferred} (Klein answers 500); after it, the response cannot
    be repaired: the error is logged and the connection aborted, so that the
    client sees a truncated body rather than a complete-looking one.

    @param content_type: sets C{Content-Type} if given.
    @return: a L{Deferred} that fires with L{None} once the request is
        finished or the client is gone.
    """
    if content_type is not None:
        if isinstance(content_type, str):
            content_type = content_type.encode("ascii")
        request.setHeader(b"content-type", content_type)
    gone: list[Failure] = []
    finished: Deferred[None] = request.notifyFinish()  # type: ignore[attr-defined]
    streaming = Deferred.fromCoroutine(_stream(request, chunks))

    def lost(reason: Failure) -> None:
        # Interrupts whatever the stream awaits (the iterable included).
        gone.append(reason)
        streaming.cancel()

    def cancelled(reason: Failure) -> None:
        # Cancelled because the client left: not an error.  Anything else is.
        if not gone:
            reason.raiseException()
        reason.trap(CancelledError)

    finished.addErrback(lost)
    return streaming.addErrback(cancelled)


async def _stream(request: IRequest, chunks: AsyncIterable[Chunk] | Iterable[Chunk]) -> None:
    producer = _Producer()
    request.registerProducer(producer, True)  # type: ignore[attr-defined]
    iterator: AsyncIterator[Chunk] | Iterator[Chunk]
    if isinstance(chunks, AsyncIterable):
        iterator = chunks.__aiter__()
    else:
        iterator = iter(chunks)
    wrote = False
    # A HEAD response has no body: do not run the iterable for nothing.
    if request.method == b"HEAD":
        producer.stopProducing()
    try:
        while not producer.stopped:
            try:
                if isinstance(iterator, AsyncIterator):
                    chunk = await iterator.__anext__()
                else:
                    chunk = next(iterator)
            except (StopAsyncIteration, StopIteration):
                break
            except CancelledError:
                raise
            except Exception:
                if not wrote:
                    raise
                _log.failure("Streamed response failed after its first chunk; aborting the connection")
                _abort(request)
                # Cancelled once the connection is gone.
                await Deferred()
                return
            if producer.stopped:
                break
            data = chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
            if not data:
                continue
            request.write(data)
            wrote = True
            await producer.wait()
    finally:
        await _close(iterator)
        # Twisted drops request.channel once the client is gone.
        if _connected(request):
            request.unregisterProducer()  # type: ignore[attr-defined]
    if _connected(request) and not request.finished:  # type: ignore[attr-defined]
        request.finish()


def _connected(request: IRequest) -> bool:
    return not getattr(request, "_disconnected", False) and getattr(request, "channel", None) is not None


def _abort(request: IRequest) -> None:
    channel: Any = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if transport is not None:
        transport.abortConnection()


async def _close(iterator: Any) -> None:
    # Let the generator run its finally blocks (release a cursor, a file).
    try:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
            return
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    except Exception:  # noqa: BLE001 - the user's generator; logged
        _log.failure("Closing the streamed iterable failed")
