"""
Request correlation of log events: the request id and trace of the request
being handled reach events logged by handler code, through synchronous code,
plain Deferred callbacks fired later by the reactor, network replies,
coroutines and the logging module, and never those of another request.
"""

from __future__ import annotations

import io
import json
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import treq
from treq.client import HTTPClient
from klein import Klein
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger, globalLogPublisher
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from containerflare import RuntimeConfig
from containerflare import _correlation
from containerflare._context import Runtime, attach
from containerflare._correlation import (
    correlation_for,
    current_request,
    request_scope,
)
from containerflare._logging import StdlibBridge, make_observer
from containerflare._site import ContainerResource, ContainerSite
from containerflare.command import CommandClient

CLOUD_RUN = {
    "K_SERVICE": "svc",
    "K_REVISION": "svc-00001",
    "GOOGLE_CLOUD_PROJECT": "my-project",
    "CONTAINERFLARE_LOG_FORMAT": "json",
}

log = Logger(namespace="tests.app")
stdlib_log = logging.getLogger("tests.correlation.app")


#: The real probe (the fixture below replaces it for half of the runs).
_probe = _correlation._probe


@pytest.fixture(autouse=True, params=["inlined", "calling-originals"])
def _installed(request: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Every test runs with both forms of the Deferred patch: the one storing
    # callbacks itself (what runs on the Twisted versions _probe knows) and
    # the fallback that calls Twisted's methods.
    was = _correlation.installed()
    _correlation.uninstall()
    if request.param == "calling-originals":
        monkeypatch.setattr(_correlation, "_probe", lambda *functions: None)
    _correlation.install()
    yield
    _correlation.uninstall()
    monkeypatch.undo()
    if was:
        _correlation.install()


def test_probe_knows_the_installed_twisted() -> None:
    """
    The inlined form is what runs with the Twisted this project installs.
    """
    _, add_callback = _correlation._originals["addCallback"]
    halves = _probe(
        add_callback, _correlation._originals["addErrback"][1], _correlation._originals["addBoth"][1]
    )
    assert halves is not None
    assert all(callable(h) for h in halves)


def test_probe_refuses_methods_that_store_differently() -> None:
    def add_callback(d: Deferred[Any], callback: Any, *args: Any, **kwargs: Any) -> Any:
        d._callbacks.append(((callback, args, kwargs), (callback, args, kwargs)))
        return d

    def add_other(d: Deferred[Any], function: Any, *args: Any, **kwargs: Any) -> Any:
        return d.addCallbacks(function, function)

    assert _probe(add_callback, add_other, add_other) is None
    assert _probe(None, None, None) is None


def _request(headers: dict[bytes, bytes], config: RuntimeConfig, clock: Any = None) -> Any:
    request = Request(DummyChannel())
    request.method, request.uri, request.path = b"GET", b"/", b"/"
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name, [value])
    runtime = Runtime(config, CommandClient.unavailable("test"), clock or Clock())
    attach(request, runtime)
    return request


# Parsing the trace of a request -----------------------------------------------


def test_trace_from_x_cloud_trace_context() -> None:
    config = RuntimeConfig.from_environ(CLOUD_RUN)
    request = _request(
        {b"x-cloud-trace-context": b"0123456789abcdef0123456789ABCDEF/123;o=1"}, config
    )
    found = correlation_for(request)
    assert found.trace_id == "0123456789abcdef0123456789abcdef"
    assert found.span_id == "%016x" % 123
    assert found.sampled is True
    # Computed once per request.
    assert correlation_for(request) is found


