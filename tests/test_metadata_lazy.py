"""
Metadata computed field by field as a handler reads it (containerflare._lazy)
gives exactly what the full build gives, logs the same problems, and
behaves as a plain RequestMetadata value.
"""

from __future__ import annotations

import copy
import pickle

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs
from twisted.web.server import Request

from containerflare import ContainerContext, RequestMetadata
from containerflare._context import Runtime, attach
from containerflare._lazy import _CHEAP, _LazyMetadata, lazy_metadata, request_metadata
from containerflare._metadata import _DEFAULTS
from containerflare._sources import build_metadata
from containerflare.command import CommandClient

from ._metadata_requests import ENVIRONS, NOW, config, header_value, make_request

FIELDS = list(_DEFAULTS)
PLATFORMS = ["cloudflare", "cloud_run", "generic"]

# Headers the rules read, with values that are fine, odd or wrong.
HEADER_NAMES = [
    b"host", b"x-forwarded-host", b"user-agent", b"accept", b"accept-language",
    b"accept-encoding", b"sec-gpc", b"cf-ray", b"cf-colo", b"cf-ipcountry", b"cf-region",
    b"cf-connecting-ip", b"x-forwarded-for", b"x-forwarded-proto", b"forwarded",
    b"x-cloud-trace-context", b"traceparent", b"sec-ch-ua",
]  # fmt: skip
VALUES = st.sampled_from(
    [b"", b" ", b"example.com", b"example.com:8443", b"a b", b"203.0.113.9", b"https",
     b"ray-1", b"ZRH", b"CH", b"\xe9t\xe9", b"x" * 9000, b"1.2.3.4, 5.6.7.8", b"[::1]:80",
     b"for=192.0.2.1;proto=https", b"0af7651916cd43dd8448eb211c80319c/1;o=1"]
) | st.binary(max_size=30)
HEADERS = st.lists(st.tuples(st.sampled_from(HEADER_NAMES), VALUES), max_size=6)
URIS = st.sampled_from([b"/", b"/a/b?c=d", b"http://h.example/p?q", b"*"])


def _request(headers: list[tuple[bytes, bytes]], uri: bytes = b"/") -> Request:
    # Parsed with a plain head, then given the generated headers and target
    # (which twisted.web's parser might refuse: too long, control bytes).
    request = make_request([(b"host", b"127.0.0.1:8080")])
    request.uri = uri
    for name, value in headers:
        request.requestHeaders.addRawHeader(name, value)
    return request


def _problem_lines(events: list[dict]) -> list[str]:
    return sorted(str(e.get("problem") or e.get("log_format")) for e in events if e.get("log_level").name in ("warn", "error"))


#: The container's own location (Cloudflare fills colo/region/country from it).
LOCATION = {"CLOUDFLARE_LOCATION": "ZRH", "CLOUDFLARE_REGION": "WEUR", "CLOUDFLARE_COUNTRY_A2": "CH"}


@settings(max_examples=300)
@given(st.sampled_from(PLATFORMS), st.integers(0, 2), st.booleans(), HEADERS, URIS, st.sampled_from(FIELDS))
def test_each_field_alone_equals_the_full_build(
    platform: str,
    hops: int,
    located: bool,
    headers: list[tuple[bytes, bytes]],
    uri: bytes,
    field: str,
) -> None:
    """
    Whatever the request, reading one field first gives the full build's
    value for it; then the whole value equals the full build.
    """
    cfg = config(platform, CONTAINERFLARE_TRUSTED_HOPS=str(hops), **(LOCATION if located else {}))
    request = _request(headers, uri)
    full = build_metadata(request, cfg, NOW, platform)
    lazy = lazy_metadata(request, cfg, NOW, platform)
    assert getattr(lazy, field) == getattr(full, field)
    assert lazy == full


