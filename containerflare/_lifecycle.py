# -*- test-case-name: tests.test_lifecycle -*-
"""
Start-up and shutdown hooks, and the readiness they gate.

An app declares its hooks on a L{Lifecycle}::

    lifecycle = Lifecycle()

    @lifecycle.on_startup
    async def open_pool() -> None: ...

    @lifecycle.on_shutdown(timeout=3)
    def close_pool() -> None: ...

C{twistd containerflare} finds it next to the app (see L{find_lifecycle}),
binds the port at once, answers C{503} with C{Retry-After} while the start-up
hooks run (L{Readiness}), and runs the shutdown hooks after the drain.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from attrs import define, field, frozen
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.web.iweb import IRequest

    from containerflare._context import Runtime

_log = Logger()

#: Seconds one start-up hook may take before start-up counts as failed.
DEFAULT_STARTUP_TIMEOUT = 60.0
#: Seconds one shutdown hook may take; Cloud Run kills 10 s after SIGTERM,
#: and the drain has most of that.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
#: The C{Retry-After} sent while starting, in seconds.
RETRY_AFTER = 1

HookFunction = Callable[[], Any]
_F = TypeVar("_F", bound=HookFunction)


def _hook_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"


class HookTimeout(Exception):
    """
    A hook did not finish within its timeout; it was cancelled.
    """

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"{name} did not finish within {timeout:g} s")
        self.name = name
        self.timeout = timeout


class StartupFailed(Exception):
    """
    A start-up hook raised, failed or timed out.

    @ivar hook: the hook's name (C{module.qualname}).
    @ivar reason: the L{Failure} it failed with.
    """

    def __init__(self, hook: str, reason: Failure) -> None:
        value = reason.value
        super().__init__(f"start-up hook {hook} failed: {type(value).__name__}: {value}")
        self.hook = hook
        self.reason = reason


@frozen
class Hook:
    """
    One registered hook.

    @ivar function: the zero-argument callable; it may return nothing, a
        L{Deferred} or an awaitable (C{async def} functions).
    @ivar timeout: seconds it may take, or L{None} for the lifecycle's default.
    """

    function: HookFunction
    timeout: float | None = None

    @property
    def name(self) -> str:
        return _hook_name(self.function)


def _call(function: HookFunction) -> Deferred[Any]:
    try:
        result = function()
    except Exception:  # noqa: BLE001 - any error of the user's hook is its failure
        return fail()
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    if inspect.isawaitable(result):

        async def wait(awaitable: Awaitable[Any]) -> Any:
            return await awaitable

        return Deferred.fromCoroutine(wait(result))
    return succeed(result)


def run_bounded(hook: Hook, timeout: float, clock: IReactorTime) -> Deferred[None]:
    """
    Run one hook, giving up after C{timeout} seconds.

    The returned L{Deferred} fires when the hook is done, or fails with the
    hook's error or L{HookTimeout}; it fires on time even when the hook's own
    result ignores cancellation.  A plain function runs to its end in the
    reactor thread, so it cannot be bounded: blocking work belongs in a thread.
    """
    running = _call(hook.function)
    if running.called:
        # Already done (a plain function): no timer to leave behind.
        return running.addCallback(lambda _: None)
    timer: IDelayedCall | None = None

    def cancel(_: Deferred[None]) -> None:
        if timer is not None and timer.active():
            timer.cancel()
        running.cancel()

    outcome: Deferred[None] = Deferred(cancel)

    def expired() -> None:
        if not outcome.called:
            outcome.errback(HookTimeout(hook.name, timeout))
        running.cancel()

    def finished(result: object) -> None:
        if timer is not None and timer.active():
            timer.cancel()
        if outcome.called:
            # Timed out or cancelled already; a late error is only worth a line.
            if isinstance(result, Failure) and not result.check(CancelledError):
                _log.failure("{hook} failed after it was given up on", result, hook=hook.name)
            return
        if isinstance(result, Failure):
            outcome.errback(result)
        else:
            outcome.callback(None)

    timer = clock.callLater(timeout, expired)
    running.addBoth(finished)
    return outcome


@define
class Lifecycle:
    """
    The start-up and shutdown hooks of an app.

    Start-up hooks run one after the other, in the order they were
    registered, once the port is bound and before any request reaches the
    app.  Shutdown hooks run after the in-flight requests have drained (or
    the grace period ran out), in the reverse order, before the command
    channel closes and the reactor stops.  They also run after a failed or
    interrupted start-up, so write them to cope with a half-done start-up.

    A hook is a zero-argument function, plain, C{async def}, or returning a
    L{Deferred}.  Each is bounded by its own timeout.

    @ivar startup_timeout: default seconds per start-up hook.
    @ivar shutdown_timeout: default seconds per shutdown hook.
    @ivar runtime: the process's runtime (settings, command client, clock,
        readiness) once C{twistd containerflare} has started, else L{None}.
        Hooks may use C{lifecycle.runtime.command_client}.
    """

    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    startup_hooks: list[Hook] = field(factory=list, init=False)
    shutdown_hooks: list[Hook] = field(factory=list, init=False)
    runtime: Runtime | None = field(default=None, init=False, repr=False)

    @overload
    def on_startup(self, function: _F) -> _F: ...

    @overload
    def on_startup(self, *, timeout: float | None = None) -> Callable[[_F], _F]: ...

    def on_startup(
        self, function: _F | None = None, *, timeout: float | None = None
    ) -> _F | Callable[[_F], _F]:
        """
        Register a start-up hook: C{@lifecycle.on_startup} or
        C{@lifecycle.on_startup(timeout=120)}.  Returns the function unchanged.
        """
        return self._register(self.startup_hooks, function, timeout)

    @overload
    def on_shutdown(self, function: _F) -> _F: ...

    @overload
    def on_shutdown(self, *, timeout: float | None = None) -> Callable[[_F], _F]: ...

    def on_shutdown(
        self, function: _F | None = None, *, timeout: float | None = None
    ) -> _F | Callable[[_F], _F]:
        """
        Register a shutdown hook: C{@lifecycle.on_shutdown} or
        C{@lifecycle.on_shutdown(timeout=2)}.  Returns the function unchanged.
        """
        return self._register(self.shutdown_hooks, function, timeout)

    def _register(
        self, hooks: list[Hook], function: _F | None, timeout: float | None
    ) -> _F | Callable[[_F], _F]:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")

        def register(fn: _F) -> _F:
            if not callable(fn):
                raise TypeError(f"a hook must be callable, got {fn!r}")
            hooks.append(Hook(fn, timeout))
            return fn

        if function is None:
            return register
        return register(function)

    def startup(self, clock: IReactorTime | None = None) -> Deferred[None]:
        """
        Run the start-up hooks in order; stop at the first that fails.

        @param clock: for the timeouts; the global reactor when L{None}.
        @return: a L{Deferred} that fails with L{StartupFailed} naming the
            hook (cancelling it cancels the running hook).
        """
        return Deferred.fromCoroutine(self._startup(_clock(clock)))

    async def _startup(self, clock: IReactorTime) -> None:
        for hook in self.startup_hooks:
            timeout = hook.timeout if hook.timeout is not None else self.startup_timeout
            _log.info("Running start-up hook {hook}", hook=hook.name)
            started = time.monotonic()
            try:
                await run_bounded(hook, timeout, clock)
            except CancelledError:
                _log.info("Start-up hook {hook} cancelled", hook=hook.name)
                raise
            except Exception:  # noqa: BLE001 - reported with the hook's name
                raise StartupFailed(hook.name, Failure()) from None
            _log.debug(
                "Start-up hook {hook} done in {seconds:.3f} s",
                hook=hook.name,
                seconds=time.monotonic() - started,
            )

    def shutdown(self, clock: IReactorTime | None = None) -> Deferred[None]:
        """
        Run every shutdown hook, last registered first, each bounded by its
        timeout; errors and timeouts are logged and the next hook runs.

        @return: a L{Deferred} that always succeeds.
        """
        return Deferred.fromCoroutine(self._shutdown(_clock(clock)))

    async def _shutdown(self, clock: IReactorTime) -> None:
        for hook in reversed(self.shutdown_hooks):
            timeout = hook.timeout if hook.timeout is not None else self.shutdown_timeout
            _log.info("Running shutdown hook {hook}", hook=hook.name)
            try:
                await run_bounded(hook, timeout, clock)
            except Exception:  # noqa: BLE001 - logged; the next hook still runs
                _log.failure("Shutdown hook {hook} failed", Failure(), hook=hook.name)


def _clock(clock: IReactorTime | None) -> IReactorTime:
    if clock is None:
        from twisted.internet import reactor

        return reactor  # type: ignore[return-value]
    return clock


class Readiness:
    """
    Whether the app serves requests yet: C{starting} until the start-up hooks
    are done, then C{ready}, then C{stopping} once shutdown begins; C{failed}
    when a start-up hook failed.

    Handlers see it as C{ContainerContext.from_request(request).readiness}.
    """

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"

    def __init__(self, state: str = STARTING) -> None:
        self._state = state
        self._was_ready = state == self.READY
        # What .serving says, kept up to date by _settle: read per request.
        self._serving = self._was_ready
        self._waiting: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<Readiness {self._state}>"

    @property
    def state(self) -> str:
        """
        C{starting}, C{ready}, C{stopping} or C{failed}.
        """
        return self._state

    @property
    def ready(self) -> bool:
        """
        Whether requests reach the app now.  Requests still in flight while
        stopping are served, but a health check says no.
        """
        return self._state == self.READY

    @property
    def serving(self) -> bool:
        """
        Whether a request reaching the site now goes to the app (ready, or
        stopping with the request on a connection still being drained).
        """
        return self._serving

    def when_ready(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once ready (at once if ready now).  It fails
        with L{RuntimeError} if start-up fails or shutdown begins first.
        """
        if self._state == self.READY:
            return succeed(None)
        if self._state != self.STARTING:
            return fail(RuntimeError(f"not ready: {self._state}"))
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def _settle(self, state: str) -> None:
        if self._state == state:
            return
        was_starting = self._state == self.STARTING
        self._state = state
        # An app interrupted while starting never serves.
        self._serving = self._was_ready and state in (self.READY, self.STOPPING)
        if was_starting:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                if state == self.READY:
                    d.callback(None)
                else:
                    d.errback(RuntimeError(f"not ready: {state}"))

    def mark_ready(self) -> None:
        if self._state == self.STARTING:
            self._was_ready = True
            self._settle(self.READY)

    def mark_failed(self) -> None:
        self._settle(self.FAILED)

    def mark_stopping(self) -> None:
        if self._state != self.FAILED:
            self._settle(self.STOPPING)


