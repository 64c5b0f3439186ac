# -*- test-case-name: tests.test_metadata -*-
"""
RequestMetadata: what the platform knows about one request, and its JSON
form (the C{x-containerflare-metadata} header the Worker writes).

The JSON shape is documented on L{RequestMetadata} and in docs/metadata.md;
the Worker (examples/basic/worker) builds exactly the same shape.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen
from attrs import fields as attrs_fields
from twisted.logger import Logger

__all__ = [
    "MAX_HEADER_BYTES",
    "METADATA_HEADER",
    "ClientHints",
    "CloudRunRequestPlatform",
    "CloudflareRequestPlatform",
    "RequestMetadata",
    "RequestPlatform",
    "TraceContext",
]

#: The header the Worker writes the metadata JSON into.
METADATA_HEADER = "x-containerflare-metadata"

#: The most bytes of one header value containerflare reads; a longer value is
#: ignored (with a log line).  8 KiB: twisted.web refuses a request whose head
#: (request line and every header) exceeds 16 KiB, so a larger cap could never
#: be reached, and a Worker's metadata JSON is well under 2 KiB.
MAX_HEADER_BYTES = 8 * 1024

_log = Logger(namespace="containerflare.metadata")

#: A list of (problem kind, description); the kinds key the log rate limit.
Problems = list[tuple[str, str]]


def normalize_ip(text: str) -> str | None:
    """
    The canonical text of an IP address, or L{None} when C{text} is not one.

    Accepts what proxies write: C{"1.2.3.4"}, C{1.2.3.4:8080}, C{::1},
    C{[2001:db8::1]}, C{[2001:db8::1]:443}, C{"[::1]"} (quoted, as in
    C{Forwarded}).  IPv4-mapped IPv6 addresses become IPv4.
    """
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1].strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1 :]
        if rest and not (rest[0] == ":" and rest[1:].isdigit()):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        # IPv4 with a port; a bare IPv6 address has at least two colons.
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    if not text or len(text) > 64:
        return None
    if ":" not in text:
        # IPv4, the common case: inet_pton is as strict as ipaddress (four
        # decimal parts, no leading zeros), so valid text is canonical already.
        try:
            socket.inet_pton(socket.AF_INET, text)
        except (OSError, ValueError):
            return None
        return text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6:
        mapped = address.ipv4_mapped  # type: ignore[union-attr]
        if mapped is not None:
            return str(mapped)
    return str(address)


def _string_fields(
    cls_name: str,
    names: tuple[str, ...],
    data: Mapping[str, Any],
    problems: Problems,
) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            found[name] = value
        else:
            problems.append(
                ("type", f"{cls_name}.{name} is {type(value).__name__}, not a string; dropped")
            )
    return found


def _log_problems(problems: Problems) -> None:
    if problems:
        _log.warn(
            "request metadata: {problem}",
            problem="; ".join(text for _, text in problems),
        )


@frozen
class TraceContext:
    """
    A request's trace, from C{x-cloud-trace-context} or W3C C{traceparent}.

    JSON: C{{"trace_id", "span_id", "sampled", "project_id", "raw", "version",
    "flags"}}, every key present, L{None} as C{null}.

    @ivar trace_id: 32 lowercase hex digits.
    @ivar span_id: 16 lowercase hex digits (the decimal span of
        C{x-cloud-trace-context} is converted, so both sources agree and
        Cloud Logging's C{spanId} takes it as is).
    @ivar sampled: C{o=1} / flag bit 0; L{None} when the header does not say.
    @ivar project_id: the Google Cloud project, for Cloud Logging's trace field.
    @ivar raw: the header value the trace was read from.
    @ivar version: W3C C{traceparent} version (C{"00"}), when read from it.
    @ivar flags: W3C trace flags as two hex digits (C{"01"}), when known.
    """

    trace_id: str | None = None
    span_id: str | None = None
    sampled: bool | None = None
    project_id: str | None = None
    raw: str | None = None
    version: str | None = None
    flags: str | None = None

    _STRINGS = ("trace_id", "span_id", "project_id", "raw", "version", "flags")

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON object of this trace (every key present).
        """
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "sampled": self.sampled,
            "project_id": self.project_id,
            "raw": self.raw,
            "version": self.version,
            "flags": self.flags,
        }

    @classmethod
    def from_dict(cls, data: object) -> TraceContext | None:
        """
        Read a trace back from its JSON object; never raises.

        @return: L{None} when C{data} is not an object (logged).
        """
        problems: Problems = []
        result = cls._read(data, problems)
        _log_problems(problems)
        return result

    @classmethod
    def _read(cls, data: object, problems: Problems) -> TraceContext | None:
        if data is None:
            return None
        if not isinstance(data, Mapping):
            problems.append(("type", f"trace_context is {type(data).__name__}, not an object; dropped"))
            return None
        values: dict[str, Any] = _string_fields("trace_context", cls._STRINGS, data, problems)
        sampled = data.get("sampled")
        if isinstance(sampled, bool):
            values["sampled"] = sampled
        elif sampled is not None:
            problems.append(("type", f"trace_context.sampled is {type(sampled).__name__}, not a boolean; dropped"))
        return cls(**values)


