# -*- test-case-name: tests.test_metadata_sources -*-
"""
Building a request's L{RequestMetadata} from its sources: the Worker's
header when trusted, the request's headers, the platform's environment.

The rules (docs/metadata.md has them per field):

  - C{x-containerflare-metadata} is used when trusted: with
    C{CONTAINERFLARE_METADATA_SECRET} set, only with a valid, fresh
    signature (L{containerflare._trust}); without one, on Cloudflare and
    generic but never on Cloud Run, where the service is public.  Its
    non-null values win; the fields it leaves null are filled from below.
  - Request headers.  On Cloud Run the C{cf-*} headers are ignored: any
    client can send them there.
  - client_ip: the header's; else C{cf-connecting-ip} (not on Cloud Run);
    else, with N = C{CONTAINERFLARE_TRUSTED_HOPS} >= 1, the N-th address
    from the right of C{x-forwarded-for} (each trusted proxy appends one),
    or of C{forwarded: for=} when there is no x-forwarded-for; with N = 0,
    and on generic when nothing else says, the TCP peer.
  - Platform defaults last (worker name, Cloud Run service, region, ...).

Nothing here raises for bad input: every problem is collected, the field
falls back, and the request gets one (rate-limited) log line.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.web.http_headers import Headers

from containerflare._metadata import (
    MAX_HEADER_BYTES,
    ClientHints,
    CloudflareRequestPlatform,
    CloudRunRequestPlatform,
    Problems,
    RequestMetadata,
    TraceContext,
    _from_fields,
    normalize_ip,
    read_fields,
)
from containerflare._trust import limiter_for, verify_signature

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

    from containerflare._environ import RuntimeConfig

_METADATA = b"x-containerflare-metadata"
_SIGNATURE = b"x-containerflare-signature"

# Compiled once, at import: nothing is compiled per request.
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]{1,3}))?")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]{0,15}")
# A URI authority: reg-name or IP literal, optional port; no "/", "@", spaces.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]{1,253})(?::[0-9]{1,5})?")
# One Forwarded (RFC 7239) pair: token "=" (token / quoted-string), then the separator.
_FORWARDED_PAIR = re.compile(
    r"[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z\-]+)[ \t]*=[ \t]*"
    r"(\"(?:[^\"\\]|\\.)*\"|[!#$%&'*+.^_`|~0-9A-Za-z\-:\[\]]*)[ \t]*([;,]|$)"
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

# Legacy Cloud Run hosts (<svc>-<hash>-<code>.a.run.app) carry a region code
# Google does not publish as a table; only codes seen on real services are
# mapped, an unknown one gives no region rather than a wrong one.
_RUN_APP_REGION_CODES = {
    "uc": "us-central1",
    "ue": "us-east1",
    "uk": "us-east4",
    "uw": "us-west1",
    "ew": "europe-west1",
    "nw": "europe-west2",
    "ey": "europe-west3",
    "an": "asia-northeast1",
    "as": "asia-southeast1",
    "de": "asia-east1",
}

_PLAIN_HEADERS = (
    ("user_agent", b"user-agent"),
    ("accept", b"accept"),
    ("accept_language", b"accept-language"),
    ("accept_encoding", b"accept-encoding"),
    ("sec_gpc", b"sec-gpc"),
)
_CF_HEADERS = (
    ("request_id", b"cf-ray"),
    ("colo", b"cf-colo"),
    ("country", b"cf-ipcountry"),
    ("region", b"cf-region"),
)


def _canonical(name: bytes) -> bytes:
    # The capitalisation Headers.getAllRawHeaders() documents for its keys,
    # worked out once per name at import through the public API.
    headers = Headers()
    headers.addRawHeader(name, b"")
    return next(iter(headers.getAllRawHeaders()))[0]


class _Headers:
    """
    The request headers metadata is read from, decoded on demand, problems
    collected.

    One pass over the request's headers keeps the ones containerflare reads
    (by their canonical capitalisation, a dict lookup each), under their
    lowercase names in C{found}: a header the request does not have then
    costs one C{in} test, not a look-up per name.
    """

    __slots__ = ("found", "problems")

    def __init__(self, headers: Headers, problems: Problems) -> None:
        wanted = _WANTED
        found: dict[bytes, Sequence[bytes]] = {}
        for name, values in headers.getAllRawHeaders():
            key = wanted.get(name)
            if key is not None:
                found[key] = values
        self.found = found
        self.problems = problems

    def raw(self, name: bytes) -> bytes | None:
        values = self.found.get(name)
        if not values:
            return None
        # Repeated headers combine as one comma-separated list (RFC 9110 5.3).
        value = values[0] if len(values) == 1 else b", ".join(values)
        if len(value) > MAX_HEADER_BYTES:
            self.problems.append(
                ("oversized", f"{name.decode()} is longer than {MAX_HEADER_BYTES} bytes; ignored")
            )
            return None
        return value

    def text(self, name: bytes) -> str | None:
        value = self.raw(name)
        if not value:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            self.problems.append(("encoding", f"{name.decode()} is not UTF-8; ignored"))
            return None


#: Canonical capitalisation -> lowercase name, for every header read here.
_WANTED: dict[bytes, bytes] = {
    _canonical(name): name
    for name in (
        _METADATA,
        _SIGNATURE,
        *(n for _, n in _PLAIN_HEADERS),
        *(n for _, n in _CF_HEADERS),
        *(n for _, n in ClientHints.HEADERS),
        b"cf-connecting-ip",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"forwarded",
        b"host",
        b"x-cloud-trace-context",
        b"traceparent",
    )
}


def _pick(entries: Sequence[str], hops: int) -> str:
    # The hops-th entry from the right; with fewer entries than trusted
    # proxies every entry was written by one of them, so the leftmost.
    return entries[-hops] if len(entries) >= hops else entries[0]


def _split_list(value: str) -> list[str]:
    if "," not in value:  # the common case: one entry
        value = value.strip()
        return [value] if value else []
    return [item for item in (part.strip() for part in value.split(",")) if item]


def parse_forwarded(value: str, problems: Problems) -> list[dict[str, str]]:
    """
    The elements of a C{Forwarded} header (RFC 7239), each a dict of
    lowercase parameter names to unquoted values.  Parsing stops at the
    first malformed part (logged); what came before it is kept.
    """
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    pos = 0
    end = len(value)
    while pos < end:
        if value[pos] in " \t,":
            if value[pos] == "," and current:
                elements.append(current)
                current = {}
            pos += 1
            continue
        match = _FORWARDED_PAIR.match(value, pos)
        if match is None or match.end() == pos:
            problems.append(("forwarded", "malformed forwarded header; parsed up to the error"))
            break
        key, raw, sep = match.group(1, 2, 3)
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if "\\" in raw else raw[1:-1]
        current[key.lower()] = raw
        pos = match.end()
        if sep == ",":
            elements.append(current)
            current = {}
    if current:
        elements.append(current)
    return elements


# (trace_id, span_id, sampled, raw, version, flags): parsed without building
# a value, so that a request with both trace headers builds one TraceContext.
_Trace = tuple[str, "str | None", "bool | None", str, "str | None", "str | None"]


def _cloud_trace(value: str, problems: Problems) -> _Trace | None:
    match = _CLOUD_TRACE.fullmatch(value.strip())
    if match is None:
        problems.append(("trace", "malformed x-cloud-trace-context; ignored"))
        return None
    trace_id = match.group(1).lower()
    if trace_id == _ZERO_TRACE:
        problems.append(("trace", "x-cloud-trace-context has an all-zero trace id; ignored"))
        return None
    span_id = None
    span = match.group(2)
    if span is not None:
        number = int(span, 10)
        if 0 < number < 1 << 64:
            span_id = f"{number:016x}"
        else:
            problems.append(("trace", "x-cloud-trace-context span id out of range; span dropped"))
    options = match.group(3)
    sampled = None if options is None else bool(int(options, 10) & 1)
    return (trace_id, span_id, sampled, value, None, None)


def _traceparent(value: str, problems: Problems) -> _Trace | None:
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        problems.append(("trace", "malformed traceparent; ignored"))
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if (
        version == "ff"
        or (version == "00" and rest is not None)
        or trace_id == _ZERO_TRACE
        or span_id == _ZERO_SPAN
    ):
        problems.append(("trace", "invalid traceparent; ignored"))
        return None
    return (trace_id, span_id, bool(int(flags, 16) & 1), value, version, flags)


def _trace_value(parsed: _Trace | None, project_id: str | None) -> TraceContext | None:
    if parsed is None:
        return None
    trace_id, span_id, sampled, raw, version, flags = parsed
    return TraceContext(trace_id, span_id, sampled, project_id, raw, version, flags)


def parse_cloud_trace(
    value: str, problems: Problems, project_id: str | None = None
) -> TraceContext | None:
    """
    Parse C{x-cloud-trace-context: TRACE_ID[/SPAN_ID][;o=OPTIONS]}.

    The decimal span id becomes 16 hex digits; C{o} bit 0 is C{sampled}.
    """
    return _trace_value(_cloud_trace(value, problems), project_id)


def parse_traceparent(
    value: str, problems: Problems, project_id: str | None = None
) -> TraceContext | None:
    """
    Parse W3C C{traceparent: VERSION-TRACEID-PARENTID-FLAGS} (lowercase hex,
    as the specification requires; version C{ff} and all-zero ids are invalid,
    version C{00} allows nothing after the flags).
    """
    return _trace_value(_traceparent(value, problems), project_id)


def read_trace(headers: _Headers, project_id: str | None) -> TraceContext | None:
    """
    The trace of a request: C{x-cloud-trace-context} first (what Cloud
    Logging groups by), completed by C{traceparent} when both name the same
    trace (its version and flags, and a span or sampled flag the first
    lacks); C{traceparent} alone otherwise.
    """
    problems = headers.problems
    cloud_value = headers.text(b"x-cloud-trace-context")
    w3c_value = headers.text(b"traceparent")
    cloud = _cloud_trace(cloud_value, problems) if cloud_value else None
    w3c = _traceparent(w3c_value, problems) if w3c_value else None
    if cloud is None:
        return _trace_value(w3c, project_id)
    if w3c is None or w3c[0] != cloud[0]:
        return _trace_value(cloud, project_id)
    return TraceContext(
        trace_id=cloud[0],
        span_id=cloud[1] or w3c[1],
        sampled=w3c[2] if cloud[2] is None else cloud[2],
        project_id=project_id,
        raw=cloud[3],
        version=w3c[4],
        flags=w3c[5],
    )


def _address(text: str, source: str, problems: Problems) -> str | None:
    ip = normalize_ip(text)
    if ip is None:
        stripped = text.strip().strip('"')
        # RFC 7239 allows "unknown" and obfuscated "_names": not errors.
        if stripped.lower() != "unknown" and not stripped.startswith("_"):
            problems.append(("address", f"{source} has an entry that is not an IP address"))
    return ip


def client_ip(
    headers: _Headers,
    forwarded_for: Sequence[str],
    forwarded: list[dict[str, str]] | None,
    *,
    hops: int,
    trust_cf: bool,
) -> str | None:
    """
    The client's address from the request's headers (see the module
    docstring); L{None} when they do not say.
    """
    problems = headers.problems
    if trust_cf:
        value = headers.text(b"cf-connecting-ip")
        if value is not None:
            ip = _address(value, "cf-connecting-ip", problems)
            if ip is not None:
                return ip
    if hops == 0:
        return None
    if forwarded_for:
        return _address(_pick(forwarded_for, hops), "x-forwarded-for", problems)
    if forwarded:
        fors = [element["for"] for element in forwarded if "for" in element]
        if fors:
            return _address(_pick(fors, hops), "forwarded", problems)
    return None


def _peer(request: IRequest) -> str | None:
    try:
        address = request.getClientAddress()
    except Exception:  # noqa: BLE001 - any IRequest; the peer is optional
        return None
    host = getattr(address, "host", None)
    return normalize_ip(host) if isinstance(host, str) else None


# Host names that matched _HOST: a service sees the same few on every
# request, so each is matched once.  Bounded, since they come from outside.
_GOOD_HOSTS: set[str] = set()
_GOOD_HOSTS_MAX = 256


def _host(value: str | None, source: str, problems: Problems, hops: int) -> str | None:
    if value is None:
        return None
    if "," in value:
        entries = _split_list(value)
        if not entries:
            return None
        host = _pick(entries, max(hops, 1))
    else:  # one entry: the common case
        host = value.strip()
        if not host:
            return None
    if host not in _GOOD_HOSTS:
        if _HOST.fullmatch(host) is None:
            problems.append(("host", f"{source} is not a host name; ignored"))
            return None
        if len(_GOOD_HOSTS) >= _GOOD_HOSTS_MAX:
            _GOOD_HOSTS.clear()
        _GOOD_HOSTS.add(host)
    return host


def _path(request: IRequest, problems: Problems) -> tuple[str, str | None]:
    uri: bytes = request.uri
    try:
        text = uri.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(("encoding", "request target is not UTF-8; non-ASCII bytes percent-encoded"))
        text = "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in uri)
    if text.startswith("/") or "://" not in text:
        return text, None
    # An absolute-form target (GET http://host/path): the URL as such, the
    # path from it.
    after = text.split("://", 1)[1]
    slash = after.find("/")
    return (after[slash:] if slash >= 0 else "/"), text


def _header_fields(
    values: Sequence[bytes],
    signature: Sequence[bytes] | None,
    config: RuntimeConfig,
    now: float,
    on_cloud_run: bool,
    problems: Problems,
) -> dict[str, Any]:
    # values: the x-containerflare-metadata header's, at least one.
    if len(values) > 1:
        problems.append(("header", "more than one x-containerflare-metadata header; ignored"))
        return {}
    raw = values[0]
    if len(raw) > MAX_HEADER_BYTES:
        problems.append(
            ("oversized", f"x-containerflare-metadata is longer than {MAX_HEADER_BYTES} bytes; ignored")
        )
        return {}
    secret = config.metadata_secret
    if secret:
        reason = verify_signature(raw, signature, secret, now)
        if reason is not None:
            problems.append(("signature", f"x-containerflare-metadata ignored: {reason}"))
            return {}
    elif on_cloud_run:
        problems.append(
            (
                "untrusted",
                (
                    "x-containerflare-metadata ignored: not trusted on cloud_run"
                    " without CONTAINERFLARE_METADATA_SECRET"
                ),
            )
        )
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        problems.append(("encoding", "x-containerflare-metadata is not UTF-8; ignored"))
        return {}
    except (ValueError, RecursionError):
        problems.append(("json", "x-containerflare-metadata is not valid JSON; ignored"))
        return {}
    if not isinstance(data, dict):
        problems.append(("json", "x-containerflare-metadata is not a JSON object; ignored"))
        return {}
    return read_fields(data, problems)


class _Prepared:
    """
    What one configuration decides for every request on one platform,
    worked out once instead of per request: the environment's defaults and
    the platform tag they give.
    """

    __slots__ = ("cloudflare", "cloud_run", "generic", "hops", "defaults", "worker_name", "cf_tag", "run_tag")

    def __init__(self, config: RuntimeConfig, platform: str) -> None:
        self.cloudflare = platform == "cloudflare"
        self.cloud_run = platform == "cloud_run"
        self.generic = platform == "generic"
        self.hops: int = config.trusted_hops
        env = config.platform
        sources: tuple[tuple[str, str], ...]
        if self.cloudflare:
            # The worker's name, then the container's own location: for a
            # request that says nothing.
            sources = (
                ("worker_name", "worker_name"),
                ("colo", "location"),
                ("region", "region"),
                ("country", "country"),
            )
        elif self.cloud_run:
            sources = (
                ("cloud_run_service", "service"),
                ("cloud_run_revision", "revision"),
                ("cloud_run_configuration", "configuration"),
                ("project_id", "project_id"),
                ("cloud_run_region", "region"),
            )
        else:
            sources = ()
        defaults = []
        for key, attribute in sources:
            value = getattr(env, attribute, None)
            if value is not None:
                defaults.append((key, value))
        self.defaults: tuple[tuple[str, Any], ...] = tuple(defaults)
        self.worker_name: Any = getattr(env, "worker_name", None) if self.cloudflare else None
        # Frozen values, so one can serve every request that has the same.
        self.cf_tag = CloudflareRequestPlatform(worker_name=self.worker_name)
        # The last Cloud Run tag built, with the values it was built from.
        self.run_tag: tuple[tuple[Any, ...], CloudRunRequestPlatform] | None = None


# id(config) -> platform -> _Prepared; an entry goes with its configuration.
_prepared: dict[int, dict[str, _Prepared]] = {}


def _prepared_for(config: RuntimeConfig, platform: str) -> _Prepared:
    key = id(config)
    per_platform = _prepared.get(key)
    if per_platform is not None:
        found = per_platform.get(platform)
        if found is not None:
            return found
    prepared = _Prepared(config, platform)
    if per_platform is None:
        try:
            weakref.finalize(config, _prepared.pop, key, None)
        except TypeError:
            return prepared  # not weak-referenceable: not kept
        per_platform = _prepared[key] = {}
    per_platform[platform] = prepared
    return prepared


def build_metadata(
    request: IRequest,
    config: RuntimeConfig,
    now: float,
    platform: str,
) -> RequestMetadata:
    """
    The metadata of one request on one platform.

    @param platform: C{"cloudflare"}, C{"cloud_run"} or C{"generic"}: the
        provider building it (not necessarily C{config.platform.name} in
        tests).
    @return: never raises for bad input; problems are logged once per
        request, rate-limited per configuration.
    """
    problems: Problems = []
    try:
        metadata = _build(request, config, now, platform, problems)
    except Exception as e:  # noqa: BLE001
        # A bug, not bad input: the handler must still run, and the minimal
        # metadata is better than a 500.
        problems.append(("bug", f"metadata parsing failed ({e!r}); minimal metadata used"))
        try:
            metadata = RequestMetadata(
                method=request.method.decode("latin-1"), path=request.uri.decode("latin-1")
            )
        except Exception:  # noqa: BLE001
            metadata = RequestMetadata()
    if problems:
        limiter_for(config).warn(
            tuple(sorted({kind for kind, _ in problems})),
            now,
            "; ".join(text for _, text in problems),
        )
    return metadata


def _build(
    request: IRequest,
    config: RuntimeConfig,
    now: float,
    platform: str,
    problems: Problems,
) -> RequestMetadata:
    # Every header is read (decoded, checked) at most once, in the order of
    # the rules, and only when the request has it: a header the request
    # lacks costs one "in found".
    prepared = _prepared_for(config, platform)
    on_cloud_run = prepared.cloud_run
    headers = _Headers(request.requestHeaders, problems)
    found = headers.found
    text = headers.text
    values = found.get(_METADATA)
    fields = (
        _header_fields(values, found.get(_SIGNATURE), config, now, on_cloud_run, problems)
        if values
        else {}
    )
    get = fields.get
    # Whether the header gave fields: until the defaults, a field not set by
    # the header is unset (each check below runs before the field is set).
    given = bool(fields)
    hops = prepared.hops

    if not on_cloud_run:
        # Cloudflare's edge sets these; on Cloud Run any client can.
        for key, name in _CF_HEADERS:
            if name in found and get(key) is None:
                value = text(name)
                if value is not None:
                    fields[key] = value
    for key, name in _PLAIN_HEADERS:
        if name in found and get(key) is None:
            value = text(name)
            if value is not None:
                fields[key] = value

    # client_ip and scheme come from what the platform's proxies wrote on
    # this request, never from the metadata header's forwarded_* values.
    need_ip = not given or get("client_ip") is None
    need_scheme = not given or get("scheme") is None
    need_forwarded_for = not given or get("forwarded_for") is None
    xff_entries: list[str] = []
    if (need_ip or need_forwarded_for) and b"x-forwarded-for" in found:
        xff = text(b"x-forwarded-for")
        if xff:
            xff_entries = _split_list(xff)
    if need_forwarded_for:
        fields["forwarded_for"] = xff_entries
    forwarded_text = None
    if b"forwarded" in found and (need_ip or need_scheme or get("forwarded") is None):
        forwarded_text = text(b"forwarded")
        if forwarded_text is not None and get("forwarded") is None:
            fields["forwarded"] = forwarded_text
    # Parsed only when x-forwarded-for / x-forwarded-proto do not answer.
    forwarded_elements: list[dict[str, str]] | None = None
    if need_ip and not xff_entries and forwarded_text and hops:
        forwarded_elements = parse_forwarded(forwarded_text, problems)

    if need_ip:
        ip = None
        if xff_entries or forwarded_elements or (not on_cloud_run and b"cf-connecting-ip" in found):
            ip = client_ip(
                headers,
                xff_entries,
                forwarded_elements,
                hops=hops,
                trust_cf=not on_cloud_run,
            )
        if ip is None and (hops == 0 or prepared.generic):
            ip = _peer(request)
        if ip is not None:
            fields["client_ip"] = ip

    proto = None
    if b"x-forwarded-proto" in found and (need_scheme or get("forwarded_proto") is None):
        proto = text(b"x-forwarded-proto")
        if proto is not None and get("forwarded_proto") is None:
            fields["forwarded_proto"] = proto
    if need_scheme:
        scheme = None
        if proto:
            entries = _split_list(proto)
            if entries:
                scheme = _pick(entries, max(hops, 1)).lower()
        if scheme is None and forwarded_text:
            if forwarded_elements is None:
                forwarded_elements = parse_forwarded(forwarded_text, problems)
            protos = [e["proto"] for e in forwarded_elements if "proto" in e]
            if protos:
                scheme = _pick(protos, max(hops, 1)).lower()
        if scheme is not None and _SCHEME.fullmatch(scheme) is None:
            problems.append(("scheme", "forwarded protocol is not a URL scheme; ignored"))
            scheme = None
        if scheme is None:
            scheme = "https" if request.isSecure() else "http"
        fields["scheme"] = scheme

    host_header = None
    need_host = not given or get("host") is None
    if (need_host or on_cloud_run) and b"host" in found:
        host_header = _host(text(b"host"), "host", problems, 1)
    if need_host:
        host = None
        if b"x-forwarded-host" in found:
            host = _host(text(b"x-forwarded-host"), "x-forwarded-host", problems, hops)
        if host is None:
            host = host_header
        if host is not None:
            fields["host"] = host

    if not given or get("client_hints") is None:
        hints = None
        for key, name in ClientHints.HEADERS:
            if name in found:
                value = text(name)
                if value is not None:
                    if hints is None:
                        hints = {}
                    hints[key] = value
        if hints is not None:
            fields["client_hints"] = ClientHints(**hints)

    path, absolute_url = _path(request, problems)
    if not given or get("method") is None:
        fields["method"] = request.method.decode("latin-1")
    if not given or get("path") is None:
        fields["path"] = path
    if absolute_url is not None and (not given or get("raw_url") is None):
        fields["raw_url"] = absolute_url

    if prepared.cloudflare:
        _cloudflare_defaults(fields, prepared)
    elif on_cloud_run:
        _cloud_run_defaults(fields, prepared, host_header)
    if (b"x-cloud-trace-context" in found or b"traceparent" in found) and get("trace_context") is None:
        trace = read_trace(headers, get("project_id"))
        if trace is not None:
            fields["trace_context"] = trace
            if on_cloud_run and get("request_id") is None:
                fields["request_id"] = trace.trace_id

    raw_url = get("raw_url")
    if raw_url is None or "://" not in raw_url:
        host = get("host")
        scheme = get("scheme")
        if host is not None and scheme is not None:
            fields["raw_url"] = f"{scheme}://{host}{get('path')}"
    return _from_fields(fields)


def _cloudflare_defaults(fields: dict[str, Any], prepared: _Prepared) -> None:
    get = fields.get
    for key, value in prepared.defaults:
        if get(key) is None:
            fields[key] = value
    tag = get("platform")
    worker_name = tag.worker_name if isinstance(tag, CloudflareRequestPlatform) else None
    if worker_name is None:
        worker_name = get("worker_name")
    fields["platform"] = (
        prepared.cf_tag
        if worker_name == prepared.worker_name
        else CloudflareRequestPlatform(worker_name=worker_name)
    )


def run_app_region(host: str) -> str | None:
    """
    The region named by a C{run.app} host name, if any.
    """
    labels = host.lower().rsplit(":", 1)[0].split(".") if not host.startswith("[") else []
    if len(labels) < 3 or labels[-2:] != ["run", "app"]:
        return None
    if len(labels) == 4 and labels[1] == "a":
        # <svc>-<hash>-<code>.a.run.app
        return _RUN_APP_REGION_CODES.get(labels[0].rsplit("-", 1)[-1])
    if len(labels) == 4:
        # <svc>-<project number>.<region>.run.app
        return labels[1] or None
    return None


def run_app_project_number(host: str) -> str | None:
    """
    The project number in a C{<svc>-<number>.<region>.run.app} host name.
    """
    labels = host.lower().rsplit(":", 1)[0].split(".") if not host.startswith("[") else []
    if len(labels) != 4 or labels[-2:] != ["run", "app"] or labels[1] == "a":
        return None
    number = labels[0].rsplit("-", 1)[-1]
    return number if number.isdigit() and number.isascii() else None


# host -> (run_app_region(host), run_app_project_number(host)): a service
# sees the same few host names.  Bounded, since they come from outside.
_run_app_hosts: dict[str, tuple[str | None, str | None]] = {}
_RUN_APP_HOSTS_MAX = 256


def _cloud_run_defaults(fields: dict[str, Any], prepared: _Prepared, host: str | None) -> None:
    get = fields.get
    for key, value in prepared.defaults:
        if get(key) is None:
            fields[key] = value
    # The Host header (set by Google's front end), not x-forwarded-host,
    # which a client may send.
    if host is not None:
        need_region = get("cloud_run_region") is None
        need_project = get("project_id") is None
        if need_region or need_project:
            known = _run_app_hosts.get(host)
            if known is None:
                if len(_run_app_hosts) >= _RUN_APP_HOSTS_MAX:
                    _run_app_hosts.clear()
                known = _run_app_hosts[host] = (run_app_region(host), run_app_project_number(host))
            region, number = known
            if need_region and region is not None:
                fields["cloud_run_region"] = region
            if need_project and number is not None:
                fields["project_id"] = number
    if get("region") is None and get("cloud_run_region") is not None:
        fields["region"] = get("cloud_run_region")
    if get("worker_name") is None and get("cloud_run_service") is not None:
        fields["worker_name"] = get("cloud_run_service")
    tag = get("platform")
    if isinstance(tag, CloudRunRequestPlatform):
        values: tuple[Any, ...] = (
            tag.service if tag.service is not None else get("cloud_run_service"),
            tag.revision if tag.revision is not None else get("cloud_run_revision"),
            tag.configuration if tag.configuration is not None else get("cloud_run_configuration"),
            tag.project_id if tag.project_id is not None else get("project_id"),
            tag.region if tag.region is not None else get("cloud_run_region"),
        )
    else:
        values = (
            get("cloud_run_service"),
            get("cloud_run_revision"),
            get("cloud_run_configuration"),
            get("project_id"),
            get("cloud_run_region"),
        )
    last = prepared.run_tag
    if last is not None and last[0] == values:
        fields["platform"] = last[1]
        return
    service, revision, configuration, project_id, region = values
    made = CloudRunRequestPlatform(
        service=service,
        revision=revision,
        configuration=configuration,
        project_id=project_id,
        region=region,
    )
    prepared.run_tag = (values, made)
    fields["platform"] = made
