# -*- test-case-name: tests.test_logging_correlation -*-
"""
Which request is being handled right now, so that log events can carry its
request id and trace without the request being passed around.

How it works:

  - A request of L{ContainerSite} is processed (resource traversal and
    rendering) with a L{ContextVar} holding it; L{ContainerResource.render}
    does the same for requests of other sites.  Nothing is parsed.
  - Synchronous code sees it directly, and so do coroutines started then:
    L{Deferred.fromCoroutine} / L{ensureDeferred} copy the context.
  - Plain L{Deferred} callbacks do B{not} run in the context they were added
    in (Twisted 26.10 copies the context for coroutines only): a callback
    added by a handler may fire later from the reactor (C{deferLater}, a
    network reply) where the variable is unset.  L{install} therefore wraps
    the callbacks added I{while a request is being handled} so that they run
    with that request set again.  Callbacks added outside a request are
    stored untouched; outside a request the cost is one context variable
    read per C{addCallback}.  Functions sent to Twisted's thread pool
    (C{deferToThread}, C{callInThread}) from a request get the same
    treatment: a new thread does not inherit context variables.
  - The request id and trace are resolved from the request's metadata only
    when a log event actually needs them (L{correlation_for}), once per
    request.

Known limits (documented in docs/logging.md): raw C{reactor.callLater}
calls and threads started by other means do not carry the request; a
long-lived background Deferred chain first started from inside a
request keeps that request as its scope, like a task created in a request
does with contextvars in asyncio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

from containerflare._context import ContainerContext

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

#: The request being handled in the current context, if any.
_current: ContextVar[Any] = ContextVar("containerflare_request", default=None)

current_request: Callable[[], Any] = _current.get
"""
The request being handled in this context, or L{None}.
"""


@contextmanager
def request_scope(request: IRequest) -> Iterator[None]:
    """
    Run a block as part of handling C{request}: log events emitted in it,
    and in the Deferred callbacks and coroutines it starts, are correlated
    with the request.
    """
    token = _current.set(request)
    try:
        yield
    finally:
        _current.reset(token)


def enter(request: IRequest) -> Any:
    """
    Make C{request} current; the cheap form of L{request_scope} for the hot
    path.  Pass the returned token to L{leave}.
    """
    return _current.set(request)


leave: Callable[[Any], None] = _current.reset


@frozen
class Correlation:
    """
    What ties a log event to a request.

    @ivar request_id: the request's id (the platform's, or the trace id).
    @ivar trace_id: the trace id (32 hex digits) or L{None}.
    @ivar span_id: the span id as 16 hex digits, or L{None}.
    @ivar sampled: whether the trace is sampled, or L{None} if unknown.
    @ivar project_id: the Google Cloud project the trace belongs to, when
        the request says so.
    """

    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    sampled: bool | None = None
    project_id: str | None = None


NO_CORRELATION = Correlation()

#: Stored on the request while its correlation is being computed: an event
#: logged by the metadata code itself must not recurse.
_RESOLVING = Correlation()


def correlation_for(request: IRequest) -> Correlation:
    """
    The correlation of a request, computed on first use and kept on it.

    Never raises: a request whose metadata cannot be computed is logged
    without correlation.
    """
    attrs = getattr(request, "__dict__", None)
    if attrs is not None:
        known = attrs.get("_cf_correlation")
        if known is not None:
            return known  # type: ignore[no-any-return]
        attrs["_cf_correlation"] = _RESOLVING
    try:
        found = _resolve(request)
    except Exception:
        found = NO_CORRELATION
    if attrs is not None:
        attrs["_cf_correlation"] = found
    return found


def _resolve(request: IRequest) -> Correlation:
    metadata = ContainerContext.from_request(request).metadata
    trace = metadata.trace_context
    if trace is None:
        request_id = metadata.request_id
        # The formatters write nothing for an empty correlation: the shared
        # value saves building one per request.
        return NO_CORRELATION if request_id is None else Correlation(request_id=request_id)
    return Correlation(
        request_id=metadata.request_id,
        trace_id=trace.trace_id,
        span_id=trace.span_id,
        sampled=trace.sampled,
        project_id=trace.project_id,
    )


# Deferred support -----------------------------------------------------------

_originals: dict[str, Any] = {}


def _bind(function: Any, request: Any) -> Any:
    if not callable(function):
        return function

    # No functools.wraps / __wrapped__: one more allocation per callback on
    # the request path, for introspection nobody does on these.
    def in_request(*args: Any, **kwargs: Any) -> Any:
        if _current.get() is request:
            return function(*args, **kwargs)
        token = _current.set(request)
        try:
            return function(*args, **kwargs)
        finally:
            _current.reset(token)

    return in_request


# A callback added to a Deferred that has its result, is not paused and is
# not running its callbacks already runs before addCallback returns, in the
# current scope: wrapping it would only cost time (most of Klein's, for a
# handler that answers synchronously; see bench/).  The patched methods
# below test "not (called and not paused and not _runningCallbacks)" inline:
# they run several times per request.


def _probe(add_callback: Any, add_errback: Any, add_both: Any) -> tuple[Any, Any] | None:
    """
    Whether Twisted's C{addCallback}, C{addErrback} and C{addBoth} do no more
    than append C{((callback, args, kwargs), (errback, args, kwargs))} to
    C{Deferred._callbacks} and run the callbacks if the Deferred has its
    result (Twisted 24.7 to 26.10 do): then the functions they store
    opposite a lone callback and a lone errback.  L{None} when anything
    differs, and the patch calls the originals instead.
    """

    def probe(result: object, *args: object, **kwargs: object) -> object:
        return result

    try:
        d: Deferred[Any] = Deferred()
        add_callback(d, probe, 1, k=2)
        add_errback(d, probe, 3)
        add_both(d, probe)
        (c1, e1), (c2, e2), (c3, e3) = d._callbacks
        failthru, passthru = e1[0], c2[0]
        shapes_match = (
            c1 == (probe, (1,), {"k": 2})
            and e1 == (failthru, (), {})
            and c2 == (passthru, (), {})
            and e2 == (probe, (3,), {})
            and c3 == e3 == (probe, (), {})
            and callable(failthru)
            and callable(passthru)
            and callable(d._runCallbacks)
            and d._runningCallbacks is False
        )
        # And they run: a pending Deferred fired later, one already fired.
        seen: list[object] = []
        d.callback("r")
        add_callback(d, seen.append)
        shapes_match = shapes_match and seen == ["r"]
    except Exception:  # noqa: BLE001 - anything unexpected: use the originals
        return None
    return (failthru, passthru) if shapes_match else None


def install() -> None:
    """
    Make Deferred callbacks added, and thread pool functions started, while
    a request is handled run with that request current (see the module
    docstring).  Idempotent; done by
    L{ContainerResource} when it is created.
    """
    if _originals:
        return
    get = _current.get
    add_callbacks = Deferred.addCallbacks
    add_callback = Deferred.addCallback
    add_errback = Deferred.addErrback
    add_both = Deferred.addBoth

    def addCallbacks(  # noqa: N802
        self: Deferred[Any], callback: Any, errback: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        request = get()
        if request is not None and (not self.called or self.paused or self._runningCallbacks):
            callback = _bind(callback, request)
            if errback is not None:
                errback = _bind(errback, request)
        return add_callbacks(self, callback, errback, *args, **kwargs)

    def addCallback(self: Deferred[Any], callback: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        request = get()
        if request is not None and (not self.called or self.paused or self._runningCallbacks):
            callback = _bind(callback, request)
        return add_callback(self, callback, *args, **kwargs)

    def addErrback(self: Deferred[Any], errback: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        request = get()
        if request is not None and (not self.called or self.paused or self._runningCallbacks):
            errback = _bind(errback, request)
        return add_errback(self, errback, *args, **kwargs)

    def addBoth(self: Deferred[Any], callback: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        request = get()
        if request is not None and (not self.called or self.paused or self._runningCallbacks):
            callback = _bind(callback, request)
        return add_both(self, callback, *args, **kwargs)

    halves = _probe(add_callback, add_errback, add_both)
    if halves is not None:
        # Twisted stores what these add the way _probe saw: store it here
        # directly instead of calling the original, whose second frame and
        # re-packed arguments cost more than the rest of the patch (they run
        # several times per request; see bench/).
        failthru, passthru = halves

        def addCallback(  # type: ignore[misc] # noqa: N802
            self: Deferred[Any], callback: Any, *args: Any, **kwargs: Any
        ) -> Any:
            request = get()
            if request is not None and (not self.called or self.paused or self._runningCallbacks):
                callback = _bind(callback, request)
            self._callbacks.append(((callback, args, kwargs), (failthru, (), {})))
            if self.called:
                self._runCallbacks()
            return self

        def addErrback(  # type: ignore[misc] # noqa: N802
            self: Deferred[Any], errback: Any, *args: Any, **kwargs: Any
        ) -> Any:
            request = get()
            if request is not None and (not self.called or self.paused or self._runningCallbacks):
                errback = _bind(errback, request)
            self._callbacks.append(((passthru, (), {}), (errback, args, kwargs)))
            if self.called:
                self._runCallbacks()
            return self

        def addBoth(  # type: ignore[misc] # noqa: N802
            self: Deferred[Any], callback: Any, *args: Any, **kwargs: Any
        ) -> Any:
            request = get()
            if request is not None and (not self.called or self.paused or self._runningCallbacks):
                callback = _bind(callback, request)
            self._callbacks.append(((callback, args, kwargs), (callback, args, kwargs)))
            if self.called:
                self._runCallbacks()
            return self

    call_in_thread = ThreadPool.callInThreadWithCallback

    def callInThreadWithCallback(  # noqa: N802
        self: ThreadPool, onResult: Any, func: Any, *args: Any, **kwargs: Any  # noqa: N803
    ) -> None:
        # deferToThread and callInThread land here: a new thread does not
        # inherit the caller's context variables.
        request = _current.get()
        if request is not None:
            func = _bind(func, request)
        call_in_thread(self, onResult, func, *args, **kwargs)

    for owner, name, original, patched in (
        (Deferred, "addCallbacks", add_callbacks, addCallbacks),
        (Deferred, "addCallback", add_callback, addCallback),
        (Deferred, "addErrback", add_errback, addErrback),
        (Deferred, "addBoth", add_both, addBoth),
        (ThreadPool, "callInThreadWithCallback", call_in_thread, callInThreadWithCallback),
    ):
        patched.__doc__ = original.__doc__
        patched.__wrapped__ = original  # type: ignore[attr-defined,union-attr]
        _originals[name] = (owner, original)
        setattr(owner, name, patched)


def uninstall() -> None:
    """
    Undo L{install} (for tests).
    """
    for name, (owner, original) in _originals.items():
        setattr(owner, name, original)
    _originals.clear()


def installed() -> bool:
    return bool(_originals)
