# -*- test-case-name: tests.test_metadata_lazy -*-
"""
Request metadata worked out when a handler reads it, field by field.

The built-in providers return a L{RequestMetadata} whose fields are
computed on first read: a handler that reads C{host} and C{user_agent}
does not pay for the client address, the trace and the platform tag.

Only fields whose rule is a plain reading of one or two request headers are
computed alone (L{_CHEAP}), and only when the request has no
C{x-containerflare-metadata} header.  Any other field, any problem with a
header (too long, not UTF-8, not a host name) and any use of the value as
a whole (equality, hashing, repr, pickling, copying) builds every field at
once with L{build_metadata}, which also logs the problems; the instance is
then a plain L{RequestMetadata}.  The field-by-field values are the same as
the full build's (tests/test_metadata_lazy.py checks it on generated
requests).  The fields computed alone read the request's headers as they
were when the value was created (one copy, made in C); the full build reads
them when it runs, so a handler that changes the request's own headers after
asking for the metadata may see either.

Reads from several threads are safe without a lock: completing the value
puts every field into the instance's dict before it removes the pending
state, and the descriptors cope with finding the pending state gone (see
L{_complete}); two threads may both compute a field, with the same result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from containerflare._metadata import _DEFAULTS, MAX_HEADER_BYTES, RequestMetadata
from containerflare._sources import (
    _CF_HEADERS,
    _GOOD_HOSTS,
    _METADATA,
    _PLAIN_HEADERS,
    _address,
    _canonical,
    _host,
    _path,
    _peer,
    _Prepared,
    _prepared_for,
    build_metadata,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from twisted.web.iweb import IRequest

    from containerflare._environ import RuntimeConfig

#: A rule's answer when the field needs the full build.
_FULL: Any = object()

# Header names as _Pending.found has them (Headers' canonical capitalisation).
_METADATA_NAME = _canonical(_METADATA)
_HOST = _canonical(b"host")
_X_FORWARDED_HOST = _canonical(b"x-forwarded-host")
_X_FORWARDED_FOR = _canonical(b"x-forwarded-for")
_X_FORWARDED_PROTO = _canonical(b"x-forwarded-proto")
_FORWARDED = _canonical(b"forwarded")
_CF_CONNECTING_IP = _canonical(b"cf-connecting-ip")
_CLOUD_TRACE = _canonical(b"x-cloud-trace-context")
_TRACEPARENT = _canonical(b"traceparent")


class _Pending:
    """
    What a lazy metadata value is computed from, until it is complete.
    """

    __slots__ = ("request", "config", "now", "platform", "prepared", "found", "plain")

    def __init__(self, request: IRequest, config: RuntimeConfig, now: float, platform: str) -> None:
        self.request = request
        self.config = config
        self.now = now
        self.platform = platform
        self.prepared: _Prepared = _prepared_for(config, platform)
        # The request's headers copied once (in C) under the names
        # getAllRawHeaders gives them: a rule's read is then a dict look-up,
        # not Headers.getRawHeaders (two Python calls per name).
        self.found = found = dict(request.requestHeaders.getAllRawHeaders())
        # Without the Worker's header, every field comes from the request's
        # own headers and the environment.
        self.plain = not found.get(_METADATA_NAME)


def _text(values: Sequence[bytes] | None) -> Any:
    """
    A header's text as the full build reads it, from its values: L{None} if
    absent or empty, L{_FULL} if it has a problem (logged by the full build).
    """
    if not values:
        return None
    value = values[0] if len(values) == 1 else b", ".join(values)
    if len(value) > MAX_HEADER_BYTES:
        return _FULL
    if not value:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return _FULL


if TYPE_CHECKING:
    from typing import TypeAlias

    #: A field's rule: its value, or _FULL.
    _Rule: TypeAlias = Callable[[_Pending, RequestMetadata], Any]


def _method(pending: _Pending, metadata: RequestMetadata) -> Any:
    return pending.request.method.decode("latin-1") if pending.plain else _FULL


def _path_rule(pending: _Pending, metadata: RequestMetadata) -> Any:
    if not pending.plain:
        return _FULL
    problems: list[tuple[str, str]] = []
    path, _ = _path(pending.request, problems)
    return _FULL if problems else path


def _client_ip_rule(pending: _Pending, metadata: RequestMetadata) -> Any:
    # Proxies' lists (x-forwarded-for, forwarded) and their trusted-hops
    # rule are left to the full build.
    found = pending.found
    if not pending.plain or found.get(_X_FORWARDED_FOR) or found.get(_FORWARDED):
        return _FULL
    prepared = pending.prepared
    ip = None
    if not prepared.cloud_run:
        value = _text(found.get(_CF_CONNECTING_IP))
        if value is _FULL:
            return _FULL
        if value is not None:
            problems: list[tuple[str, str]] = []
            ip = _address(value, "cf-connecting-ip", problems)
            if problems:
                return _FULL
    if ip is None and (prepared.hops == 0 or prepared.generic):
        ip = _peer(pending.request)
    return ip


def _scheme_rule(pending: _Pending, metadata: RequestMetadata) -> Any:
    found = pending.found
    if not pending.plain or found.get(_X_FORWARDED_PROTO) or found.get(_FORWARDED):
        return _FULL
    return "https" if pending.request.isSecure() else "http"


def _raw_url_rule(pending: _Pending, metadata: RequestMetadata) -> Any:
    if not pending.plain:
        return _FULL
    problems: list[tuple[str, str]] = []
    path, absolute_url = _path(pending.request, problems)
    if problems:
        return _FULL
    if absolute_url is not None:
        return absolute_url
    # These two may complete the whole value; the answer is the same.
    host = metadata.host
    scheme = metadata.scheme
    if host is None or scheme is None:
        return None
    return f"{scheme}://{host}{path}"


def _trace_rule(pending: _Pending, metadata: RequestMetadata) -> Any:
    # Asked by log correlation for every log line of a request: a request
    # without trace headers has no trace, whatever else it says.
    found = pending.found
    if not pending.plain or found.get(_CLOUD_TRACE) or found.get(_TRACEPARENT):
        return _FULL
    return None


#: Field -> its rule, for the fields computed alone that are not one
#: header's text (L{_HEADER_FIELDS}) or the host (L{_HostField}).
_RULES: dict[str, _Rule] = {
    "method": _method,
    "path": _path_rule,
    "client_ip": _client_ip_rule,
    "scheme": _scheme_rule,
    "raw_url": _raw_url_rule,
    "trace_context": _trace_rule,
}

#: Field -> (its header, whether a cf-* header): the fields that are one
#: header's text, as the full build reads them.  cf-* headers are ignored on
#: Cloud Run (any client can send them); on Cloudflare the container's own
#: location fills what the request does not say.
_HEADER_FIELDS: dict[str, tuple[bytes, bool]] = {
    **{key: (name, False) for key, name in _PLAIN_HEADERS},
    **{key: (name, True) for key, name in _CF_HEADERS},
}

#: Every field that can be computed alone.
_CHEAP = frozenset(_RULES) | frozenset(_HEADER_FIELDS) | {"host"}

_set = object.__setattr__


class _Field:
    """
    A field of L{_LazyMetadata} not read yet: computed on first read and
    kept in the instance's C{__dict__}, which later reads find first (a
    non-data descriptor, as C{functools.cached_property}, without its lock).
    """

    __slots__ = ("name", "rule")

    def __init__(self, name: str, rule: _Rule | None) -> None:
        self.name = name
        self.rule = rule

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        state = instance.__dict__
        rule = self.rule
        pending = state.get("_cf_pending")  # None: see _HeaderField
        if rule is not None and pending is not None:
            value = rule(pending, instance)
            if value is not _FULL and "_cf_pending" in state:
                state[self.name] = value
                return value
        return getattr(_complete(instance), self.name)


class _HeaderField(_Field):
    """
    A field that is one header's text (see L{_HEADER_FIELDS}), its rule in
    the descriptor itself: a Python call costs as much as the rule.
    """

    __slots__ = ("header", "cf")

    def __init__(self, name: str, header: bytes, cf: bool) -> None:
        super().__init__(name, None)
        self.header = _canonical(header)
        self.cf = cf

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        state = instance.__dict__
        # None: another thread completed the value since this descriptor
        # was found (see _complete).
        pending: _Pending | None = state.get("_cf_pending")
        if pending is not None and pending.plain and not (self.cf and pending.prepared.cloud_run):
            value = _text(pending.found.get(self.header))
            if value is None and self.cf and pending.prepared.cloudflare:
                for key, default in pending.prepared.defaults:
                    if key == self.name:
                        value = default
                        break
            if value is not _FULL:
                state[self.name] = value
                return value
        return getattr(_complete(instance), self.name)


class _HostField(_Field):
    """
    C{host}, from the Host header alone.  x-forwarded-host (a proxy's, with
    the trusted-hops rule) is left to the full build; so is Cloud Run,
    whose Host header also gives defaults.
    """

    __slots__ = ()

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        state = instance.__dict__
        pending: _Pending | None = state.get("_cf_pending")  # None: see _HeaderField
        if (
            pending is not None
            and pending.plain
            and not pending.prepared.cloud_run
            and not pending.found.get(_X_FORWARDED_HOST)
        ):
            value = _text(pending.found.get(_HOST))
            if value is None or value in _GOOD_HOSTS:  # as matched before: no list, no blanks
                state["host"] = value
                return value
            if value is not _FULL:
                problems: list[tuple[str, str]] = []
                value = _host(value, "host", problems, 1)
                if not problems:
                    state["host"] = value
                    return value
        return _complete(instance).host


class _LazyMetadata(RequestMetadata):
    """
    A L{RequestMetadata} still being worked out; see the module docstring.
    Becomes a plain L{RequestMetadata} once complete.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return _complete(self) == other

    def __ne__(self, other: object) -> bool:
        return _complete(self) != other

    def __hash__(self) -> int:
        return hash(_complete(self))

    def __repr__(self) -> str:
        return repr(_complete(self))

    def __reduce_ex__(self, protocol: Any) -> Any:
        return _complete(self).__reduce_ex__(protocol)

    def __dir__(self) -> list[str]:
        return dir(_complete(self))


