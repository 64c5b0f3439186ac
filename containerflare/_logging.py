# -*- test-case-name: tests.test_logging -*-
"""
Log observers: readable text lines or Cloud Logging JSON, always on stderr;
the access log; the bridge from the standard library's C{logging}.

JSON mode writes one object per event and per line, with the fields Cloud
Logging understands (C{severity}, C{message}, C{time},
C{logging.googleapis.com/sourceLocation}, C{logging.googleapis.com/trace},
C{logging.googleapis.com/spanId}, C{logging.googleapis.com/trace_sampled},
C{httpRequest}).  Events emitted while a request is handled carry its
request id and trace: see L{containerflare._correlation}.
"""

from __future__ import annotations

import io
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from traceback import format_exception
from typing import IO, TYPE_CHECKING, Any

from twisted.logger import (
    ILogObserver,
    Logger,
    LoggingFile,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from containerflare._context import ContainerContext
from containerflare._correlation import (
    NO_CORRELATION,
    Correlation,
    correlation_for,
    current_request,
)
from containerflare._environ import RuntimeConfig

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}

_PRIORITY = {
    LogLevel.debug: 0,
    LogLevel.info: 1,
    LogLevel.warn: 2,
    LogLevel.error: 3,
    LogLevel.critical: 4,
}

#: twisted.logger levels as Cloud Logging severities.
SEVERITY = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARNING",
    LogLevel.error: "ERROR",
    LogLevel.critical: "CRITICAL",
}

_TEXT_LEVEL = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO ",
    LogLevel.warn: "WARN ",
    LogLevel.error: "ERROR",
    LogLevel.critical: "CRIT ",
}

#: Event keys never copied into a JSON entry: Twisted's own, the legacy
#: log system's, and ours.
_NOT_EXTRA = frozenset(
    {
        "message",
        "format",
        "time",
        "system",
        "isError",
        "why",
        "failure",
        "printed",
        "logLevel",
        "cf_access",
        "cf_request",
        "cf_source",
        "severity",
        "logger",
    }
)


# Time -----------------------------------------------------------------------

# (second, its formatted prefix): replaced as a whole, so that threads
# logging at once never pair one second with another's prefix.
_second_cache: tuple[int, str] = (-1, "")


def rfc3339(when: float) -> str:
    """
    A UTC timestamp in RFC 3339 with microseconds, e.g.
    C{2026-12-04T16:17:41.123456Z}.
    """
    global _second_cache
    second = int(when)
    cached = _second_cache
    if cached[0] != second:
        cached = _second_cache = (
            second,
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
        )
    # %d truncates the float as int() does; half the cost of int() and an
    # f-string with a format spec.
    return "%s.%06dZ" % (cached[1], (when - second) * 1_000_000)


# Source location ------------------------------------------------------------

_EMIT = Logger.emit.__code__
_SKIP_FILES = frozenset(
    {
        _EMIT.co_filename,  # Logger.info/warn/failure... wrap emit
        LoggingFile.write.__code__.co_filename,  # print() under twistd
    }
)


def _location_from_stack() -> dict[str, Any] | None:
    # Only while an event is being emitted live by a twisted.logger.Logger:
    # replayed start-up events and legacy log.msg calls have no known source.
    frame = sys._getframe(2)
    for _ in range(12):
        if frame is None:
            return None
        if frame.f_code is _EMIT:
            break
        frame = frame.f_back  # type: ignore[assignment]
    else:
        return None
    frame = frame.f_back  # type: ignore[assignment]
    while frame is not None and frame.f_code.co_filename in _SKIP_FILES:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return None
    code = frame.f_code
    return {
        "file": code.co_filename,
        "line": str(frame.f_lineno),
        "function": getattr(code, "co_qualname", code.co_name),
    }


def _location_from_failure(failure: Failure) -> dict[str, Any] | None:
    frames = failure.frames
    if not frames:
        return None
    function, filename, line = frames[-1][:3]
    return {"file": filename, "line": str(line), "function": function}


# Formatting -----------------------------------------------------------------


def _traceback(failure: Failure) -> str:
    # Python's own format (what Cloud Error Reporting recognises), with
    # chained exceptions; Twisted's as the fallback.
    try:
        return "".join(
            format_exception(failure.type, failure.value, failure.getTracebackObject())
        )
    except Exception:
        try:
            return failure.getTraceback()
        except Exception as e:
            return f"(traceback unavailable: {e!r})"