@given(st.sampled_from(PLATFORMS), HEADERS)
def test_problems_are_logged_when_read_as_by_the_full_build(
    platform: str, headers: list[tuple[bytes, bytes]]
) -> None:
    cfg = config(platform)
    request = _request(headers)
    with capturedLogs() as expected:
        build_metadata(request, cfg, NOW, platform)
    lazy = lazy_metadata(request, cfg, NOW, platform)
    with capturedLogs() as seen:
        for field in FIELDS:
            getattr(lazy, field)
    # A fresh configuration each time: the rate limit does not hide lines.
    cfg = config(platform)
    lazy = lazy_metadata(request, cfg, NOW, platform)
    with capturedLogs() as seen:
        for field in FIELDS:
            getattr(lazy, field)
    assert _problem_lines(seen) == _problem_lines(expected)


def test_cheap_fields_do_not_build_the_rest() -> None:
    cfg = config("cloudflare", CLOUDFLARE_LOCATION="ZRH")
    request = make_request(
        [(b"host", b"example.com"), (b"user-agent", b"ua/1"), (b"cf-ray", b"ray-1"),
         (b"x-forwarded-for", b"not an address")]  # fmt: skip
    )
    lazy = lazy_metadata(request, cfg, NOW, "cloudflare")
    with capturedLogs() as events:
        assert (lazy.host, lazy.user_agent, lazy.request_id, lazy.colo) == (
            "example.com", "ua/1", "ray-1", "ZRH")  # fmt: skip
        assert (lazy.method, lazy.path) == ("GET", "/")
    assert type(lazy) is _LazyMetadata
    assert "client_ip" not in vars(lazy) and "scheme" not in vars(lazy)
    assert events == []  # the bad x-forwarded-for is not read yet
    with capturedLogs() as events:
        assert lazy.client_ip is None
    assert type(lazy) is RequestMetadata
    assert "not an IP address" in _problem_lines(events)[0]


def test_header_names_in_any_case_are_found() -> None:
    cfg = config("cloudflare")
    request = make_request(
        [(b"HOST", b"example.com"), (b"User-AGENT", b"ua/1"), (b"cf-RAY", b"ray-1")]
    )
    lazy = lazy_metadata(request, cfg, NOW, "cloudflare")
    assert (lazy.host, lazy.user_agent, lazy.request_id) == ("example.com", "ua/1", "ray-1")
    assert type(lazy) is _LazyMetadata  # read alone, not through the full build


def test_fields_read_alone_see_the_headers_as_they_were_when_created() -> None:
    """
    The lazy value copies the request's headers once, when it is created
    (documented in containerflare._lazy).
    """
    cfg = config("generic")
    request = make_request([(b"host", b"example.com"), (b"user-agent", b"ua/1")])
    lazy = lazy_metadata(request, cfg, NOW, "generic")
    request.requestHeaders.setRawHeaders(b"user-agent", [b"changed"])
    request.requestHeaders.setRawHeaders(b"x-forwarded-host", [b"other.example"])
    assert (lazy.user_agent, lazy.host) == ("ua/1", "example.com")
    assert type(lazy) is _LazyMetadata


def test_with_the_worker_header_every_field_comes_from_the_full_build() -> None:
    cfg = config("cloudflare")
    request = make_request(
        [(b"host", b"example.com"), (b"user-agent", b"ua/1"),
         (b"x-containerflare-metadata", header_value({"user_agent": "from-worker", "colo": "AMS"}))]
    )  # fmt: skip
    lazy = lazy_metadata(request, cfg, NOW, "cloudflare")
    assert lazy.user_agent == "from-worker"
    assert type(lazy) is RequestMetadata and lazy.colo == "AMS"


def test_on_cloud_run_cf_headers_and_host_are_not_read_alone() -> None:
    cfg = config("cloud_run")
    request = make_request([(b"host", b"hello-123456.europe-west1.run.app"), (b"cf-ray", b"forged")])
    lazy = lazy_metadata(request, cfg, NOW, "cloud_run")
    assert lazy.request_id is None
    assert type(lazy) is RequestMetadata and lazy.cloud_run_region == "europe-west1"