def test_trace_from_traceparent() -> None:
    config = RuntimeConfig.from_environ(CLOUD_RUN)
    request = _request(
        {b"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}, config
    )
    found = correlation_for(request)
    assert found.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert found.span_id == "00f067aa0ba902b7"
    assert found.sampled is False


def test_no_trace_headers() -> None:
    config = RuntimeConfig.from_environ(CLOUD_RUN)
    found = correlation_for(_request({}, config))
    assert found.trace_id is None
    assert found.span_id is None


def test_malformed_trace_header_is_ignored() -> None:
    config = RuntimeConfig.from_environ(CLOUD_RUN)
    found = correlation_for(_request({b"x-cloud-trace-context": b"not a trace"}, config))
    assert found.trace_id is None


def test_json_line_of_an_event_in_a_request() -> None:
    config = RuntimeConfig.from_environ(CLOUD_RUN)
    request = _request(
        {b"x-cloud-trace-context": b"0123456789abcdef0123456789abcdef/5;o=1"}, config
    )
    out = io.StringIO()
    observer = make_observer(config, out)
    with request_scope(request):
        Logger(observer=observer).info("in the request")
    Logger(observer=observer).info("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["logging.googleapis.com/trace"] == (
        "projects/my-project/traces/0123456789abcdef0123456789abcdef"
    )
    assert inside["logging.googleapis.com/spanId"] == "0000000000000005"
    assert inside["logging.googleapis.com/trace_sampled"] is True
    assert inside["request_id"]
    assert "logging.googleapis.com/trace" not in outside
    assert "request_id" not in outside


# Deferred callbacks ---------------------------------------------------------


def test_callback_fired_later_runs_in_its_request() -> None:
    """
    A callback added while a request is handled, fired later by the clock
    outside of it, still sees that request; one added outside sees none.
    """
    clock = Clock()
    first, second = object(), object()
    seen: list[tuple[str, object]] = []
    with request_scope(first):  # type: ignore[arg-type]
        d1 = deferLater(clock, 2, lambda: None)
        d1.addCallback(lambda _: seen.append(("first", current_request())))
    with request_scope(second):  # type: ignore[arg-type]
        d2 = deferLater(clock, 1, lambda: None)
        d2.addBoth(lambda _: seen.append(("second", current_request())))
    d3 = deferLater(clock, 1.5, lambda: None)
    d3.addCallback(lambda _: seen.append(("none", current_request())))
    assert current_request() is None
    clock.advance(3)
    assert seen == [("second", second), ("none", None), ("first", first)]
    assert current_request() is None
    assert not clock.getDelayedCalls()


def test_errbacks_and_addcallbacks_run_in_their_request() -> None:
    request = object()
    seen: list[object] = []
    d: Deferred[None] = Deferred()
    with request_scope(request):  # type: ignore[arg-type]
        d.addCallbacks(lambda _: 1 / 0, lambda f: f)
        d.addErrback(lambda f: seen.append(current_request()))
        d.addCallbacks(lambda _: seen.append(current_request()), errback=lambda f: f)
    d.callback(None)
    assert seen == [request, request]
    assert current_request() is None


def test_without_the_deferred_support_later_callbacks_lose_the_request() -> None:
    """
    What install() is for: Twisted runs plain callbacks in the context of
    whoever fires the Deferred.
    """
    _correlation.uninstall()
    try:
        clock = Clock()
        seen: list[object] = []
        with request_scope(object()):  # type: ignore[arg-type]
            deferLater(clock, 1, lambda: None).addCallback(
                lambda _: seen.append(current_request())
            )
        clock.advance(1)
        assert seen == [None]
    finally:
        _correlation.install()


def test_coroutines_keep_their_request() -> None:
    clock = Clock()
    request = object()
    seen: list[object] = []

    async def handler() -> None:
        await deferLater(clock, 1, lambda: None)
        seen.append(current_request())
        await deferLater(clock, 1, lambda: None)
        seen.append(current_request())

    with request_scope(request):  # type: ignore[arg-type]
        d = Deferred.fromCoroutine(handler())
    clock.advance(1)
    clock.advance(1)
    assert seen == [request, request]
    assert d.called


@pytest_twisted.ensureDeferred
async def test_thread_pool_functions_keep_their_request() -> None:
    request = object()
    with request_scope(request):  # type: ignore[arg-type]
        inside = deferToThread(current_request)
    outside = deferToThread(current_request)
    assert await inside is request
    assert await outside is None


def test_callbacks_keep_results_and_arguments() -> None:
    request = object()
    with request_scope(request):  # type: ignore[arg-type]
        d = succeed(2)
        d.addCallback(lambda value, extra, *, more: value + extra + more, 3, more=4)
        d.addBoth(lambda value, extra: value * extra, 10)
    results: list[int] = []
    d.addCallback(results.append)
    assert results == [90]


# Many requests at once, over real HTTP --------------------------------------


class _Backend(Resource):
    """
    Answers after ?delay= seconds: a network reply that arrives later.
    """

    isLeaf = True

    def render_GET(self, request):  # noqa: N802
        delay = float(request.args[b"delay"][0])
        call = reactor.callLater(delay, self._answer, request)  # type: ignore[attr-defined]
        request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)
        return NOT_DONE_YET

    def _answer(self, request: Any) -> None:
        request.write(b"late")
        request.finish()