def _message(event: Mapping[str, Any]) -> str:
    fmt = event.get("log_format")
    # Constant messages and "{log_text}" (the logging module, legacy
    # events) need no formatter: formatEvent costs more than the rest.
    if type(fmt) is str and "log_flattened" not in event:
        if "{" not in fmt and "}" not in fmt:
            text = fmt
        elif fmt == "{log_text}" and type(event.get("log_text")) is str:
            text = event["log_text"]
        else:
            text = formatEvent(event)  # type: ignore[arg-type]
    else:
        text = formatEvent(event)  # type: ignore[arg-type]
    failure = event.get("log_failure")
    if failure is not None:
        traceback = _traceback(failure)
        text = f"{text}\n{traceback}" if text else traceback
    return text.rstrip("\r\n")


def _correlation(event: Mapping[str, Any]) -> Correlation:
    request = event.get("cf_request")
    if request is None:
        request = current_request()
        if request is None:
            return NO_CORRELATION
    return correlation_for(request)


def access_line(event: Mapping[str, Any]) -> str:
    """
    The text of an access log event:
    C{CLIENT "METHOD PATH PROTOCOL" STATUS SIZEB LATENCYms [request_id=..]
    [colo=.. country=..]}.
    """
    latency = event["latency"]
    line = (
        f'{event["client_ip"] or "-"} "{event["method"]} {event["path"]} {event["protocol"]}" '
        f'{event["status"]} {event["response_size"]}B '
        f'{"-" if latency is None else f"{latency * 1000:.1f}ms"}'
    )
    request_id = event["request_id"]
    if request_id is not None:
        line = f"{line} request_id={request_id}"
    if "colo" in event:
        line = f'{line} colo={event["colo"] or "-"} country={event["country"] or "-"}'
    return line


def http_request(event: Mapping[str, Any]) -> dict[str, Any]:
    """
    The C{httpRequest} object of an access log event, as Cloud Logging reads it.
    """
    entry: dict[str, Any] = {
        "requestMethod": event["method"],
        "requestUrl": event["url"],
        "status": event["status"],
        "responseSize": str(event["response_size"]),
        "protocol": event["protocol"],
    }
    latency = event["latency"]
    if latency is not None:
        entry["latency"] = f"{latency:.6f}s"
    if event["client_ip"] is not None:
        entry["remoteIp"] = event["client_ip"]
    if event["user_agent"] is not None:
        entry["userAgent"] = event["user_agent"]
    if event["referer"] is not None:
        entry["referer"] = event["referer"]
    return entry


class JSONFormatter:
    """
    Formats an event as one line of Cloud Logging structured JSON.

    @ivar project_id: the Google Cloud project traces belong to, when known
        from the environment; otherwise the request's own, if any.
    """

    def __init__(self, project_id: str | None = None) -> None:
        self.project_id = project_id
        self._encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode

    def unformattable(self, error: Exception) -> str:
        """
        The entry written for an event that could not be formatted.
        """
        return self._encode(
            {
                "severity": "ERROR",
                "message": f"unformattable log event: {error!r}",
                "time": rfc3339(time.time()),
                "logger": __name__,
            }
        )

    def __call__(self, event: Mapping[str, Any], location: dict[str, Any] | None = None) -> str:
        level = event.get("log_level", LogLevel.info)
        access = "cf_access" in event
        entry: dict[str, Any] = {
            "severity": SEVERITY.get(level, "DEFAULT"),
            "message": access_line(event) if access else _message(event),
            "time": rfc3339(event.get("log_time") or time.time()),
            "logger": event.get("log_namespace", "-"),
        }
        if access:
            entry["httpRequest"] = http_request(event)
        else:
            if location is None:
                location = event.get("cf_source")
                if location is None and "log_failure" in event:
                    location = _location_from_failure(event["log_failure"])
            if location is not None:
                entry["logging.googleapis.com/sourceLocation"] = location

        correlation = _correlation(event)
        if correlation is not NO_CORRELATION:
            if correlation.request_id is not None:
                entry["request_id"] = correlation.request_id
            if correlation.trace_id is not None:
                project = self.project_id or correlation.project_id
                entry["logging.googleapis.com/trace"] = (
                    f"projects/{project}/traces/{correlation.trace_id}"
                    if project
                    else correlation.trace_id
                )
                if correlation.span_id is not None:
                    entry["logging.googleapis.com/spanId"] = correlation.span_id
                if correlation.sampled is not None:
                    entry["logging.googleapis.com/trace_sampled"] = correlation.sampled

        if access:
            for key in _ACCESS_FIELDS:
                if key in event and key not in entry:
                    entry[key] = event[key]
        else:
            for key, value in event.items():
                if (
                    key.startswith("log_")
                    or key in _NOT_EXTRA
                    or key in entry
                    or not isinstance(value, (str, int, float, bool, type(None)))
                    or (isinstance(value, float) and not math.isfinite(value))
                ):
                    continue
                entry[key] = value
        try:
            return self._encode(entry)
        except (TypeError, ValueError) as e:
            return self._encode(
                {
                    "severity": entry["severity"],
                    "message": f"{entry['message']!r} (unencodable log entry: {e})",
                    "time": entry["time"],
                }
            )