for _name in _DEFAULTS:
    if _name == "host":
        setattr(_LazyMetadata, _name, _HostField(_name, None))
    elif _name in _HEADER_FIELDS:
        setattr(_LazyMetadata, _name, _HeaderField(_name, *_HEADER_FIELDS[_name]))
    else:
        setattr(_LazyMetadata, _name, _Field(_name, _RULES.get(_name)))
del _name


def _complete(metadata: RequestMetadata) -> RequestMetadata:
    """
    Compute every field of C{metadata} (in place) and make it a plain
    L{RequestMetadata}.
    """
    state = metadata.__dict__
    pending = state.get("_cf_pending")
    if pending is not None:
        full = build_metadata(pending.request, pending.config, pending.now, pending.platform)
        # Every field in the instance's dict first, then the pending state
        # out: a read from another thread meanwhile either finds its field
        # in the dict or still finds the pending state, never neither.  Two
        # threads completing at once both build; the values are equal.
        state.update(full.__dict__)
        state.pop("_cf_pending", None)
    _set(metadata, "__class__", RequestMetadata)
    return metadata


def lazy_metadata(
    request: IRequest, config: RuntimeConfig, now: float, platform: str
) -> RequestMetadata:
    """
    The metadata of one request, computed field by field as it is read
    (see L{build_metadata} for the rules and arguments; problems are logged
    when the fields they concern are read).
    """
    try:
        pending = _Pending(request, config, now, platform)
    except Exception:  # noqa: BLE001 - a broken request: the full build copes
        return build_metadata(request, config, now, platform)
    instance = object.__new__(_LazyMetadata)
    instance.__dict__["_cf_pending"] = pending
    return instance


def request_metadata(request: IRequest, config: RuntimeConfig, now: float) -> RequestMetadata:
    """
    The metadata of a request served by containerflare: lazy with the
    built-in providers (whose C{request_metadata} builds every field at
    once), the configured provider's own otherwise.
    """
    provider = config.provider
    platform = _BUILT_IN.get(type(provider))
    if platform is None:
        return provider.request_metadata(request, config, now)
    return lazy_metadata(request, config, now, platform)


def _built_in() -> dict[type, str]:
    from containerflare._platforms import CloudflareProvider, CloudRunProvider, GenericProvider

    return {CloudflareProvider: "cloudflare", CloudRunProvider: "cloud_run", GenericProvider: "generic"}


_BUILT_IN = _built_in()