@frozen
class ClientHints:
    """
    The user-agent client hints (C{sec-ch-ua*} headers), as sent.

    JSON: every key below, present, L{None} as C{null}.
    """

    ua: str | None = None
    ua_mobile: str | None = None
    ua_platform: str | None = None
    ua_arch: str | None = None
    ua_platform_version: str | None = None
    ua_model: str | None = None
    ua_bitness: str | None = None
    ua_wow64: str | None = None
    ua_full_version_list: str | None = None

    #: (attribute / JSON key, request header)
    HEADERS = (
        ("ua", b"sec-ch-ua"),
        ("ua_mobile", b"sec-ch-ua-mobile"),
        ("ua_platform", b"sec-ch-ua-platform"),
        ("ua_arch", b"sec-ch-ua-arch"),
        ("ua_platform_version", b"sec-ch-ua-platform-version"),
        ("ua_model", b"sec-ch-ua-model"),
        ("ua_bitness", b"sec-ch-ua-bitness"),
        ("ua_wow64", b"sec-ch-ua-wow64"),
        ("ua_full_version_list", b"sec-ch-ua-full-version-list"),
    )
    _KEYS = tuple(k for k, _ in HEADERS)

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON object of these hints (every key present).
        """
        return {
            "ua": self.ua,
            "ua_mobile": self.ua_mobile,
            "ua_platform": self.ua_platform,
            "ua_arch": self.ua_arch,
            "ua_platform_version": self.ua_platform_version,
            "ua_model": self.ua_model,
            "ua_bitness": self.ua_bitness,
            "ua_wow64": self.ua_wow64,
            "ua_full_version_list": self.ua_full_version_list,
        }

    @classmethod
    def from_dict(cls, data: object) -> ClientHints | None:
        """
        Read hints back from their JSON object; never raises.
        """
        problems: Problems = []
        result = cls._read(data, problems)
        _log_problems(problems)
        return result

    @classmethod
    def _read(cls, data: object, problems: Problems) -> ClientHints | None:
        if data is None:
            return None
        if not isinstance(data, Mapping):
            problems.append(("type", f"client_hints is {type(data).__name__}, not an object; dropped"))
            return None
        return cls(**_string_fields("client_hints", cls._KEYS, data, problems))


@frozen
class CloudflareRequestPlatform:
    """
    The C{platform} of a request served on Cloudflare.

    JSON: C{{"platform": "cloudflare", "worker_name": str|null}}.
    """

    worker_name: str | None = None
    platform: str = field(default="cloudflare", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"platform": "cloudflare", "worker_name": self.worker_name}


@frozen
class CloudRunRequestPlatform:
    """
    The C{platform} of a request served on Google Cloud Run.

    JSON: C{{"platform": "cloud_run", "service", "revision", "configuration",
    "project_id", "region"}} (strings or C{null}).
    """

    service: str | None = None
    revision: str | None = None
    configuration: str | None = None
    project_id: str | None = None
    region: str | None = None
    platform: str = field(default="cloud_run", init=False)

    _KEYS = ("service", "revision", "configuration", "project_id", "region")

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": "cloud_run",
            "service": self.service,
            "revision": self.revision,
            "configuration": self.configuration,
            "project_id": self.project_id,
            "region": self.region,
        }


RequestPlatform = CloudflareRequestPlatform | CloudRunRequestPlatform


def _read_platform(data: object, problems: Problems) -> RequestPlatform | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        problems.append(("type", f"platform is {type(data).__name__}, not an object; dropped"))
        return None
    tag = data.get("platform")
    if tag == "cloudflare":
        return CloudflareRequestPlatform(**_string_fields("platform", ("worker_name",), data, problems))
    if tag == "cloud_run":
        return CloudRunRequestPlatform(
            **_string_fields("platform", CloudRunRequestPlatform._KEYS, data, problems)
        )
    problems.append(("type", "platform.platform is neither \"cloudflare\" nor \"cloud_run\"; dropped"))
    return None


# The plain string keys of the JSON object, in the order to_dict writes them.
_STRING_KEYS = (
    "request_id",
    "colo",
    "region",
    "country",
    "host",
    "scheme",
    "worker_name",
    "project_id",
    "cloud_run_service",
    "cloud_run_revision",
    "cloud_run_configuration",
    "cloud_run_region",
    "forwarded_proto",
    "forwarded",
    "user_agent",
    "accept",
    "accept_language",
    "accept_encoding",
    "sec_gpc",
    "method",
    "path",
    "raw_url",
)


def read_fields(data: Mapping[str, Any], problems: Problems) -> dict[str, Any]:
    """
    The valid, non-null fields of a metadata JSON object, as
    L{RequestMetadata} keyword arguments.  Unknown keys are ignored; values
    of the wrong type are left out and described in C{problems}.
    """
    fields: dict[str, Any] = _string_fields("metadata", _STRING_KEYS, data, problems)
    client_ip = data.get("client_ip")
    if client_ip is not None:
        if not isinstance(client_ip, str):
            problems.append(("type", f"metadata.client_ip is {type(client_ip).__name__}, not a string; dropped"))
        else:
            normalized = normalize_ip(client_ip)
            if normalized is None:
                problems.append(("client_ip", "metadata.client_ip is not an IP address; dropped"))
            else:
                fields["client_ip"] = normalized
    forwarded_for = data.get("forwarded_for")
    if forwarded_for is not None:
        if isinstance(forwarded_for, list):
            kept = tuple(x for x in forwarded_for if isinstance(x, str))
            if len(kept) != len(forwarded_for):
                problems.append(("type", "metadata.forwarded_for has entries that are not strings; dropped"))
            fields["forwarded_for"] = kept
        else:
            problems.append(("type", f"metadata.forwarded_for is {type(forwarded_for).__name__}, not a list; dropped"))
    if "platform" in data:
        platform = _read_platform(data["platform"], problems)
        if platform is not None:
            fields["platform"] = platform
    if "trace_context" in data:
        trace = TraceContext._read(data["trace_context"], problems)
        if trace is not None:
            fields["trace_context"] = trace
    if "client_hints" in data:
        hints = ClientHints._read(data["client_hints"], problems)
        if hints is not None:
            fields["client_hints"] = hints
    return fields


def _to_tuple(value: Any) -> tuple[str, ...]:
    return tuple(value)


# Not slotted: a frozen slotted attrs class sets each of its 27 fields with
# its own object.__setattr__ call, which made construction a sixth of the
# cost of building a request's metadata; with an instance dict,
# _from_fields builds one in a single step (see docs/benchmarks.md).  The
# value is the same: frozen, equality, hash, attrs.fields, to_dict.
@frozen(slots=False)
class RequestMetadata:
    """
    Everything the platform knows about one request.

    Get it from C{ContainerContext.from_request(request).metadata}.  The
    values come from, in order: the Worker's C{x-containerflare-metadata}
    header when it is trusted, the request's own headers (the ones the
    platform makes trustworthy), then the platform's environment; see
    docs/metadata.md for the source of every field on every platform.

    JSON shape (C{to_dict()}, and the header the Worker writes)::

        {
          "request_id": str|null,   "colo": str|null,     "region": str|null,
          "country": str|null,      "client_ip": str|null,
          "host": str|null,         "scheme": str|null,
          "platform": null
                    | {"platform": "cloudflare", "worker_name": str|null}
                    | {"platform": "cloud_run", "service": str|null,
                       "revision": str|null, "configuration": str|null,
                       "project_id": str|null, "region": str|null},
          "worker_name": str|null,  "project_id": str|null,
          "cloud_run_service": str|null, "cloud_run_revision": str|null,
          "cloud_run_configuration": str|null, "cloud_run_region": str|null,
          "trace_context": null | {"trace_id", "span_id", "sampled" (bool),
                                   "project_id", "raw", "version", "flags"},
          "forwarded_for": [str, ...],
          "forwarded_proto": str|null, "forwarded": str|null,
          "user_agent": str|null, "accept": str|null,
          "accept_language": str|null, "accept_encoding": str|null,
          "sec_gpc": str|null,
          "client_hints": null | {"ua", "ua_mobile", "ua_platform", "ua_arch",
                                  "ua_platform_version", "ua_model",
                                  "ua_bitness", "ua_wow64",
                                  "ua_full_version_list"},
          "method": str, "path": str, "raw_url": str|null
        }

    Absent values are written as C{null}, never omitted: C{to_dict()} always
    has every key, nested objects too, and C{forwarded_for} is always a list.
    Reading (L{from_dict}) is lenient: a missing key means C{null}, unknown
    keys are ignored, and a value of the wrong type is dropped with a log
    line.  C{method} and C{path} default to C{"GET"} and C{"/"}.
    """

    request_id: str | None = None
    colo: str | None = None
    region: str | None = None
    country: str | None = None
    client_ip: str | None = None
    host: str | None = None
    scheme: str | None = None
    platform: RequestPlatform | None = None
    worker_name: str | None = None
    project_id: str | None = None
    cloud_run_service: str | None = None
    cloud_run_revision: str | None = None
    cloud_run_configuration: str | None = None
    cloud_run_region: str | None = None
    trace_context: TraceContext | None = None
    forwarded_for: tuple[str, ...] = field(default=(), converter=_to_tuple)
    forwarded_proto: str | None = None
    forwarded: str | None = None
    user_agent: str | None = None
    accept: str | None = None
    accept_language: str | None = None
    accept_encoding: str | None = None
    sec_gpc: str | None = None
    client_hints: ClientHints | None = None
    method: str = "GET"
    path: str = "/"
    raw_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON object of this metadata: the shape of the
        C{x-containerflare-metadata} header, every key present.
        """
        platform = self.platform
        trace = self.trace_context
        hints = self.client_hints
        return {
            "request_id": self.request_id,
            "colo": self.colo,
            "region": self.region,
            "country": self.country,
            "client_ip": self.client_ip,
            "host": self.host,
            "scheme": self.scheme,
            "platform": None if platform is None else platform.to_dict(),
            "worker_name": self.worker_name,
            "project_id": self.project_id,
            "cloud_run_service": self.cloud_run_service,
            "cloud_run_revision": self.cloud_run_revision,
            "cloud_run_configuration": self.cloud_run_configuration,
            "cloud_run_region": self.cloud_run_region,
            "trace_context": None if trace is None else trace.to_dict(),
            "forwarded_for": list(self.forwarded_for),
            "forwarded_proto": self.forwarded_proto,
            "forwarded": self.forwarded,
            "user_agent": self.user_agent,
            "accept": self.accept,
            "accept_language": self.accept_language,
            "accept_encoding": self.accept_encoding,
            "sec_gpc": self.sec_gpc,
            "client_hints": None if hints is None else hints.to_dict(),
            "method": self.method,
            "path": self.path,
            "raw_url": self.raw_url,
        }

    @classmethod
    def from_dict(cls, data: object) -> RequestMetadata:
        """
        Read metadata back from its JSON object (parsed JSON, not text).

        Never raises: something that is not an object gives the empty
        metadata, unknown keys are ignored, values of the wrong type (and a
        C{client_ip} that is not an IP address) are dropped; one log line
        lists what was dropped.
        """
        problems: Problems = []
        if isinstance(data, Mapping):
            fields = read_fields(data, problems)
        else:
            problems.append(("type", f"metadata is {type(data).__name__}, not an object"))
            fields = {}
        _log_problems(problems)
        return cls(**fields)


# Every field at its default, in declaration order.
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in attrs_fields(RequestMetadata)}
_new = object.__new__
_set_dict = object.__setattr__


def _from_fields(values: dict[str, Any]) -> RequestMetadata:
    """
    C{RequestMetadata(**values)} without the generated C{__init__}: for the
    request path, which builds one per request.

    @param values: field names (nothing else) to values of the right type;
        C{forwarded_for} may be any iterable of strings (converted as the
        field's converter does).  Taken over: not used by the caller after.
    """
    state = _DEFAULTS.copy()
    state.update(values)
    forwarded_for = state["forwarded_for"]
    if type(forwarded_for) is not tuple:
        state["forwarded_for"] = tuple(forwarded_for)
    instance = _new(RequestMetadata)
    _set_dict(instance, "__dict__", state)
    return instance  # type: ignore[no-any-return]