class TextFormatter:
    """
    Formats an event as a readable line (with the traceback, if any, on the
    lines after it): C{TIME LEVEL [namespace] message [request_id=...]}.
    """

    def unformattable(self, error: Exception) -> str:
        """
        The line written for an event that could not be formatted.
        """
        return f"{rfc3339(time.time())} ERROR [{__name__}] unformattable log event: {error!r}"

    def __call__(self, event: Mapping[str, Any], location: dict[str, Any] | None = None) -> str:
        level = event.get("log_level", LogLevel.info)
        if "cf_access" in event:
            message = access_line(event)
        else:
            message = _message(event)
            correlation = _correlation(event)
            if correlation.request_id is not None:
                message = f"{message} [request_id={correlation.request_id}]"
            elif correlation.trace_id is not None:
                message = f"{message} [trace={correlation.trace_id}]"
        return (
            f"{rfc3339(event.get('log_time') or time.time())} "
            f"{_TEXT_LEVEL.get(level, '-    ')} "
            f"[{event.get('log_namespace', '-')}] {message}"
        )


@implementer(ILogObserver)
class LogObserver:
    """
    Writes events at or above a level to a text stream, one formatted entry
    per event, flushed at once.  Never raises.
    """

    def __init__(
        self,
        stream: IO[str],
        formatter: JSONFormatter | TextFormatter,
        level: LogLevel = LogLevel.info,
    ) -> None:
        self.stream = stream
        self.formatter = formatter
        self.level = level
        self._minimum = _PRIORITY[level]
        self._locate = isinstance(formatter, JSONFormatter)

    def __call__(self, event: Mapping[str, Any]) -> None:
        if _PRIORITY.get(event.get("log_level"), 1) < self._minimum:
            return
        try:
            location = None
            if (
                self._locate
                and "cf_source" not in event
                and "cf_access" not in event
                and "log_failure" not in event
            ):
                location = _location_from_stack()
            text = self.formatter(event, location)
        except Exception as e:  # a broken event must not break logging
            text = self.formatter.unformattable(e)
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except Exception:
            pass


def _real_stderr() -> IO[str]:
    # Under twistd, sys.stderr becomes a LoggingFile once logging begins:
    # writing log lines to it would feed them back into logging.
    stream = sys.stderr
    if isinstance(stream, LoggingFile) or stream is None:
        stream = sys.__stderr__
    return stream  # type: ignore[return-value]


def project_id(config: RuntimeConfig) -> str | None:
    """
    The Google Cloud project trace ids belong to, from the environment.
    """
    found = getattr(config.platform, "project_id", None)
    if found:
        return str(found)
    for name in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        value = (config.environ.get(name) or "").strip()
        if value:
            return value
    return None


def make_observer(config: RuntimeConfig, stream: IO[str] | None = None) -> ILogObserver:
    """
    The log observer for a configuration: C{config.log_format} (text or
    json) at C{config.log_level}, on stderr (never stdout, which may carry
    the stdio command channel) unless C{stream} is given.
    """
    out = _real_stderr() if stream is None else stream
    formatter: JSONFormatter | TextFormatter
    if config.log_format == "json":
        formatter = JSONFormatter(project_id(config))
    else:
        formatter = TextFormatter()
    return LogObserver(out, formatter, _LEVELS[config.log_level])


