"""
RequestMetadata, TraceContext and ClientHints as values: the JSON shape of
the x-containerflare-metadata header, reading it back leniently.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import capturedLogs

import containerflare
from containerflare import (
    ClientHints,
    CloudflareRequestPlatform,
    CloudRunRequestPlatform,
    RequestMetadata,
    TraceContext,
    _metadata,
    _trust,
)

# The documented shape (docs/metadata.md, RequestMetadata's docstring); the
# Worker writes the same keys, in this order.
TOP_KEYS = [
    "request_id", "colo", "region", "country", "client_ip", "host", "scheme",
    "platform", "worker_name", "project_id", "cloud_run_service",
    "cloud_run_revision", "cloud_run_configuration", "cloud_run_region",
    "trace_context", "forwarded_for", "forwarded_proto", "forwarded",
    "user_agent", "accept", "accept_language", "accept_encoding", "sec_gpc",
    "client_hints", "method", "path", "raw_url",
]  # fmt: skip
TRACE_KEYS = ["trace_id", "span_id", "sampled", "project_id", "raw", "version", "flags"]
HINT_KEYS = [
    "ua", "ua_mobile", "ua_platform", "ua_arch", "ua_platform_version",
    "ua_model", "ua_bitness", "ua_wow64", "ua_full_version_list",
]  # fmt: skip

FULL = RequestMetadata(
    request_id="8c6a2b1f0e1d2c3b-AMS",
    colo="AMS",
    region="North Holland",
    country="NL",
    client_ip="2001:db8::7",
    host="app.example.com",
    scheme="https",
    platform=CloudflareRequestPlatform(worker_name="edge"),
    worker_name="edge",
    trace_context=TraceContext(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        sampled=True,
        raw="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        version="00",
        flags="01",
    ),
    forwarded_for=("2001:db8::7", "10.0.0.1"),
    forwarded_proto="https",
    forwarded='for="[2001:db8::7]";proto=https',
    user_agent="Mozilla/5.0",
    accept="text/html",
    accept_language="nl, en;q=0.8",
    accept_encoding="gzip, br",
    sec_gpc="1",
    client_hints=ClientHints(ua='"Chromium";v="124"', ua_mobile="?0", ua_platform='"Linux"'),
    method="POST",
    path="/items?page=2",
    raw_url="https://app.example.com/items?page=2",
)


def problems_logged(events: Any) -> list[str]:
    return [
        e["problem"] for e in events if e.get("log_namespace") == "containerflare.metadata"
    ]


def test_public_names_are_the_private_objects() -> None:
    assert containerflare.RequestMetadata is _metadata.RequestMetadata
    assert containerflare.TraceContext is _metadata.TraceContext
    assert containerflare.ClientHints is _metadata.ClientHints
    assert containerflare.CloudflareRequestPlatform is _metadata.CloudflareRequestPlatform
    assert containerflare.CloudRunRequestPlatform is _metadata.CloudRunRequestPlatform
    assert containerflare.sign_metadata is _trust.sign_metadata
    assert containerflare.METADATA_HEADER == "x-containerflare-metadata"
    assert containerflare.SIGNATURE_HEADER == "x-containerflare-signature"
    for name in containerflare.__all__:
        assert hasattr(containerflare, name)


def test_values_are_frozen() -> None:
    for value in (RequestMetadata(), TraceContext(), ClientHints(), CloudflareRequestPlatform()):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            value.raw = "x"  # type: ignore[union-attr]


def test_empty_shape_has_every_key_as_null() -> None:
    data = RequestMetadata().to_dict()
    assert list(data) == TOP_KEYS
    expected = {key: None for key in TOP_KEYS}
    expected.update(forwarded_for=[], method="GET", path="/")
    assert data == expected


def test_nested_shapes() -> None:
    data = FULL.to_dict()
    assert list(data) == TOP_KEYS
    assert list(data["trace_context"]) == TRACE_KEYS
    assert list(data["client_hints"]) == HINT_KEYS
    assert data["platform"] == {"platform": "cloudflare", "worker_name": "edge"}
    assert data["client_hints"]["ua_model"] is None
    assert data["forwarded_for"] == ["2001:db8::7", "10.0.0.1"]
    assert CloudRunRequestPlatform(service="s", region="r").to_dict() == {
        "platform": "cloud_run",
        "service": "s",
        "revision": None,
        "configuration": None,
        "project_id": None,
        "region": "r",
    }


def test_round_trip_through_json() -> None:
    text = json.dumps(FULL.to_dict())
    assert RequestMetadata.from_dict(json.loads(text)) == FULL
    cloud_run = attrs.evolve(FULL, platform=CloudRunRequestPlatform(service="s", project_id="p"))
    assert RequestMetadata.from_dict(cloud_run.to_dict()) == cloud_run


def test_reference_worker_header_reads() -> None:
    # What the reference's Worker writes: undefined values are left out.
    data = {
        "request_id": "8c6a2b1f0e1d2c3b-AMS",
        "colo": "AMS",
        "country": "NL",
        "client_ip": "203.0.113.9",
        "host": "x.workers.dev",
        "scheme": "https",
        "worker_name": "edge",
        "method": "GET",
        "path": "/",
        "raw_url": "https://x.workers.dev/",
    }
    with capturedLogs() as events:
        value = RequestMetadata.from_dict(data)
    assert problems_logged(events) == []
    assert value.colo == "AMS" and value.client_ip == "203.0.113.9"
    assert value.region is None and value.forwarded_for == ()


@pytest.mark.parametrize(
    "data, expected, problem",
    [
        ({"colo": 5}, RequestMetadata(), "metadata.colo is int"),
        ({"colo": "AMS", "future_key": {"x": 1}}, RequestMetadata(colo="AMS"), None),
        ({"method": None, "path": None}, RequestMetadata(), None),
        ({"client_ip": "not-an-ip"}, RequestMetadata(), "client_ip is not an IP address"),
        ({"client_ip": "[2001:DB8::1]:443"}, RequestMetadata(client_ip="2001:db8::1"), None),
        ({"client_ip": "::ffff:192.0.2.1"}, RequestMetadata(client_ip="192.0.2.1"), None),
        ({"forwarded_for": "1.2.3.4"}, RequestMetadata(), "forwarded_for is str, not a list"),
        (
            {"forwarded_for": ["1.2.3.4", 7, None]},
            RequestMetadata(forwarded_for=("1.2.3.4",)),
            "entries that are not strings",
        ),
        ({"platform": "cloudflare"}, RequestMetadata(), "platform is str"),
        ({"platform": {"platform": "aws"}}, RequestMetadata(), "neither"),
        (
            {"platform": {"platform": "cloud_run", "service": 1, "region": "r"}},
            RequestMetadata(platform=CloudRunRequestPlatform(region="r")),
            "platform.service is int",
        ),
        ({"trace_context": []}, RequestMetadata(), "trace_context is list"),
        (
            {"trace_context": {"trace_id": "t", "sampled": "yes"}},
            RequestMetadata(trace_context=TraceContext(trace_id="t")),
            "sampled is str, not a boolean",
        ),
        (
            {"trace_context": {"sampled": 1}},
            RequestMetadata(trace_context=TraceContext()),
            "sampled is int",
        ),
        ({"client_hints": {"ua": ["x"]}}, RequestMetadata(client_hints=ClientHints()), "client_hints.ua is list"),
        ({"client_hints": 3}, RequestMetadata(), "client_hints is int"),
    ],
)
def test_from_dict_drops_wrong_types_with_one_log_line(
    data: dict[str, Any], expected: RequestMetadata, problem: str | None
) -> None:
    with capturedLogs() as events:
        assert RequestMetadata.from_dict(data) == expected
    logged = problems_logged(events)
    if problem is None:
        assert logged == []
    else:
        assert len(logged) == 1 and problem in logged[0]


@pytest.mark.parametrize("data", [None, [], "x", 3, 2.5, True, [{"colo": "AMS"}]])
def test_from_dict_of_a_non_object(data: object) -> None:
    with capturedLogs() as events:
        assert RequestMetadata.from_dict(data) == RequestMetadata()
    assert len(problems_logged(events)) == 1


def test_nested_from_dict() -> None:
    assert TraceContext.from_dict({"trace_id": "a", "sampled": False}) == TraceContext(
        trace_id="a", sampled=False
    )
    assert TraceContext.from_dict(None) is None
    assert ClientHints.from_dict({"ua_wow64": "?0"}) == ClientHints(ua_wow64="?0")
    with capturedLogs() as events:
        assert ClientHints.from_dict("x") is None
    assert len(problems_logged(events)) == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ('"192.0.2.1"', "192.0.2.1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ('"[2001:db8::1]:443"', "2001:db8::1"),
        ("::ffff:198.51.100.3", "198.51.100.3"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("[2001:db8::1]:", None),
        ("192.0.2.1:http", None),
        ("unknown", None),
        ("_hidden", None),
        ("example.com", None),
        ("", None),
        ("999.1.1.1", None),
    ],
)
def test_normalize_ip(text: str, expected: str | None) -> None:
    assert _metadata.normalize_ip(text) == expected


# Anything JSON can hold.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(TOP_KEYS + ["platform", "trace_context", "client_hints", "other"])


@given(st.dictionaries(keys, json_values, max_size=10) | json_values)
def test_from_dict_never_raises(data: object) -> None:
    value = RequestMetadata.from_dict(data)
    # Whatever came in, what comes out is valid JSON of the documented shape.
    assert list(json.loads(json.dumps(value.to_dict()))) == TOP_KEYS


@given(
    st.dictionaries(
        st.sampled_from(["platform", "worker_name", "service", "revision", "configuration", "project_id", "region"]),
        json_values,
    )
)
def test_platform_and_nested_never_raise(data: dict[str, Any]) -> None:
    RequestMetadata.from_dict({"platform": data, "trace_context": data, "client_hints": data})


optional_text = st.none() | st.text(max_size=20)
trace_contexts = st.none() | st.builds(
    TraceContext,
    trace_id=optional_text,
    span_id=optional_text,
    sampled=st.none() | st.booleans(),
    project_id=optional_text,
    raw=optional_text,
    version=optional_text,
    flags=optional_text,
)
platforms = st.none() | st.builds(CloudflareRequestPlatform, worker_name=optional_text) | st.builds(
    CloudRunRequestPlatform,
    service=optional_text,
    revision=optional_text,
    configuration=optional_text,
    project_id=optional_text,
    region=optional_text,
)
hints = st.none() | st.builds(ClientHints, **{k: optional_text for k in HINT_KEYS})
addresses = st.none() | st.ip_addresses().map(lambda a: _metadata.normalize_ip(str(a)))


@given(
    st.builds(
        RequestMetadata,
        **{
            k: optional_text
            for k in TOP_KEYS
            if k not in ("client_ip", "platform", "trace_context", "client_hints", "forwarded_for", "method", "path")
        },
        client_ip=addresses,
        platform=platforms,
        trace_context=trace_contexts,
        client_hints=hints,
        forwarded_for=st.lists(st.text(max_size=10), max_size=4).map(tuple),
        method=st.text(max_size=8),
        path=st.text(max_size=20),
    )
)
def test_round_trip_property(value: RequestMetadata) -> None:
    text = json.dumps(value.to_dict(), ensure_ascii=True)
    assert RequestMetadata.from_dict(json.loads(text)) == value