def test_a_value_like_any_other() -> None:
    cfg = config("generic")
    request = make_request([(b"host", b"example.com"), (b"user-agent", b"ua")])
    full = build_metadata(request, cfg, NOW, "generic")

    def fresh() -> RequestMetadata:
        return lazy_metadata(request, cfg, NOW, "generic")

    assert fresh() == full and full == fresh() and not (fresh() != full)
    assert hash(fresh()) == hash(full)
    assert repr(fresh()) == repr(full)
    assert fresh().to_dict() == full.to_dict()
    assert attrs.evolve(fresh(), colo="X") == attrs.evolve(full, colo="X")
    for copied in (copy.copy(fresh()), copy.deepcopy(fresh()), pickle.loads(pickle.dumps(fresh()))):
        assert type(copied) is RequestMetadata and copied == full
    assert isinstance(fresh(), RequestMetadata)
    lazy = fresh()
    try:
        lazy.host = "other"  # type: ignore[misc]
    except attrs.exceptions.FrozenInstanceError:
        pass
    else:
        raise AssertionError("a lazy value must be frozen too")
    assert lazy.host == "example.com"
    assert not hasattr(fresh(), "no_such_field")


def test_a_broken_request_gets_the_full_builds_fallback() -> None:
    cfg = config("generic")
    request = make_request([(b"host", b"h")])
    request.requestHeaders = None  # type: ignore[assignment]
    with capturedLogs() as events:
        value = lazy_metadata(request, cfg, NOW, "generic")
    assert type(value) is RequestMetadata and value.method == "GET"
    assert "minimal metadata used" in _problem_lines(events)[0]


def test_the_context_reads_lazily_with_built_in_providers_only() -> None:
    request = make_request([(b"host", b"example.com")])
    cfg = config("cloudflare")
    attach(request, Runtime(cfg, CommandClient.unavailable("test"), _Clock()))
    metadata = ContainerContext.from_request(request).metadata
    assert type(metadata) is _LazyMetadata and metadata.host == "example.com"

    @attrs.frozen
    class Custom:
        name: str = "custom"

        def request_metadata(self, request: object, config: object, now: float) -> RequestMetadata:
            return RequestMetadata(colo="custom")

    custom = attrs.evolve(cfg, provider=Custom())
    assert request_metadata(request, custom, NOW) == RequestMetadata(colo="custom")


def test_every_cheap_rule_names_a_field() -> None:
    assert set(_CHEAP) <= set(FIELDS)
    assert set(ENVIRONS) == set(PLATFORMS)


class _Clock:
    def seconds(self) -> float:
        return NOW


#: The header each cheap field is read from.
CHEAP_HEADERS = {
    "user_agent": b"user-agent", "accept": b"accept", "accept_language": b"accept-language",
    "accept_encoding": b"accept-encoding", "sec_gpc": b"sec-gpc", "request_id": b"cf-ray",
    "colo": b"cf-colo", "country": b"cf-ipcountry", "region": b"cf-region", "host": b"host",
    "method": None, "path": None, "client_ip": b"cf-connecting-ip", "scheme": b"x-forwarded-proto",
    "raw_url": None, "trace_context": b"traceparent",
}  # fmt: skip
ODD_VALUES = [b"", b"  ", b"ok", b"\xe9t\xe9", b"caf\xc3\xa9", b"x" * 9000, b"a b", b"h:1"]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("field", sorted(_CHEAP))
def test_cheap_fields_on_odd_values(platform: str, field: str) -> None:
    """
    Each cheap rule against empty, blank, non-UTF-8, oversized and repeated
    values of its header, with and without the container's location.
    """
    name = CHEAP_HEADERS[field]
    cases: list[list[tuple[bytes, bytes]]] = [[]]
    if name is not None:
        cases += [[(name, value)] for value in ODD_VALUES]
        cases += [[(name, b"one"), (name, b"two")], [(name, b""), (name, b"")]]
    for located in (False, True):
        cfg = config(platform, **(LOCATION if located else {}))
        for headers in cases:
            request = _request([(n, v) for n, v in headers if n != b"host"])
            if name == b"host" and headers:
                request.requestHeaders.setRawHeaders(b"host", [v for _, v in headers])
            full = build_metadata(request, cfg, NOW, platform)
            lazy = lazy_metadata(request, cfg, NOW, platform)
            assert getattr(lazy, field) == getattr(full, field), (headers, located)