# The access log -------------------------------------------------------------


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


#: The fields of an access event copied into its JSON entry.
_ACCESS_FIELDS = ("method", "path", "status", "response_size", "client_ip", "request_id", "colo", "country")

_ACCESS_LEVEL = (LogLevel.info, LogLevel.warn, LogLevel.error)

#: A configured log level's priority.
_LEVEL_PRIORITY = {name: _PRIORITY[level] for name, level in _LEVELS.items()}

#: For observers other than ours (which build the line themselves).
_ACCESS_FORMAT = '{client_ip} "{method} {path} {protocol}" {status} {response_size}B'


def log_access(
    request: Any,
    started: float | None,
    now: float,
    *,
    publisher: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """
    Emit the access log event of a finished request (an L{IRequest} that
    is a L{twisted.web.http.Request}): one event, at info (warn for 4xx,
    error for 5xx, as Cloud Run's own request log does).

    The event carries plain values (C{method}, C{path}, C{url}, C{status},
    C{response_size}, C{latency} in seconds, C{client_ip}, C{user_agent},
    C{referer}, C{protocol}, C{request_id}, and on Cloudflare C{colo} and
    C{country}); the observers build the text line or the C{httpRequest}
    object from them only if they write the event.  The request's metadata
    is used, computed if the handler did not ask for it already.

    @param started: when the request began, on the same clock as C{now}, or
        L{None} if unknown.
    @param now: the time the response finished.
    """
    context = ContainerContext.from_request(request)
    status = request.code
    level = _ACCESS_LEVEL[(status >= 400) + (status >= 500)]
    config = context.config
    if _PRIORITY[level] < _LEVEL_PRIORITY[config.log_level]:
        return  # filtered out anyway: compute nothing
    metadata = context.metadata
    headers = request.requestHeaders
    user_agent = headers.getRawHeaders(b"user-agent")
    referer = headers.getRawHeaders(b"referer")
    path = metadata.path or _text(request.uri)
    protocol = request.clientproto
    event: dict[str, Any] = {
        "log_level": level,
        "log_namespace": "containerflare.access",
        "log_source": None,
        "log_format": _ACCESS_FORMAT,
        "log_time": time.time(),
        "cf_access": True,
        "cf_request": request,
        "method": metadata.method or _text(request.method),
        "path": path,
        "url": metadata.raw_url or path,
        "protocol": None if protocol is None else protocol.decode("latin-1"),
        "status": status,
        "response_size": request.sentLength,
        "latency": None if started is None else max(now - started, 0.0),
        "client_ip": metadata.client_ip,
        "user_agent": None if user_agent is None else user_agent[0].decode("latin-1"),
        "referer": None if referer is None else referer[0].decode("latin-1"),
        "request_id": metadata.request_id,
    }
    if config.platform.name == "cloudflare":
        event["colo"] = metadata.colo
        event["country"] = metadata.country
    (globalLogPublisher if publisher is None else publisher)(event)


# The standard library's logging ---------------------------------------------


def _from_stdlib_level(levelno: int) -> LogLevel:
    if levelno >= logging.CRITICAL:
        return LogLevel.critical
    if levelno >= logging.ERROR:
        return LogLevel.error
    if levelno >= logging.WARNING:
        return LogLevel.warn
    if levelno >= logging.INFO:
        return LogLevel.info
    return LogLevel.debug


_TO_STDLIB_LEVEL = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


#: At most this many records are kept for L{StdlibBridge.early}.
_EARLY_LIMIT = 1000


class StdlibBridge(logging.Handler):
    """
    A C{logging} handler that turns each record into one twisted.logger
    event, with its source location and, for C{exc_info}, its traceback as
    the event's failure.

    @ivar early: while not L{None}, the events published so far (at most
        1000): installed before twistd starts logging, the bridge keeps them
        so that they can still be shown if start-up fails before (twistd
        buffers events until then and drops them if it never starts).
    """

    def __init__(
        self,
        publisher: Callable[[dict[str, Any]], None] | None = None,
        *,
        keep_early: bool = False,
    ) -> None:
        super().__init__()
        self.publisher = publisher
        self.early: list[dict[str, Any]] | None = [] if keep_early else None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            try:
                text = record.getMessage()
            except Exception as e:
                text = f"{record.msg!r} % {record.args!r} (unformattable: {e})"
            if record.stack_info:
                text = f"{text}\n{record.stack_info}"
            event: dict[str, Any] = {
                "log_level": _from_stdlib_level(record.levelno),
                "log_namespace": record.name,
                "log_source": None,
                "log_format": "{log_text}",
                "log_text": text,
                "log_time": record.created,
                "cf_source": {
                    "file": record.pathname,
                    "line": str(record.lineno),
                    "function": record.funcName,
                },
            }
            if record.exc_info and record.exc_info[1] is not None:
                _, value, tb = record.exc_info
                event["log_failure"] = Failure(value, type(value), tb)
            early = self.early
            if early is not None and len(early) < _EARLY_LIMIT:
                early.append(event)
            publisher = self.publisher
            (globalLogPublisher if publisher is None else publisher)(event)
        except Exception:
            self.handleError(record)


def install_stdlib_bridge(
    level: str = "info",
    publisher: LogPublisher | Callable[[dict[str, Any]], None] | None = None,
    root: logging.Logger | None = None,
    *,
    keep_early: bool = False,
) -> Callable[..., None]:
    """
    Send the standard library's log records to twisted.logger, so that they
    get the same format, level and request correlation.

    Done by the runtime (twistd containerflare before it imports the app,
    the service when it starts), not when containerflare is imported.  An
    app that configured C{logging} itself (the root logger has handlers)
    keeps its own configuration: nothing is installed.  Installing again is
    a no-op that ends the bridge's early phase (logging has begun).

    @param level: the configured level (C{config.log_level}); records below
        it are dropped by C{logging} before any work.
    @param keep_early: keep the events until installed again (see
        L{StdlibBridge.early}).
    @return: a function that removes the bridge again; given
        C{replay_to=observer}, it first hands that observer the events kept
        (for a start-up that fails before logging begins).
    """
    root = logging.getLogger() if root is None else root
    if any(not isinstance(h, StdlibBridge) for h in root.handlers):
        Logger(namespace=__name__).info(
            "The app configured the logging module itself: its records are not bridged"
        )
        return lambda replay_to=None: None
    if root.handlers:  # already bridged: logging has begun
        for bridge in root.handlers:
            bridge.early = None  # type: ignore[attr-defined]
        return lambda replay_to=None: None
    handler = StdlibBridge(publisher, keep_early=keep_early)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(_TO_STDLIB_LEVEL[level])
    # Warnings raised before twistd takes them over (while the app is
    # imported) would otherwise be printed as plain text on stderr.
    capture = root is logging.getLogger()
    if capture:
        logging.captureWarnings(True)

    def uninstall(replay_to: Callable[[dict[str, Any]], None] | None = None) -> None:
        early, handler.early = handler.early, None
        if replay_to is not None and early:
            for event in early:
                replay_to(event)
        if capture:
            logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(previous)

    return uninstall


class _StdoutToLog(io.TextIOBase):
    """
    A stand-in for C{sys.stdout} while the app is imported: each line
    printed becomes a record of the C{stdout} logger (at info), so that it
    reaches the log, and never the stdio command channel.
    """

    encoding = "utf-8"

    def __init__(self) -> None:
        super().__init__()
        self._partial = ""
        self._busy = False
        self._logger = logging.getLogger("stdout")

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._busy:
            # A logging handler that writes to this very stream (one made
            # with StreamHandler(sys.stdout) during the import): stderr.
            if sys.__stderr__ is not None:
                sys.__stderr__.write(text)
            return len(text)
        lines = (self._partial + str(text)).split("\n")
        self._partial = lines.pop()
        self._busy = True
        try:
            for line in lines:
                self._logger.info("%s", line)
        finally:
            self._busy = False
        return len(text)

    def close_partial(self) -> None:
        if self._partial:
            partial, self._partial = self._partial, ""
            self.write(partial + "\n")


@contextmanager
def stdout_to_log() -> Iterator[None]:
    """
    Send what is printed in a block (the app's import) to the log instead of
    stdout: twistd only redirects standard output once it starts logging.
    Code that kept a reference to the stand-in keeps logging through it.
    """
    stand_in = _StdoutToLog()
    previous, sys.stdout = sys.stdout, stand_in  # type: ignore[assignment]
    try:
        yield
    finally:
        stand_in.close_partial()
        if sys.stdout is stand_in:
            sys.stdout = previous