def _json(request: IRequest, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    if code == 503:
        request.setHeader(b"retry-after", str(RETRY_AFTER).encode())
    data = json.dumps(body).encode() + b"\n"
    request.setHeader(b"content-length", str(len(data)).encode())
    return b"" if request.method == b"HEAD" else data


class HealthResource(Resource):
    """
    The optional built-in health path: C{200 {"status": "ready"}} once the
    start-up hooks are done, C{503} with C{Retry-After} while starting,
    stopping or failed.  Any method is answered; HEAD gets no body.
    """

    isLeaf = True

    def __init__(self, readiness: Readiness | None) -> None:
        super().__init__()
        self.readiness = readiness

    def render(self, request: IRequest) -> bytes:
        state = Readiness.READY if self.readiness is None else self.readiness.state
        return _json(request, 200 if state == Readiness.READY else 503, {"status": state})


class NotReadyResource(Resource):
    """
    What a request gets while the app is starting (or failed to start):
    C{503 Service Unavailable} with C{Retry-After}.
    """

    isLeaf = True

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render(self, request: IRequest) -> bytes:
        state = self.readiness.state
        message = (
            "the app is starting; retry shortly"
            if state == Readiness.STARTING
            else "the app failed to start"
        )
        return _json(request, 503, {"status": state, "error": message})


def gate(
    readiness: Readiness | None, health_path: bytes | None, request: IRequest
) -> IResource | None:
    """
    The resource answering C{request} instead of the app, if any: the health
    path, or a 503 while not serving.
    """
    if health_path is not None and request.path == health_path:
        return HealthResource(readiness)
    if readiness is not None and not readiness.serving:
        return NotReadyResource(readiness)
    return None


def check_health_path(path: str) -> bytes:
    """
    Validate a health path (C{/healthz}).

    @raise ValueError: it does not start with C{/} or has a query, fragment
        or whitespace.
    """
    if not path.startswith("/"):
        raise ValueError(f"the health path must start with '/', got {path!r}")
    if any(c in path for c in "?# \t\r\n"):
        raise ValueError(f"the health path must be a plain path, got {path!r}")
    return path.encode("utf-8")


def find_lifecycle(spec: str, resource: object = None) -> Lifecycle | None:
    """
    The L{Lifecycle} of the app C{--app SPEC} names, looked up (after
    L{containerflare._tap.load_app} imported it) in this order:

      1. the named object's C{lifecycle} attribute (C{app.lifecycle = Lifecycle()});
      2. the C{lifecycle} attribute of the resource made from it (what a
         factory returned);
      3. the name C{lifecycle} in the namespace holding the named object,
         then in each enclosing one up to the module (C{mymodule.lifecycle}
         for C{--app mymodule:app}).

    Values of other types under that name are ignored.
    """
    if ":" in spec:
        module_name, _, attr_path = spec.partition(":")
    else:
        module_name, _, attr_path = spec.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None:
        module = importlib.import_module(module_name)
    chain: list[object] = [module]
    for part in attr_path.split("."):
        chain.append(getattr(chain[-1], part))
    candidates: Iterable[object] = [chain[-1], resource, *reversed(chain[:-1])]
    for holder in candidates:
        if holder is None:
            continue
        found = getattr(holder, "lifecycle", None)
        if isinstance(found, Lifecycle):
            return found
    return None