def _app(backend_url: str, http: HTTPClient) -> Klein:
    app = Klein()

    def marker(request: Any) -> tuple[str, float]:
        return request.args[b"m"][0].decode(), float(request.args[b"d"][0])

    @app.route("/sync")
    def sync(request: Any) -> bytes:
        m, _ = marker(request)
        log.info("sync {m}", m=m)
        stdlib_log.info("stdlib-sync %s", m)
        return b"ok"

    @app.route("/deferred")
    def deferred(request: Any) -> Deferred[bytes]:
        m, delay = marker(request)
        d = deferLater(reactor, delay, lambda: None)
        d.addCallback(lambda _: log.info("deferred {m}", m=m))
        d.addCallback(lambda _: deferLater(reactor, delay / 2, lambda: None))
        d.addCallback(lambda _: stdlib_log.warning("stdlib-deferred %s", m))
        return d.addCallback(lambda _: b"ok")

    @app.route("/network")
    def network(request: Any) -> Deferred[bytes]:
        m, delay = marker(request)
        d = http.get(f"{backend_url}/?delay={delay}")
        d.addCallback(treq.content)
        d.addCallback(lambda body: log.info("network {m} {body}", m=m, body=body))
        return d.addCallback(lambda _: b"ok")

    @app.route("/async")
    async def coroutine(request: Any) -> bytes:
        m, delay = marker(request)
        await deferLater(reactor, delay, lambda: None)
        log.info("async {m}", m=m)
        response = await http.get(f"{backend_url}/?delay={delay / 2}")
        await treq.content(response)
        stdlib_log.info("stdlib-async %s", m)
        return b"ok"

    @app.route("/thread")
    def thread(request: Any) -> Deferred[bytes]:
        m, delay = marker(request)

        def blocking() -> bytes:
            time.sleep(delay)
            stdlib_log.info("stdlib-thread %s", m)
            return b"ok"

        return deferToThread(blocking)

    @app.route("/failure")
    def failure(request: Any) -> Deferred[bytes]:
        m, delay = marker(request)
        d = deferLater(reactor, delay, lambda: 1 / 0)
        d.addErrback(lambda f: log.failure("failure {m}", f, m=m))
        return d.addCallback(lambda _: b"ok")

    return app


_KINDS = {
    "sync": ("sync", "stdlib-sync"),
    "deferred": ("deferred", "stdlib-deferred"),
    "network": ("network",),
    "async": ("async", "stdlib-async"),
    "failure": ("failure",),
    "thread": ("stdlib-thread",),
}


@pytest_twisted.ensureDeferred
async def test_interleaved_requests_never_swap_traces() -> None:
    rng = random.Random(6)
    config = RuntimeConfig.from_environ(CLOUD_RUN)
    out = io.StringIO()
    observer = make_observer(config, out)
    bridge = StdlibBridge()
    stdlib_log.addHandler(bridge)
    stdlib_log.setLevel(logging.INFO)
    stdlib_log.propagate = False
    globalLogPublisher.addObserver(observer)

    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    backend = ContainerSite(_Backend(), clock=reactor, access_log=False)
    backend_port = reactor.listenTCP(0, backend, interface="127.0.0.1")  # type: ignore[attr-defined]
    backend_url = f"http://127.0.0.1:{backend_port.getHost().port}"
    runtime = Runtime(config, CommandClient.unavailable("test"), reactor)  # type: ignore[arg-type]
    site = ContainerSite(
        ContainerResource(_app(backend_url, http).resource(), runtime), clock=reactor
    )
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port.getHost().port}"

    expected: dict[str, tuple[str, str, str]] = {}  # trace -> (kind, span, header)
    calls = []
    try:
        for i in range(60):
            trace = "%032x" % rng.getrandbits(128)
            span = rng.getrandbits(63) + 1
            kind = list(_KINDS)[i % len(_KINDS)]
            if i % 2:
                headers = {"x-cloud-trace-context": f"{trace}/{span};o=1"}
                span_hex = "%016x" % span
            else:
                span_hex = "%016x" % span
                headers = {"traceparent": f"00-{trace}-{span_hex}-01"}
            expected[trace] = (kind, span_hex, next(iter(headers)))
            delay = rng.uniform(0.0, 0.05)
            calls.append(
                http.get(f"{url}/{kind}?m={trace}&d={delay:.4f}", headers=headers)
                .addCallback(treq.content)
            )
        bodies = await gatherResults(calls)
        assert set(bodies) == {b"ok"}
        await site.drain(5)
        await backend.drain(5)
    finally:
        globalLogPublisher.removeObserver(observer)
        stdlib_log.removeHandler(bridge)
        stdlib_log.propagate = True
        await DeferredList([port.stopListening(), backend_port.stopListening()])
        await pool.closeCachedConnections()

    lines = out.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is JSON
    seen: dict[str, list[str]] = {trace: [] for trace in expected}
    access: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.get("logger") == "containerflare.access":
            trace = entry["httpRequest"]["requestUrl"].split("m=")[1].split("&")[0]
            access[trace] = entry
        else:
            words = entry["message"].split()
            if len(words) < 2 or words[1] not in expected:
                continue
            trace = words[1]
            seen[trace].append(words[0])
        kind, span_hex, _ = expected[trace]
        assert entry["logging.googleapis.com/trace"] == f"projects/my-project/traces/{trace}", entry
        assert entry["logging.googleapis.com/spanId"] == span_hex, entry
        assert entry["logging.googleapis.com/trace_sampled"] is True
    for trace, (kind, _, _) in expected.items():
        assert sorted(seen[trace]) == sorted(_KINDS[kind]), (trace, kind, seen[trace])
        assert access[trace]["httpRequest"]["status"] == 200
    # The failure is one entry carrying its traceback.
    failures = [e for e in entries if e["message"].startswith("failure ")]
    assert len(failures) == len([k for k, _, _ in expected.values() if k == "failure"])
    for entry in failures:
        assert "ZeroDivisionError" in entry["message"]
        assert entry["severity"] == "CRITICAL"
