"""
Property tests: no parser lets an exception escape, whatever the input.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import capturedLogs

from containerflare import RequestMetadata, RuntimeConfig, sign_metadata
from containerflare._metadata import normalize_ip
from containerflare._sources import (
    _Headers,
    _host,
    parse_cloud_trace,
    parse_forwarded,
    parse_traceparent,
    read_trace,
    run_app_project_number,
    run_app_region,
)

from ._metadata_requests import ENVIRONS, make_request

# Text built from the characters the parsers care about, plus anything.
NASTY = "0123456789abcdefABCDEF:;,=/[]\"\\ .-_%o\t\xe9\u2028"
nasty_text = st.text(alphabet=st.sampled_from(NASTY), max_size=80) | st.text(max_size=80)


@given(nasty_text)
def test_parse_forwarded(value: str) -> None:
    problems: list[tuple[str, str]] = []
    elements = parse_forwarded(value, problems)
    assert all(isinstance(e, dict) for e in elements)


@given(st.lists(st.sampled_from(["for", "proto", "by", "host", "x"]), max_size=4), st.lists(nasty_text, max_size=4))
def test_parse_forwarded_structured(keys: list[str], values: list[str]) -> None:
    text = ";".join(f"{k}={v}" for k, v in zip(keys, values))
    parse_forwarded(text + ", " + text, [])


@given(nasty_text)
def test_trace_parsers(value: str) -> None:
    for parse in (parse_cloud_trace, parse_traceparent):
        result = parse(value, [])
        if result is not None:
            assert result.trace_id is not None and len(result.trace_id) == 32
            assert result.span_id is None or len(result.span_id) == 16


@given(
    st.from_regex(r"[0-9a-f]{32}(/[0-9]{0,22})?(;o=[0-9]{0,4})?", fullmatch=True),
    st.from_regex(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.{0,8})?", fullmatch=True),
)
def test_trace_parsers_near_valid(cloud: str, w3c: str) -> None:
    parse_cloud_trace(cloud, [])
    parse_traceparent(w3c, [])


@given(nasty_text)
def test_normalize_ip(value: str) -> None:
    result = normalize_ip(value)
    assert result is None or normalize_ip(result) == result


@given(st.ip_addresses(), st.integers(0, 65535))
def test_normalize_ip_accepts_what_proxies_write(address: object, port: int) -> None:
    text = str(address)
    expected = normalize_ip(text)
    assert expected is not None
    if ":" in text:
        assert normalize_ip(f"[{text}]:{port}") == expected
        assert normalize_ip(f'"[{text}]"') == expected
    else:
        assert normalize_ip(f"{text}:{port}") == expected


@given(nasty_text | st.from_regex(r"[a-z0-9-]{1,12}\.([a-z0-9-]{1,12}|a)\.run\.app(:[0-9]{1,5})?", fullmatch=True))
def test_host_helpers(value: str) -> None:
    run_app_region(value)
    run_app_project_number(value)
    _host(value, "host", [], 1)


HEADER_NAMES = [
    b"x-containerflare-metadata", b"x-containerflare-signature", b"cf-ray", b"cf-colo",
    b"cf-ipcountry", b"cf-region", b"cf-connecting-ip", b"x-forwarded-for",
    b"x-forwarded-host", b"host", b"x-forwarded-proto", b"forwarded", b"user-agent",
    b"accept", b"sec-gpc", b"sec-ch-ua", b"x-cloud-trace-context", b"traceparent",
]  # fmt: skip
header_values = st.binary(max_size=120) | nasty_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
json_ish = st.sampled_from(
    [b"{", b"[]", b"null", b'{"client_ip": 5}', b'{"platform": {"platform": "cloud_run"}}',
     b'{"trace_context": {"sampled": "x"}, "forwarded_for": [1]}', b'{"method": "", "path": ""}']
)  # fmt: skip


@given(
    st.sampled_from(["cloudflare", "cloud_run", "generic"]),
    st.booleans(),
    st.integers(0, 3),
    st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values | json_ish), max_size=8),
    st.binary(min_size=1, max_size=40),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_request_metadata_never_raises(
    platform: str,
    with_secret: bool,
    hops: int,
    headers: list[tuple[bytes, bytes]],
    uri: bytes,
    now: float,
) -> None:
    env = dict(ENVIRONS[platform], CONTAINERFLARE_TRUSTED_HOPS=str(hops))
    if with_secret:
        env["CONTAINERFLARE_METADATA_SECRET"] = "s"
    cfg = RuntimeConfig.from_environ(env)
    request = make_request([(b"host", b"h")])
    request.uri = uri
    for name, value in headers:
        request.requestHeaders.addRawHeader(name, value)
        if name == b"x-containerflare-metadata" and with_secret:
            request.requestHeaders.addRawHeader(
                b"x-containerflare-signature", sign_metadata(value, "s", now)
            )
    with capturedLogs() as events:
        value = cfg.provider.request_metadata(request, cfg, now)
    assert isinstance(value, RequestMetadata)
    assert not any("minimal metadata used" in str(e.get("problem")) for e in events)
    value.to_dict()


@given(st.lists(st.tuples(st.sampled_from([b"x-cloud-trace-context", b"traceparent"]), header_values), max_size=3))
def test_read_trace(headers: list[tuple[bytes, bytes]]) -> None:
    request = make_request()
    for name, value in headers:
        request.requestHeaders.addRawHeader(name, value)
    read_trace(_Headers(request.requestHeaders, []), "p")
