"""
The log observers (Cloud Logging JSON and text), level filtering, the access
log and the bridge from the logging module.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, LogPublisher, globalLogPublisher
from twisted.python import log as legacy_log
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from containerflare import RuntimeConfig
from containerflare._context import Runtime
from containerflare._correlation import request_scope
from containerflare._logging import (
    JSONFormatter,
    LogObserver,
    StdlibBridge,
    TextFormatter,
    install_stdlib_bridge,
    make_observer,
    rfc3339,
)
from containerflare._site import ContainerResource, ContainerSite
from containerflare.command import CommandClient

JSON_ENV = {"CONTAINERFLARE_LOG_FORMAT": "json"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _observer(env: dict[str, str] | None = None) -> tuple[Logger, io.StringIO]:
    out = io.StringIO()
    observer = make_observer(RuntimeConfig.from_environ(JSON_ENV if env is None else env), out)
    return Logger(namespace="tests.ns", observer=observer), out


def _entries(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


# JSON -----------------------------------------------------------------------


def test_json_entry_fields() -> None:
    log, out = _observer()
    log.info("hello {who}", who="world", count=3, ratio=0.5, flag=True, obj=object())
    [entry] = _entries(out)
    assert entry["severity"] == "INFO"
    assert entry["message"] == "hello world"
    assert RFC3339.match(entry["time"])
    assert entry["logger"] == "tests.ns"
    # Plain values are kept as fields; other objects only in the message.
    assert (entry["who"], entry["count"], entry["ratio"], entry["flag"]) == ("world", 3, 0.5, True)
    assert "obj" not in entry
    assert "logging.googleapis.com/trace" not in entry


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (LogLevel.debug, "DEBUG"),
        (LogLevel.info, "INFO"),
        (LogLevel.warn, "WARNING"),
        (LogLevel.error, "ERROR"),
        (LogLevel.critical, "CRITICAL"),
    ],
)
def test_severity_from_level(level: LogLevel, severity: str) -> None:
    log, out = _observer({**JSON_ENV, "CONTAINERFLARE_LOG_LEVEL": "debug"})
    log.emit(level, "x")
    assert _entries(out)[0]["severity"] == severity


def test_source_location_of_the_caller() -> None:
    log, out = _observer()
    log.info("here")
    line = sys._getframe().f_lineno - 1
    location = _entries(out)[0]["logging.googleapis.com/sourceLocation"]
    assert location == {
        "file": __file__,
        "line": str(line),
        "function": "test_source_location_of_the_caller",
    }


def test_failure_is_one_entry_with_its_traceback() -> None:
    log, out = _observer()

    def broken() -> None:
        raise ValueError("bad\nvalue")

    try:
        broken()
    except ValueError:
        log.failure("it broke for {user}", user="u1")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["severity"] == "CRITICAL"
    message = entry["message"]
    assert message.startswith("it broke for u1\nTraceback (most recent call last):\n")
    assert message.endswith("ValueError: bad\nvalue")
    assert entry["logging.googleapis.com/sourceLocation"]["function"] == "broken"


class _Unprintable:
    def __format__(self, spec: str) -> str:
        raise RuntimeError("no")

    def __repr__(self) -> str:
        raise RuntimeError("no")


def test_every_line_is_json_whatever_the_event() -> None:
    log, out = _observer()
    log.info("braces {unclosed", x=1)
    log.info("{missing}")
    log.info("nan {v}", v=float("nan"), inf=float("inf"))
    log.info("non-ascii é ✓ and\nnewlines\r\n")
    log.info(None)  # no format at all
    log.info("bytes key", data=b"\xff")
    observer = log.observer
    observer({"log_format": "bare", "log_level": "not a level", "log_time": 0})
    observer({})
    observer({1: "a key that is not a string", "log_format": "x"})  # type: ignore[dict-item]
    observer({"log_format": "{bad}", "bad": _Unprintable()})
    entries = _entries(out)
    assert len(entries) == 10
    assert entries[8]["severity"] == "ERROR"
    assert entries[8]["message"].startswith("unformattable log event")
    assert "Unable to format event" in entries[9]["message"]
    assert "v" not in entries[2]  # NaN is not JSON
    assert "inf" not in entries[2]
    assert entries[3]["message"] == "non-ascii é ✓ and\nnewlines"
    assert entries[6]["severity"] == "DEFAULT"


def test_legacy_log_events_are_json() -> None:
    out = io.StringIO()
    observer = make_observer(RuntimeConfig.from_environ(JSON_ENV), out)
    globalLogPublisher.addObserver(observer)
    try:
        legacy_log.msg("legacy", "message")
        try:
            1 / 0
        except ZeroDivisionError:
            legacy_log.err(None, "legacy failure")
    finally:
        globalLogPublisher.removeObserver(observer)
    entries = _entries(out)
    assert entries[0]["message"] == "legacy message"
    assert entries[1]["severity"] == "CRITICAL"
    assert "ZeroDivisionError" in entries[1]["message"]
    assert len(entries) == 2


def test_project_and_trace() -> None:
    formatter = JSONFormatter(None)
    config = RuntimeConfig.from_environ({"K_SERVICE": "s", "GOOGLE_CLOUD_PROJECT": "p1"})
    assert make_observer(config, io.StringIO()).formatter.project_id == "p1"  # type: ignore[attr-defined]
    config = RuntimeConfig.from_environ({"GCLOUD_PROJECT": "p2", **JSON_ENV})
    assert make_observer(config, io.StringIO()).formatter.project_id == "p2"  # type: ignore[attr-defined]
    assert formatter.project_id is None


def test_json_is_the_default_on_cloud_run_only() -> None:
    cloud_run = make_observer(RuntimeConfig.from_environ({"K_SERVICE": "s"}), io.StringIO())
    generic = make_observer(RuntimeConfig.from_environ({}), io.StringIO())
    forced = make_observer(
        RuntimeConfig.from_environ({"K_SERVICE": "s", "CONTAINERFLARE_LOG_FORMAT": "text"}),
        io.StringIO(),
    )
    assert isinstance(cloud_run.formatter, JSONFormatter)  # type: ignore[attr-defined]
    assert isinstance(generic.formatter, TextFormatter)  # type: ignore[attr-defined]
    assert isinstance(forced.formatter, TextFormatter)  # type: ignore[attr-defined]


# Levels and destination -----------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("debug", ["debug", "info", "warn", "error", "critical"]),
        ("info", ["info", "warn", "error", "critical"]),
        ("warn", ["warn", "error", "critical"]),
        ("error", ["error", "critical"]),
    ],
)
def test_level_filtering(configured: str, expected: list[str]) -> None:
    log, out = _observer({**JSON_ENV, "CONTAINERFLARE_LOG_LEVEL": configured})
    for name in ("debug", "info", "warn", "error", "critical"):
        log.emit(LogLevel.lookupByName(name), name)
    assert [e["message"] for e in _entries(out)] == expected


def test_default_destination_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    observer = make_observer(RuntimeConfig.from_environ(JSON_ENV))
    Logger(observer=observer).info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["message"] == "to stderr"


def test_a_broken_stream_does_not_raise() -> None:
    class Broken(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError("disk full")

    observer = LogObserver(Broken(), TextFormatter())
    observer({"log_format": "x", "log_level": LogLevel.info})


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"
    assert rfc3339(1_700_000_000.5) == "2023-11-14T22:13:20.500000Z"


# Text -------------------------------------------------------------------------


def test_text_lines() -> None:
    log, out = _observer({})
    log.warn("careful {x}", x=1)
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("oops")
    lines = out.getvalue().splitlines()
    assert re.match(r"^\S+Z WARN  \[tests\.ns\] careful 1$", lines[0])
    assert re.match(r"^\S+Z CRIT  \[tests\.ns\] oops$", lines[1])
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"


def test_text_lines_in_a_request_carry_its_id() -> None:
    clock = Clock()
    site, pending = _site(clock, {}, access_log=False)
    channel = _connect(site)
    channel.dataReceived(  # type: ignore[attr-defined]
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Cloud-Trace-Context: "
        b"0123456789abcdef0123456789abcdef/1;o=1\r\n\r\n"
    )
    log, out = _observer({})
    with request_scope(pending.requests[0]):
        log.info("inside")
    assert re.search(r"inside \[(request_id|trace)=0123456789abcdef0123456789abcdef\]$", out.getvalue())


# Access log -------------------------------------------------------------------


class _Pending(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> object:  # noqa: N802
        self.requests.append(request)
        return NOT_DONE_YET


def _site(clock: Clock, environ: dict[str, str], access_log: bool = True) -> tuple[ContainerSite, _Pending]:
    pending = _Pending()
    runtime = Runtime(RuntimeConfig.from_environ(environ), CommandClient.unavailable("test"), clock)
    site = ContainerSite(ContainerResource(pending, runtime), clock=clock, access_log=access_log)
    return site, pending


def _connect(site: ContainerSite) -> object:
    channel = site.buildProtocol(IPv4Address("TCP", "10.1.2.3", 1234))
    channel.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.1.2.3", 1234)))  # type: ignore[union-attr]
    return channel


@pytest.fixture()
def events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def _access(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_namespace") == "containerflare.access"]


def test_access_log_entry(events: list[dict[str, Any]]) -> None:
    clock = Clock()
    clock.advance(1000)
    site, pending = _site(clock, {"K_SERVICE": "svc", "GOOGLE_CLOUD_PROJECT": "proj"})
    channel = _connect(site)
    channel.dataReceived(  # type: ignore[attr-defined]
        b"GET /a?b=c HTTP/1.1\r\nHost: svc.example\r\nUser-Agent: ua/1\r\n"
        b"Referer: http://r/\r\nX-Forwarded-For: 203.0.113.9\r\n"
        b"X-Cloud-Trace-Context: 0123456789abcdef0123456789abcdef/16;o=1\r\n\r\n"
    )
    clock.advance(0.0125)
    request = pending.requests[0]
    request.write(b"hello")
    request.finish()
    [event] = _access(events)
    assert event["log_level"] == LogLevel.info
    assert (event["method"], event["path"], event["status"]) == ("GET", "/a?b=c", 200)
    assert (event["response_size"], event["latency"]) == (5, pytest.approx(0.0125))
    # Cloud Run's front end appends the client's address (the peer is not it).
    assert event["client_ip"] == "203.0.113.9"
    assert event["request_id"] is not None
    assert event["url"].endswith("svc.example/a?b=c")
    assert (event["user_agent"], event["referer"]) == ("ua/1", "http://r/")

    # As a Cloud Logging entry: the trace groups it with the request's lines.
    out = io.StringIO()
    make_observer(RuntimeConfig.from_environ({"K_SERVICE": "svc", "GOOGLE_CLOUD_PROJECT": "proj"}), out)(event)
    [entry] = _entries(out)
    assert entry["httpRequest"] == {
        "requestMethod": "GET",
        "requestUrl": event["url"],
        "status": 200,
        "responseSize": "5",
        "latency": "0.012500s",
        "remoteIp": "203.0.113.9",
        "userAgent": "ua/1",
        "referer": "http://r/",
        "protocol": "HTTP/1.1",
    }
    assert entry["message"].startswith('203.0.113.9 "GET /a?b=c HTTP/1.1" 200 5B 12.5ms request_id=')
    assert (entry["status"], entry["client_ip"], entry["request_id"]) == (200, "203.0.113.9", event["request_id"])
    assert entry["logging.googleapis.com/trace"] == "projects/proj/traces/0123456789abcdef0123456789abcdef"
    assert entry["logging.googleapis.com/spanId"] == "0000000000000010"
    assert "logging.googleapis.com/sourceLocation" not in entry
    text = io.StringIO()
    make_observer(RuntimeConfig.from_environ({}), text)(event)
    assert '203.0.113.9 "GET /a?b=c HTTP/1.1" 200 5B 12.5ms request_id=' in text.getvalue()


def test_access_log_on_cloudflare_has_colo_and_country(events: list[dict[str, Any]]) -> None:
    clock = Clock()
    site, pending = _site(
        clock,
        {"CLOUDFLARE_APPLICATION_ID": "app", "CLOUDFLARE_LOCATION": "SJC", "CLOUDFLARE_COUNTRY_A2": "US"},
    )
    channel = _connect(site)
    channel.dataReceived(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")  # type: ignore[attr-defined]
    assert pending.requests == []  # no render_POST: 405
    [event] = _access(events)
    assert event["status"] == 405
    assert event["log_level"] == LogLevel.warn
    assert (event["colo"], event["country"]) == ("SJC", "US")
    text = io.StringIO()
    make_observer(RuntimeConfig.from_environ({}), text)(event)
    assert text.getvalue().rstrip().endswith("colo=SJC country=US")


def test_server_errors_are_logged_at_error(events: list[dict[str, Any]]) -> None:
    clock = Clock()
    site, pending = _site(clock, {})
    channel = _connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[attr-defined]
    request = pending.requests[0]
    request.setResponseCode(503)
    request.finish()
    [event] = _access(events)
    assert event["log_level"] == LogLevel.error
    assert "colo" not in event  # not on Cloudflare


def test_no_access_log(events: list[dict[str, Any]]) -> None:
    clock = Clock()
    site, pending = _site(clock, {}, access_log=False)
    channel = _connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[attr-defined]
    pending.requests[0].finish()
    assert _access(events) == []


# The logging module -----------------------------------------------------------


@pytest.fixture()
def stdlib_logger() -> Iterator[tuple[logging.Logger, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    root = logging.Logger("test-root")  # a private tree: pytest's root stays untouched
    uninstall = install_stdlib_bridge("info", seen.append, root=root)
    child = logging.Logger("app.module")
    child.parent = root
    yield child, seen
    uninstall()
    assert root.handlers == []


def test_stdlib_records_become_events(stdlib_logger: tuple[logging.Logger, list[dict[str, Any]]]) -> None:
    logger, seen = stdlib_logger
    logger.debug("dropped")
    logger.info("hello %s", "there")
    line = sys._getframe().f_lineno - 1
    logger.warning("w")
    logger.error("e")
    logger.critical("c")
    assert [e["log_level"] for e in seen] == [
        LogLevel.info,
        LogLevel.warn,
        LogLevel.error,
        LogLevel.critical,
    ]
    first = seen[0]
    assert first["log_namespace"] == "app.module"
    assert first["cf_source"] == {
        "file": __file__,
        "line": str(line),
        "function": "test_stdlib_records_become_events",
    }
    out = io.StringIO()
    make_observer(RuntimeConfig.from_environ(JSON_ENV), out)(first)
    entry = json.loads(out.getvalue())
    assert entry["message"] == "hello there"
    assert entry["logging.googleapis.com/sourceLocation"]["line"] == str(line)


def test_stdlib_exception_is_one_entry(stdlib_logger: tuple[logging.Logger, list[dict[str, Any]]]) -> None:
    logger, seen = stdlib_logger
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup failed")
    logger.info("bad args %s %s", "only one")
    [failure, bad] = seen
    assert isinstance(failure["log_failure"], Failure)
    out = io.StringIO()
    make_observer(RuntimeConfig.from_environ(JSON_ENV), out)(failure)
    make_observer(RuntimeConfig.from_environ(JSON_ENV), out)(bad)
    first, second = _entries(out)
    assert first["severity"] == "ERROR"
    assert first["message"].startswith("lookup failed\nTraceback (most recent call last):")
    assert first["message"].endswith("KeyError: 'missing'")
    assert "unformattable" in second["message"]


def test_stdlib_bridge_in_a_request_is_correlated() -> None:
    clock = Clock()
    site, pending = _site(clock, {"K_SERVICE": "svc"}, access_log=False)
    channel = _connect(site)
    channel.dataReceived(  # type: ignore[attr-defined]
        b"GET / HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
    )
    out = io.StringIO()
    publisher = LogPublisher(make_observer(RuntimeConfig.from_environ({"K_SERVICE": "svc"}), out))
    root = logging.Logger("test-root")
    uninstall = install_stdlib_bridge("info", publisher, root=root)
    try:
        with request_scope(pending.requests[0]):
            root.info("in request")
        root.info("outside")
    finally:
        uninstall()
    inside, outside = _entries(out)
    assert inside["logging.googleapis.com/trace"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inside["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert inside["logging.googleapis.com/trace_sampled"] is True
    assert "logging.googleapis.com/trace" not in outside


def test_bridge_leaves_an_app_configured_logging_alone() -> None:
    root = logging.Logger("test-root")
    theirs = logging.StreamHandler(io.StringIO())
    root.addHandler(theirs)
    root.setLevel(logging.DEBUG)
    uninstall = install_stdlib_bridge("warn", [].append, root=root)
    assert root.handlers == [theirs]
    assert root.level == logging.DEBUG
    uninstall()
    assert root.handlers == [theirs]


def test_bridge_sets_the_level_and_installs_once() -> None:
    root = logging.Logger("test-root")
    seen: list[dict[str, Any]] = []
    uninstall = install_stdlib_bridge("warn", seen.append, root=root)
    again = install_stdlib_bridge("warn", seen.append, root=root)
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0], StdlibBridge)
    root.info("dropped early")
    root.warning("kept")
    assert [e["log_text"] for e in seen] == ["kept"]
    again()
    uninstall()
    assert root.handlers == []
    assert root.level == logging.NOTSET


# Cost: the metadata is computed only when needed, once -----------------------


class _CountingProvider:
    """
    The generic provider, counting the metadata it builds.
    """

    def __init__(self) -> None:
        from containerflare._platforms import GENERIC

        self.wrapped = GENERIC
        self.name = GENERIC.name
        self.built = 0

    def detect(self, environ: Any) -> Any:
        return self.wrapped.detect(environ)

    def platform(self, environ: Any) -> Any:
        return self.wrapped.platform(environ)

    def request_metadata(self, request: Any, config: Any, now: float) -> Any:
        self.built += 1
        return self.wrapped.request_metadata(request, config, now)


@pytest.mark.parametrize(
    ("access_log", "logs", "reads_metadata", "built"),
    [
        (False, False, False, 0),  # nothing asks: nothing is parsed
        (False, True, False, 1),  # a correlated event
        (True, False, False, 1),  # the access log entry
        (True, True, True, 1),  # all of them share one
    ],
)
def test_metadata_is_built_only_when_needed_and_once(
    access_log: bool, logs: bool, reads_metadata: bool, built: int
) -> None:
    import attrs

    from containerflare import ContainerContext

    provider = _CountingProvider()
    config = attrs.evolve(RuntimeConfig.from_environ(JSON_ENV), provider=provider)
    out = io.StringIO()
    observer = make_observer(config, out)

    class Handler(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:  # noqa: N802
            if reads_metadata:
                ContainerContext.from_request(request).metadata
            if logs:
                Logger(observer=observer).info("handled")
                Logger(observer=observer).info("twice")
            return b"ok"

    clock = Clock()
    runtime = Runtime(config, CommandClient.unavailable("test"), clock)
    site = ContainerSite(ContainerResource(Handler(), runtime), clock=clock, access_log=access_log)
    globalLogPublisher.addObserver(observer)
    try:
        channel = _connect(site)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nCf-Ray: ray-1\r\n\r\n")  # type: ignore[attr-defined]
    finally:
        globalLogPublisher.removeObserver(observer)
    assert provider.built == built
    entries = _entries(out)
    assert len(entries) == 2 * logs + access_log
    assert all(e["request_id"] == "ray-1" for e in entries)


def test_bridge_keeps_early_records_until_logging_begins() -> None:
    root = logging.Logger("test-root")
    published: list[dict[str, Any]] = []
    uninstall = install_stdlib_bridge("info", published.append, root=root, keep_early=True)
    root.warning("while importing")
    replayed: list[dict[str, Any]] = []
    uninstall(replay_to=replayed.append)
    assert [e["log_text"] for e in replayed] == ["while importing"]
    assert root.handlers == []

    # Installed again (the service starting): the early phase ends.
    uninstall = install_stdlib_bridge("info", published.append, root=root, keep_early=True)
    install_stdlib_bridge("info", published.append, root=root)
    root.warning("after start")
    replayed.clear()
    uninstall(replay_to=replayed.append)
    assert replayed == []
    assert [e["log_text"] for e in published] == ["while importing", "after start"]


@pytest.mark.parametrize(("level", "logged"), [("info", [200, 404, 500]), ("warn", [404, 500]), ("error", [500])])
def test_access_log_below_the_level_costs_nothing(
    events: list[dict[str, Any]], level: str, logged: list[int]
) -> None:
    import attrs

    provider = _CountingProvider()
    config = attrs.evolve(
        RuntimeConfig.from_environ({"CONTAINERFLARE_LOG_LEVEL": level}), provider=provider
    )
    clock = Clock()
    pending = _Pending()
    runtime = Runtime(config, CommandClient.unavailable("test"), clock)
    site = ContainerSite(ContainerResource(pending, runtime), clock=clock)
    channel = _connect(site)
    for code in (200, 404, 500):
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # type: ignore[attr-defined]
        request = pending.requests[-1]
        request.setResponseCode(code)
        request.finish()
    assert [e["status"] for e in _access(events)] == logged
    assert provider.built == len(logged)


def test_print_while_importing_goes_to_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    from containerflare._logging import stdout_to_log

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    stdout_logger = logging.getLogger("stdout")
    stdout_logger.addHandler(keep)
    stdout_logger.setLevel(logging.INFO)
    try:
        with stdout_to_log():
            print("one\ntwo", end="")
            print(" halves")
            # A handler made now on "sys.stdout" would loop: it reaches stderr.
            echo = logging.StreamHandler(sys.stdout)
            stdout_logger.addHandler(echo)
            print("echoed")
            stdout_logger.removeHandler(echo)
            print("partial", end="")
    finally:
        stdout_logger.removeHandler(keep)
        stdout_logger.setLevel(logging.NOTSET)
    assert [r.getMessage() for r in records] == ["one", "two halves", "echoed", "partial"]
    captured = capsys.readouterr()
    assert captured.out == ""