# Reads from several threads -------------------------------------------------
#
# A frozen value looks safe to read from any thread, so it must be: a handler
# may hand its context to deferToThread while the reactor thread writes the
# access log.  Completing the value (the full build) runs many bytecodes; the
# tests below put another read exactly into that window, then into the one
# just after, and finally let real threads race.


def _cheap_request() -> Request:
    return make_request(
        [(b"host", b"example.com"), (b"user-agent", b"ua/1"), (b"cf-ray", b"ray-1"),
         (b"x-forwarded-for", b"203.0.113.9")]  # fmt: skip
    )


def test_a_field_read_while_the_value_is_being_completed(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A read that runs while another completes the value (here: from inside
    the full build itself, where a thread switch could put it) gets the
    field's value, not an error.
    """
    import containerflare._lazy as lazy_module

    cfg = config("cloudflare")
    lazy = lazy_metadata(_cheap_request(), cfg, NOW, "cloudflare")
    seen: list[tuple[str | None, ...]] = []
    real_build = lazy_module.build_metadata

    def build_and_read(*args: object) -> RequestMetadata:
        seen.append((lazy.user_agent, lazy.host, lazy.request_id, lazy.method))
        return real_build(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(lazy_module, "build_metadata", build_and_read)
    assert "platform" not in _CHEAP
    assert lazy.platform.platform == "cloudflare"  # not computed alone: the full build runs
    assert seen == [("ua/1", "example.com", "ray-1", "GET")]
    assert type(lazy) is RequestMetadata
    assert lazy == real_build(_cheap_request(), cfg, NOW, "cloudflare")


@pytest.mark.parametrize("field", ["user_agent", "host", "request_id", "method"])
def test_a_field_whose_descriptor_runs_after_the_value_is_complete(field: str) -> None:
    """
    The other window: a read that found the descriptor while the value was
    still lazy, and runs it after another thread completed the value.
    """
    cfg = config("cloudflare")
    lazy = lazy_metadata(_cheap_request(), cfg, NOW, "cloudflare")
    descriptor = _LazyMetadata.__dict__[field]
    assert lazy.platform.platform == "cloudflare"  # completes it
    assert type(lazy) is RequestMetadata
    assert descriptor.__get__(lazy, _LazyMetadata) == getattr(lazy, field)


def test_many_threads_reading_the_same_values() -> None:
    """
    Real threads, switching as often as the interpreter allows, read fields
    of the same values in different orders (cheap ones and ones that
    complete the value): no read fails and every value equals the full
    build.
    """
    import sys
    import threading

    cfg = config("cloudflare")
    expected = build_metadata(_cheap_request(), cfg, NOW, "cloudflare")
    orders = [
        ["user_agent", "host", "client_ip", "request_id"],
        ["request_id", "client_ip", "method", "user_agent"],
        ["client_ip", "host", "platform", "colo"],
        ["method", "path", "host", "trace_context", "forwarded_for"],
    ]
    values = [lazy_metadata(_cheap_request(), cfg, NOW, "cloudflare") for _ in range(300)]
    errors: list[BaseException] = []
    wrong: list[tuple[str, object]] = []
    start = threading.Barrier(len(orders))

    def reader(order: list[str]) -> None:
        try:
            start.wait(timeout=30)
            for value in values:
                for field in order:
                    got = getattr(value, field)
                    if got != getattr(expected, field):
                        wrong.append((field, got))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=reader, args=(order,)) for order in orders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert wrong == []
    assert all(value == expected for value in values)
