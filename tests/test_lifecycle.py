"""
Lifecycle hooks, readiness and the gate in front of the app, in memory
(the real-process side is in test_lifecycle_process.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from containerflare import (
    HookTimeout,
    Lifecycle,
    Readiness,
    RuntimeConfig,
    StartupFailed,
)
from containerflare._context import Runtime
from containerflare._lifecycle import check_health_path, find_lifecycle
from containerflare._service import ContainerService
from containerflare._site import ContainerResource
from containerflare.command import CommandClient
from tests._process import ROOT

APPS = ROOT / "tests" / "apps"


def result_of(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


# --- declaring hooks ---------------------------------------------------------


def test_decorators_register_and_return_the_function() -> None:
    lifecycle = Lifecycle()

    def a() -> None: ...

    async def b() -> None: ...

    assert lifecycle.on_startup(a) is a
    assert lifecycle.on_startup(timeout=3)(b) is b
    assert lifecycle.on_shutdown(a) is a
    assert [(h.function, h.timeout) for h in lifecycle.startup_hooks] == [(a, None), (b, 3)]
    assert [h.name for h in lifecycle.shutdown_hooks] == [f"{__name__}.{a.__qualname__}"]


@pytest.mark.parametrize("timeout", [0, -1])
def test_timeouts_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Lifecycle().on_startup(timeout=timeout)


def test_hooks_must_be_callable() -> None:
    with pytest.raises(TypeError):
        Lifecycle().on_shutdown(42)  # type: ignore[call-overload]


# --- start-up ----------------------------------------------------------------


def test_startup_runs_hooks_in_order_one_at_a_time() -> None:
    clock = Clock()
    lifecycle = Lifecycle()
    calls: list[str] = []
    pending: Deferred[None] = Deferred()

    @lifecycle.on_startup
    def plain() -> None:
        calls.append("plain")

    @lifecycle.on_startup
    def deferred() -> Deferred[None]:
        calls.append("deferred")
        return pending

    @lifecycle.on_startup
    async def coroutine() -> None:
        calls.append("coroutine")

    done = lifecycle.startup(clock)
    assert calls == ["plain", "deferred"]
    assert not done.called
    pending.callback(None)
    assert calls == ["plain", "deferred", "coroutine"]
    assert result_of(done) is None
    assert clock.getDelayedCalls() == []


def test_startup_stops_at_the_first_failure() -> None:
    lifecycle = Lifecycle()
    calls: list[str] = []

    @lifecycle.on_startup
    async def broken() -> None:
        raise OSError("no database")

    @lifecycle.on_startup
    def later() -> None:
        calls.append("later")

    failure = result_of(lifecycle.startup(Clock()))
    assert isinstance(failure, Failure) and failure.check(StartupFailed)
    error = failure.value
    assert error.hook == f"{__name__}.{broken.__qualname__}"
    assert error.reason.check(OSError)
    assert str(error) == f"start-up hook {error.hook} failed: OSError: no database"
    assert calls == []


def test_startup_hook_timeout_cancels_it() -> None:
    clock = Clock()
    lifecycle = Lifecycle(startup_timeout=10)
    hook_result: Deferred[None] = Deferred()
    lifecycle.on_startup(lambda: hook_result)

    done = lifecycle.startup(clock)
    clock.advance(9.9)
    assert not done.called
    clock.advance(0.1)
    failure = result_of(done)
    assert failure.check(StartupFailed)
    assert failure.value.reason.check(HookTimeout)
    assert hook_result.called  # cancelled
    assert clock.getDelayedCalls() == []


def test_a_hook_that_ignores_cancellation_is_still_bounded() -> None:
    clock = Clock()
    lifecycle = Lifecycle()
    forever: Deferred[None] = Deferred()

    @lifecycle.on_startup(timeout=1)
    async def stubborn() -> None:
        try:
            await Deferred()
        except CancelledError:
            await forever  # keeps going after being cancelled

    done = lifecycle.startup(clock)
    clock.advance(1)
    assert result_of(done).value.reason.check(HookTimeout)
    forever.callback(None)  # finishing late is harmless


def test_cancelling_startup_cancels_the_running_hook() -> None:
    clock = Clock()
    lifecycle = Lifecycle()
    running: Deferred[None] = Deferred()
    lifecycle.on_startup(lambda: running)
    done = lifecycle.startup(clock)
    done.cancel()
    assert result_of(done).check(CancelledError)
    assert running.called
    assert clock.getDelayedCalls() == []


# --- shutdown ----------------------------------------------------------------


def test_shutdown_runs_every_hook_in_reverse_order_whatever_happens() -> None:
    clock = Clock()
    lifecycle = Lifecycle(shutdown_timeout=2)
    calls: list[str] = []

    @lifecycle.on_shutdown
    def first() -> None:
        calls.append("first")

    @lifecycle.on_shutdown
    def hangs() -> Deferred[None]:
        calls.append("hangs")
        return Deferred()

    @lifecycle.on_shutdown
    async def raises() -> None:
        calls.append("raises")
        raise RuntimeError("already closed")

    done = lifecycle.shutdown(clock)
    assert calls == ["raises", "hangs"]
    clock.advance(2)
    assert calls == ["raises", "hangs", "first"]
    assert result_of(done) is None
    assert clock.getDelayedCalls() == []


# --- readiness ---------------------------------------------------------------


def test_readiness_states() -> None:
    readiness = Readiness()
    waiting = readiness.when_ready()
    assert (readiness.state, readiness.ready, readiness.serving) == ("starting", False, False)
    readiness.mark_ready()
    assert result_of(waiting) is None
    assert (readiness.state, readiness.ready, readiness.serving) == ("ready", True, True)
    readiness.mark_stopping()
    # In-flight requests are still served while draining; health says no.
    assert (readiness.state, readiness.ready, readiness.serving) == ("stopping", False, True)


def test_stopping_before_ready_never_serves() -> None:
    readiness = Readiness()
    waiting = readiness.when_ready()
    readiness.mark_stopping()
    assert not readiness.serving
    assert result_of(waiting).check(RuntimeError)
    readiness.mark_ready()
    assert readiness.state == "stopping"


def test_failed_readiness() -> None:
    readiness = Readiness()
    readiness.mark_failed()
    readiness.mark_stopping()
    assert readiness.state == "failed"
    assert result_of(readiness.when_ready()).check(RuntimeError)


# --- the gate in front of the app --------------------------------------------


def gated(readiness: Readiness | None, health_path: bytes | None = b"/healthz") -> StubTreq:
    app = Klein()

    @app.route("/")
    def index(request: Any) -> bytes:
        return b"app"

    runtime = Runtime(RuntimeConfig.from_environ({}), CommandClient.unavailable("test"), Clock(), readiness)
    return StubTreq(ContainerResource(app.resource(), runtime, health_path=health_path))


def answer(treq: StubTreq, path: str, method: str = "GET") -> tuple[int, dict[str, list[bytes]], bytes]:
    response = result_of(treq.request(method, "http://example" + path))
    body = result_of(response.content())
    return response.code, dict(response.headers.getAllRawHeaders()), body


def test_requests_get_503_until_ready() -> None:
    readiness = Readiness()
    treq = gated(readiness)
    code, headers, body = answer(treq, "/")
    assert code == 503
    assert headers[b"Retry-After"] == [b"1"]
    assert b'"status": "starting"' in body
    assert answer(treq, "/healthz")[0] == 503
    readiness.mark_ready()
    assert answer(treq, "/")[::2] == (200, b"app")
    code, headers, body = answer(treq, "/healthz")
    assert (code, body) == (200, b'{"status": "ready"}\n')
    assert headers[b"Content-Type"] == [b"application/json"]
    readiness.mark_stopping()
    assert answer(treq, "/healthz")[::2] == (503, b'{"status": "stopping"}\n')
    assert answer(treq, "/")[::2] == (200, b"app")


def test_failed_start_answers_503() -> None:
    readiness = Readiness()
    readiness.mark_failed()
    code, _, body = answer(gated(readiness), "/")
    assert code == 503 and b"failed to start" in body


def test_no_health_path_leaves_the_app_alone() -> None:
    treq = gated(None, health_path=None)
    assert answer(treq, "/")[::2] == (200, b"app")
    assert answer(treq, "/healthz")[0] == 404


def test_health_path_on_a_resource_tree() -> None:
    root = Resource()
    runtime = Runtime(RuntimeConfig.from_environ({}), CommandClient.unavailable("t"), Clock(), Readiness())
    treq = StubTreq(ContainerResource(root, runtime, health_path=b"/deep/health"))
    assert answer(treq, "/deep/health")[::2] == (503, b'{"status": "starting"}\n')
    assert answer(treq, "/deep/health", "HEAD")[::2] == (503, b"")


@pytest.mark.parametrize("path", ["healthz", "/h?x=1", "/a b", "/h#x"])
def test_bad_health_paths(path: str) -> None:
    with pytest.raises(ValueError):
        check_health_path(path)


# --- finding the lifecycle ----------------------------------------------------


@pytest.fixture
def apps_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(APPS))


def test_find_lifecycle(apps_on_path: None) -> None:
    import lifecycle_app

    assert find_lifecycle("lifecycle_app:app") is lifecycle_app.lifecycle
    assert find_lifecycle("lifecycle_app.app") is lifecycle_app.lifecycle
    # On the named object itself, and in the class holding it.
    assert find_lifecycle("lifecycle_app:broken") is lifecycle_app.broken.lifecycle
    assert find_lifecycle("lifecycle_app:hanging.app") is lifecycle_app.Hanging.lifecycle


def test_find_lifecycle_on_a_factory_result(apps_on_path: None) -> None:
    resource = Resource()
    resource.lifecycle = Lifecycle()  # type: ignore[attr-defined]
    assert find_lifecycle("runtime_app:factory", resource) is resource.lifecycle
    assert find_lifecycle("runtime_app:factory") is None


def test_options_find_the_lifecycle_and_check_the_health_path(
    apps_on_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from containerflare._tap import Options

    monkeypatch.chdir(APPS)
    monkeypatch.delenv("CONTAINERFLARE_HEALTH_PATH", raising=False)
    options = Options()
    options.parseOptions(["--app", "lifecycle_app:app", "--health-path", "/ready"])
    assert options["lifecycle"] is sys.modules["lifecycle_app"].lifecycle
    assert options["health-path"] == "/ready"
    with pytest.raises(usage.UsageError, match="--health-path: the health path must start"):
        Options().parseOptions(["--app", "lifecycle_app:app", "--health-path", "ready"])
    monkeypatch.setenv("CONTAINERFLARE_HEALTH_PATH", "/from-env")
    options = Options()
    options.parseOptions(["--app", "runtime_app:app"])
    assert options["health-path"] == "/from-env"
    assert options["lifecycle"] is None


# --- the service ---------------------------------------------------------------


class RecordingClient:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def close(self) -> Deferred[None]:
        self.calls.append("command client closed")
        return succeed(None)


def service_with(
    lifecycle: Lifecycle | None, freeze_heap: Callable[[], None] | None = None
) -> tuple[ContainerService, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    service = ContainerService(
        Klein().resource(),
        RuntimeConfig.from_environ({}),
        endpoint="tcp:8080",
        command_endpoint="disabled",
        lifecycle=lifecycle,
        health_path="/healthz",
        reactor=reactor,
        freeze_heap=freeze_heap,
    )
    return service, reactor


def test_service_gates_readiness_on_startup_hooks() -> None:
    lifecycle = Lifecycle()
    started: Deferred[None] = Deferred()
    lifecycle.on_startup(lambda: started)
    service, reactor = service_with(lifecycle)
    service.startService()
    assert reactor.tcpServers  # listening already
    runtime = service.runtime
    assert runtime is not None and runtime.readiness is not None
    assert runtime.readiness.state == "starting"
    assert lifecycle.runtime is runtime
    started.callback(None)
    assert runtime.readiness.state == "ready"
    assert service.exit_status == 0
    result_of(service.stopService())


def test_service_freezes_the_heap_once_ready() -> None:
    """
    The start-up heap is frozen when the service is ready: after the
    start-up hooks (which may load what the app keeps), once.
    """
    states: list[str] = []
    lifecycle = Lifecycle()
    started: Deferred[None] = Deferred()
    lifecycle.on_startup(lambda: started)

    def freeze() -> None:
        assert service.runtime is not None and service.runtime.readiness is not None
        states.append(service.runtime.readiness.state)

    service, _ = service_with(lifecycle, freeze)
    service.startService()
    assert states == []
    started.callback(None)
    assert states == ["ready"]
    result_of(service.stopService())
    assert states == ["ready"]

    without_hooks, _ = service_with(None, lambda: states.append("no hooks"))
    without_hooks.startService()
    assert states == ["ready", "no hooks"]
    result_of(without_hooks.stopService())


def test_service_does_not_freeze_when_startup_fails() -> None:
    frozen: list[bool] = []
    lifecycle = Lifecycle()
    lifecycle.on_startup(lambda: 1 / 0)
    service, _ = service_with(lifecycle, lambda: frozen.append(True))
    service.startService()
    assert service.exit_status == 1
    assert frozen == []


def test_service_failed_startup_stops_the_reactor_with_status_1() -> None:
    lifecycle = Lifecycle()
    lifecycle.on_startup(lambda: 1 / 0)
    service, reactor = service_with(lifecycle)
    service.startService()
    assert service.exit_status == 1
    assert service.runtime is not None and service.runtime.readiness is not None
    assert service.runtime.readiness.state == "failed"
    assert not reactor.hasStopped
    reactor.run()  # runs the callWhenRunning hooks, then stops
    assert reactor.hasStopped


def test_service_shutdown_order() -> None:
    """
    Readiness says stopping at once; shutdown hooks run after the drain and
    before the command client closes.
    """
    calls: list[str] = []
    lifecycle = Lifecycle()
    lifecycle.on_startup(lambda: None)
    service, _ = service_with(lifecycle)
    service.startService()
    runtime = service.runtime
    assert runtime is not None and runtime.readiness is not None and service.site is not None
    runtime.command_client = RecordingClient(calls)  # type: ignore[assignment]
    site = service.site
    drain = site.drain

    def recording_drain(grace: float) -> Deferred[None]:
        calls.append(f"drain, readiness {runtime.readiness.state}")  # type: ignore[union-attr]
        return drain(grace)

    site.drain = recording_drain  # type: ignore[method-assign]
    lifecycle.on_shutdown(lambda: calls.append("shutdown hook"))
    result_of(service.stopService())
    assert calls == ["drain, readiness stopping", "shutdown hook", "command client closed"]


def test_service_stopped_while_starting_is_not_a_failure() -> None:
    lifecycle = Lifecycle()
    hook: Deferred[None] = Deferred()
    lifecycle.on_startup(lambda: hook)
    service, reactor = service_with(lifecycle)
    service.startService()
    result_of(service.stopService())
    assert hook.called  # cancelled
    assert service.exit_status == 0
    assert reactor.getDelayedCalls() == []
