"""
Where every field comes from, on every platform: the trusted header, the
request's headers, the environment.  Table-driven; the requests are parsed
by twisted.web from raw bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.logger import capturedLogs

from containerflare import (
    ClientHints,
    CloudflareRequestPlatform,
    CloudRunRequestPlatform,
    TraceContext,
)

from ._metadata_requests import header_value, metadata

H = list[tuple[bytes, bytes]]
CLOUD_TRACE = b"105445aa7843bc8bf206b12000100000/12345;o=1"
TRACE_ID = "105445aa7843bc8bf206b12000100000"
TRACEPARENT = b"00-105445aa7843bc8bf206b12000100000-b7ad6b7169203331-01"


def problems(events: Any) -> list[str]:
    return [e["problem"] for e in events if e.get("log_namespace") == "containerflare.metadata"]


# (id, platform, request headers, environment extras, request args, expected fields)
CASES: list[tuple[str, str, H, dict[str, str], dict[str, Any], dict[str, Any]]] = [
    # --- request_id ---
    ("request_id from cf-ray", "cloudflare", [(b"cf-ray", b"8c6a-AMS")], {}, {}, {"request_id": "8c6a-AMS"}),
    ("request_id from cf-ray (generic)", "generic", [(b"cf-ray", b"8c6a-AMS")], {}, {}, {"request_id": "8c6a-AMS"}),
    ("cf-ray ignored on cloud_run", "cloud_run", [(b"cf-ray", b"forged")], {}, {}, {"request_id": None}),
    ("request_id from the trace on cloud_run", "cloud_run", [(b"x-cloud-trace-context", CLOUD_TRACE)], {}, {}, {"request_id": TRACE_ID}),
    ("request_id not from the trace on cloudflare", "cloudflare", [(b"x-cloud-trace-context", CLOUD_TRACE)], {}, {}, {"request_id": None}),
    ("request_id from the header", "cloudflare", [(b"x-containerflare-metadata", b'{"request_id":"r1"}'), (b"cf-ray", b"x")], {}, {}, {"request_id": "r1"}),
    # --- colo / country / region ---
    ("colo/country/region from cf-*", "cloudflare", [(b"cf-colo", b"AMS"), (b"cf-ipcountry", b"NL"), (b"cf-region", b"North Holland")], {}, {}, {"colo": "AMS", "country": "NL", "region": "North Holland"}),
    ("cf-* ignored on cloud_run", "cloud_run", [(b"cf-colo", b"AMS"), (b"cf-ipcountry", b"KP"), (b"cf-region", b"X")], {}, {}, {"colo": None, "country": None, "region": None}),
    ("colo/region/country from CLOUDFLARE_* when the request has none", "cloudflare", [], {"CLOUDFLARE_LOCATION": "ams1", "CLOUDFLARE_REGION": "WEUR", "CLOUDFLARE_COUNTRY_A2": "NL"}, {}, {"colo": "ams1", "region": "WEUR", "country": "NL"}),
    ("the request's colo wins over CLOUDFLARE_LOCATION", "cloudflare", [(b"cf-colo", b"AMS")], {"CLOUDFLARE_LOCATION": "ams1"}, {}, {"colo": "AMS"}),
    ("region from GOOGLE_CLOUD_REGION", "cloud_run", [], {"GOOGLE_CLOUD_REGION": "europe-west4"}, {}, {"region": "europe-west4", "cloud_run_region": "europe-west4"}),
    ("region from REGION", "cloud_run", [], {"REGION": "us-east1"}, {}, {"cloud_run_region": "us-east1"}),
    ("region from a run.app host", "cloud_run", [(b"host", b"hello-123456789012.europe-west1.run.app")], {}, {}, {"region": "europe-west1", "cloud_run_region": "europe-west1"}),
    ("region from a legacy run.app host", "cloud_run", [(b"host", b"hello-abc123xyz-uc.a.run.app")], {}, {}, {"cloud_run_region": "us-central1", "project_id": "my-project"}),
    ("unknown legacy region code gives none", "cloud_run", [(b"host", b"hello-abc123xyz-zz.a.run.app")], {}, {}, {"cloud_run_region": None}),
    ("region from x-forwarded-host is not inferred", "cloud_run", [(b"host", b"internal"), (b"x-forwarded-host", b"x-1.asia-east1.run.app")], {}, {}, {"cloud_run_region": None, "host": "x-1.asia-east1.run.app"}),
    # --- project ---
    ("project id from GOOGLE_CLOUD_PROJECT", "cloud_run", [(b"host", b"hello-123456789012.europe-west1.run.app")], {}, {}, {"project_id": "my-project"}),
    ("project id from GCLOUD_PROJECT", "cloud_run", [], {"GOOGLE_CLOUD_PROJECT": "", "GCLOUD_PROJECT": "legacy"}, {}, {"project_id": "legacy"}),
    ("project number from a run.app host", "cloud_run", [(b"host", b"hello-123456789012.europe-west1.run.app:443")], {"GOOGLE_CLOUD_PROJECT": ""}, {}, {"project_id": "123456789012"}),
    ("no project number in a name", "cloud_run", [(b"host", b"hello-world.europe-west1.run.app")], {"GOOGLE_CLOUD_PROJECT": ""}, {}, {"project_id": None, "cloud_run_region": "europe-west1"}),
    # --- Cloud Run service fields, worker_name, platform ---
    ("cloud run fields from K_*", "cloud_run", [], {}, {}, {
        "cloud_run_service": "hello", "cloud_run_revision": "hello-00001-abc", "cloud_run_configuration": "hello",
        "worker_name": "hello",
        "platform": CloudRunRequestPlatform(service="hello", revision="hello-00001-abc", configuration="hello", project_id="my-project"),
    }),
    ("worker_name from CONTAINERFLARE_WORKER", "cloudflare", [], {}, {}, {"worker_name": "edge-worker", "platform": CloudflareRequestPlatform(worker_name="edge-worker")}),
    ("worker_name from the header wins", "cloudflare", [(b"x-containerflare-metadata", b'{"worker_name":"w2"}')], {}, {}, {"worker_name": "w2", "platform": CloudflareRequestPlatform(worker_name="w2")}),
    ("header's platform tag kept and completed", "cloudflare", [(b"x-containerflare-metadata", b'{"platform":{"platform":"cloudflare","worker_name":null}}')], {}, {}, {"platform": CloudflareRequestPlatform(worker_name="edge-worker")}),
    ("a cloud_run tag from the Worker is replaced on cloudflare", "cloudflare", [(b"x-containerflare-metadata", b'{"platform":{"platform":"cloud_run","service":"x"}}')], {}, {}, {"platform": CloudflareRequestPlatform(worker_name="edge-worker")}),
    ("generic has no platform tag", "generic", [], {}, {}, {"platform": None, "worker_name": None}),
    ("generic keeps the header's tag", "generic", [(b"x-containerflare-metadata", b'{"platform":{"platform":"cloudflare","worker_name":"w"}}')], {}, {}, {"platform": CloudflareRequestPlatform(worker_name="w")}),
    # --- client_ip ---
    ("client_ip from cf-connecting-ip", "cloudflare", [(b"cf-connecting-ip", b"203.0.113.9"), (b"x-forwarded-for", b"198.51.100.1")], {}, {}, {"client_ip": "203.0.113.9"}),
    ("client_ip from cf-connecting-ip IPv6", "cloudflare", [(b"cf-connecting-ip", b"2001:DB8::9")], {}, {}, {"client_ip": "2001:db8::9"}),
    ("client_ip from the header wins", "cloudflare", [(b"x-containerflare-metadata", b'{"client_ip":"192.0.2.44"}'), (b"cf-connecting-ip", b"203.0.113.9")], {}, {}, {"client_ip": "192.0.2.44"}),
    ("cf-connecting-ip ignored on cloud_run", "cloud_run", [(b"cf-connecting-ip", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.5")], {}, {}, {"client_ip": "203.0.113.5"}),
    ("cloud_run: xff read from the right", "cloud_run", [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.5")], {}, {}, {"client_ip": "203.0.113.5", "forwarded_for": ("6.6.6.6", "203.0.113.5")}),
    ("cloud_run behind a load balancer: 2 hops", "cloud_run", [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.5, 35.191.0.1")], {"CONTAINERFLARE_TRUSTED_HOPS": "2"}, {}, {"client_ip": "203.0.113.5"}),
    ("repeated xff headers are one list", "cloud_run", [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.5, 35.191.0.1")], {"CONTAINERFLARE_TRUSTED_HOPS": "2"}, {}, {"client_ip": "203.0.113.5", "forwarded_for": ("6.6.6.6", "203.0.113.5", "35.191.0.1")}),
    ("fewer entries than hops: the leftmost", "cloud_run", [(b"x-forwarded-for", b"203.0.113.5")], {"CONTAINERFLARE_TRUSTED_HOPS": "3"}, {}, {"client_ip": "203.0.113.5"}),
    ("hops 0: the TCP peer", "cloud_run", [(b"x-forwarded-for", b"6.6.6.6")], {"CONTAINERFLARE_TRUSTED_HOPS": "0"}, {"peer": "169.254.1.1"}, {"client_ip": "169.254.1.1"}),
    ("xff bracketed IPv6 with port", "cloud_run", [(b"x-forwarded-for", b"6.6.6.6, [2001:db8::5]:51234")], {}, {}, {"client_ip": "2001:db8::5"}),
    ("xff bare IPv6", "generic", [(b"x-forwarded-for", b"2001:db8::5")], {}, {}, {"client_ip": "2001:db8::5"}),
    ("xff IPv4 with port", "cloudflare", [(b"x-forwarded-for", b"203.0.113.5:8443")], {}, {}, {"client_ip": "203.0.113.5"}),
    ("xff malformed rightmost: none, not the next one", "cloud_run", [(b"x-forwarded-for", b"203.0.113.5, garbage")], {}, {}, {"client_ip": None}),
    ("xff 'unknown'", "cloud_run", [(b"x-forwarded-for", b"unknown")], {}, {}, {"client_ip": None}),
    ("forwarded for= when no xff", "cloud_run", [(b"forwarded", b'for="203.0.113.5";proto=https')], {}, {}, {"client_ip": "203.0.113.5", "forwarded": 'for="203.0.113.5";proto=https'}),
    ("forwarded for= IPv6 bracketed with port", "cloud_run", [(b"forwarded", b'for=6.6.6.6, for="[2001:db8:cafe::17]:4711"')], {}, {}, {"client_ip": "2001:db8:cafe::17"}),
    ("forwarded for= from the right with hops", "cloud_run", [(b"forwarded", b"for=6.6.6.6, for=203.0.113.5;proto=https, for=35.191.0.1")], {"CONTAINERFLARE_TRUSTED_HOPS": "2"}, {}, {"client_ip": "203.0.113.5"}),
    ("forwarded obfuscated", "cloud_run", [(b"forwarded", b"for=_hidden")], {}, {}, {"client_ip": None}),
    ("generic falls back to the TCP peer", "generic", [], {}, {"peer": "::1"}, {"client_ip": "::1"}),
    ("cloudflare does not use the TCP peer (the sidecar)", "cloudflare", [], {}, {"peer": "10.0.0.1"}, {"client_ip": None}),
    ("cloud_run does not use the TCP peer", "cloud_run", [], {}, {"peer": "169.254.1.1"}, {"client_ip": None}),
    # --- host / scheme / raw_url ---
    ("host from Host", "generic", [(b"host", b"localhost:8787")], {}, {}, {"host": "localhost:8787", "raw_url": "http://localhost:8787/"}),
    ("host from x-forwarded-host", "generic", [(b"host", b"internal"), (b"x-forwarded-host", b"app.example.com")], {}, {}, {"host": "app.example.com"}),
    ("bad x-forwarded-host falls back to Host", "generic", [(b"host", b"internal"), (b"x-forwarded-host", b"evil.com/path")], {}, {}, {"host": "internal"}),
    ("IPv6 host", "generic", [(b"host", b"[::1]:8787")], {}, {}, {"host": "[::1]:8787"}),
    ("scheme from x-forwarded-proto", "cloud_run", [(b"host", b"a.run.app"), (b"x-forwarded-proto", b"HTTPS")], {}, {"uri": b"/p?q=1"}, {"scheme": "https", "forwarded_proto": "HTTPS", "raw_url": "https://a.run.app/p?q=1"}),
    ("scheme from forwarded proto=", "cloud_run", [(b"host", b"h"), (b"forwarded", b'for="1.2.3.4";proto=https')], {}, {}, {"scheme": "https"}),
    ("scheme from the connection", "generic", [], {}, {"secure": True}, {"scheme": "https"}),
    ("scheme defaults to http", "generic", [], {}, {}, {"scheme": "http", "raw_url": None}),
    ("bad forwarded proto ignored", "generic", [(b"x-forwarded-proto", b"ht tp")], {}, {}, {"scheme": "http", "forwarded_proto": "ht tp"}),
    ("raw_url rebuilt from the header's host and path", "cloudflare", [(b"x-containerflare-metadata", b'{"host":"x.workers.dev","scheme":"https","path":"/a?b","raw_url":"/a?b"}')], {}, {}, {"raw_url": "https://x.workers.dev/a?b"}),
    ("raw_url from the header kept", "cloudflare", [(b"host", b"h"), (b"x-containerflare-metadata", b'{"raw_url":"https://x.dev/z"}')], {}, {}, {"raw_url": "https://x.dev/z"}),
    ("absolute-form request target", "generic", [(b"host", b"ignored")], {}, {"uri": b"http://example.com/x?y=1"}, {"path": "/x?y=1", "raw_url": "http://example.com/x?y=1"}),
    # --- method / path ---
    ("method and path with query", "generic", [], {}, {"method": b"PATCH", "uri": b"/items/7?full=1"}, {"method": "PATCH", "path": "/items/7?full=1"}),
    ("method and path from the header win", "cloudflare", [(b"x-containerflare-metadata", b'{"method":"PUT","path":"/orig"}')], {}, {"method": b"POST", "uri": b"/x"}, {"method": "PUT", "path": "/orig"}),
    ("UTF-8 path", "generic", [], {}, {"set_uri": "/café".encode()}, {"path": "/café"}),
    # --- plain headers ---
    ("plain headers", "cloud_run", [(b"user-agent", b"curl/8.5"), (b"accept", b"*/*"), (b"accept-language", b"fr-CH, fr;q=0.9"), (b"accept-encoding", b"gzip"), (b"sec-gpc", b"1")], {}, {}, {"user_agent": "curl/8.5", "accept": "*/*", "accept_language": "fr-CH, fr;q=0.9", "accept_encoding": "gzip", "sec_gpc": "1"}),
    ("header values win over request headers", "cloudflare", [(b"user-agent", b"sidecar"), (b"x-containerflare-metadata", b'{"user_agent":"browser","accept":null}'), (b"accept", b"a/b")], {}, {}, {"user_agent": "browser", "accept": "a/b"}),
    ("empty header is absent", "generic", [(b"user-agent", b"")], {}, {}, {"user_agent": None}),
    ("client hints", "generic", [(b"sec-ch-ua", b'"Chromium";v="124"'), (b"sec-ch-ua-mobile", b"?0"), (b"sec-ch-ua-platform", b'"Linux"'), (b"sec-ch-ua-arch", b'"x86"'), (b"sec-ch-ua-platform-version", b'"6.1"'), (b"sec-ch-ua-model", b'""'), (b"sec-ch-ua-bitness", b'"64"'), (b"sec-ch-ua-wow64", b"?0"), (b"sec-ch-ua-full-version-list", b'"Chromium";v="124.0.1"')], {}, {}, {"client_hints": ClientHints(ua='"Chromium";v="124"', ua_mobile="?0", ua_platform='"Linux"', ua_arch='"x86"', ua_platform_version='"6.1"', ua_model='""', ua_bitness='"64"', ua_wow64="?0", ua_full_version_list='"Chromium";v="124.0.1"')}),
    ("no client hints", "generic", [], {}, {}, {"client_hints": None}),
    ("client hints from the header", "cloudflare", [(b"sec-ch-ua-mobile", b"?1"), (b"x-containerflare-metadata", b'{"client_hints":{"ua_mobile":"?0"}}')], {}, {}, {"client_hints": ClientHints(ua_mobile="?0")}),
    # --- trace ---
    ("x-cloud-trace-context", "cloud_run", [(b"x-cloud-trace-context", CLOUD_TRACE)], {}, {}, {"trace_context": TraceContext(trace_id=TRACE_ID, span_id="0000000000003039", sampled=True, project_id="my-project", raw=CLOUD_TRACE.decode())}),
    ("x-cloud-trace-context without span and options", "cloud_run", [(b"x-cloud-trace-context", TRACE_ID.upper().encode())], {"GOOGLE_CLOUD_PROJECT": ""}, {}, {"trace_context": TraceContext(trace_id=TRACE_ID, raw=TRACE_ID.upper())}),
    ("o=0 is not sampled", "cloud_run", [(b"x-cloud-trace-context", TRACE_ID.encode() + b"/1;o=0")], {}, {}, {"trace_context": TraceContext(trace_id=TRACE_ID, span_id="0000000000000001", sampled=False, project_id="my-project", raw=TRACE_ID + "/1;o=0")}),
    ("traceparent", "generic", [(b"traceparent", TRACEPARENT)], {}, {}, {"request_id": None, "trace_context": TraceContext(trace_id=TRACE_ID, span_id="b7ad6b7169203331", sampled=True, raw=TRACEPARENT.decode(), version="00", flags="01")}),
    ("traceparent, future version with extra fields", "cloud_run", [(b"traceparent", b"01-105445aa7843bc8bf206b12000100000-b7ad6b7169203331-00-extra")], {}, {}, {"request_id": TRACE_ID, "trace_context": TraceContext(trace_id=TRACE_ID, span_id="b7ad6b7169203331", sampled=False, project_id="my-project", raw="01-105445aa7843bc8bf206b12000100000-b7ad6b7169203331-00-extra", version="01", flags="00")}),
    ("both trace headers agree", "cloud_run", [(b"x-cloud-trace-context", TRACE_ID.encode() + b"/12345"), (b"traceparent", TRACEPARENT)], {}, {}, {"trace_context": TraceContext(trace_id=TRACE_ID, span_id="0000000000003039", sampled=True, project_id="my-project", raw=TRACE_ID + "/12345", version="00", flags="01")}),
    ("trace headers disagree: x-cloud-trace-context", "cloud_run", [(b"x-cloud-trace-context", b"0af7651916cd43dd8448eb211c80319c/7;o=1"), (b"traceparent", TRACEPARENT)], {}, {}, {"request_id": "0af7651916cd43dd8448eb211c80319c"}),
    ("malformed cloud trace, traceparent used", "cloud_run", [(b"x-cloud-trace-context", b"nope/1;o=1"), (b"traceparent", TRACEPARENT)], {}, {}, {"request_id": TRACE_ID}),
    ("trace from the header", "cloudflare", [(b"traceparent", TRACEPARENT), (b"x-containerflare-metadata", b'{"trace_context":{"trace_id":"abc"}}')], {}, {}, {"trace_context": TraceContext(trace_id="abc")}),
]


@pytest.mark.parametrize(
    "platform, headers, env, request_args, expected",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_field_sources(
    platform: str, headers: H, env: dict[str, str], request_args: dict[str, Any], expected: dict[str, Any]
) -> None:
    value = metadata(platform, headers, env=env, **request_args)
    actual = {key: getattr(value, key) for key in expected}
    assert actual == expected


# Bad input: the handler gets fallbacks and exactly one log line says why.
BAD: list[tuple[str, str, H, dict[str, Any], dict[str, Any], str]] = [
    ("malformed JSON", "cloudflare", [(b"x-containerflare-metadata", b"{not json"), (b"cf-colo", b"AMS")], {}, {"colo": "AMS"}, "not valid JSON"),
    ("JSON that is not an object", "cloudflare", [(b"x-containerflare-metadata", b'["colo","AMS"]'), (b"cf-colo", b"AMS")], {}, {"colo": "AMS"}, "not a JSON object"),
    ("deeply nested JSON", "generic", [(b"x-containerflare-metadata", b"[" * 4000 + b"]" * 4000)], {}, {"colo": None}, "x-containerflare-metadata"),
    ("non-UTF-8 metadata header", "cloudflare", [(b"x-containerflare-metadata", b'{"colo":"\xff"}'), (b"cf-colo", b"AMS")], {}, {"colo": "AMS"}, "not UTF-8"),
    ("two metadata headers", "cloudflare", [(b"x-containerflare-metadata", b'{"colo":"A"}'), (b"x-containerflare-metadata", b'{"colo":"B"}')], {}, {"colo": None}, "more than one"),
    ("oversized metadata header", "cloudflare", [(b"x-containerflare-metadata", b'{"colo":"' + b"A" * 9000 + b'"}'), (b"cf-colo", b"AMS")], {}, {"colo": "AMS"}, "longer than 8192 bytes"),
    ("wrong types in the header", "cloudflare", [(b"x-containerflare-metadata", b'{"colo":1,"country":"NL"}'), (b"cf-colo", b"AMS")], {}, {"colo": "AMS", "country": "NL"}, "metadata.colo is int"),
    ("client_ip in the header not an address", "cloudflare", [(b"x-containerflare-metadata", b'{"client_ip":"me"}'), (b"cf-connecting-ip", b"203.0.113.9")], {}, {"client_ip": "203.0.113.9"}, "client_ip is not an IP address"),
    ("non-UTF-8 user-agent", "generic", [(b"user-agent", b"Mozilla \xe9\xff")], {}, {"user_agent": None}, "user-agent is not UTF-8"),
    ("oversized user-agent", "generic", [(b"user-agent", b"x" * 9000)], {}, {"user_agent": None}, "user-agent is longer"),
    ("non-UTF-8 path", "generic", [], {"set_uri": b"/caf\xe9?x=\xff"}, {"path": "/caf%E9?x=%FF"}, "request target is not UTF-8"),
    ("malformed x-cloud-trace-context", "cloud_run", [(b"x-cloud-trace-context", b"zzzz/12;o=1")], {}, {"trace_context": None, "request_id": None}, "malformed x-cloud-trace-context"),
    ("all-zero cloud trace", "cloud_run", [(b"x-cloud-trace-context", b"0" * 32 + b"/1")], {}, {"trace_context": None}, "all-zero"),
    ("span id out of range", "cloud_run", [(b"x-cloud-trace-context", TRACE_ID.encode() + b"/99999999999999999999")], {}, {"trace_context": TraceContext(trace_id=TRACE_ID, project_id="my-project", raw=TRACE_ID + "/99999999999999999999")}, "span id out of range"),
    ("malformed traceparent", "generic", [(b"traceparent", b"00-xyz-abc-01")], {}, {"trace_context": None}, "malformed traceparent"),
    ("uppercase traceparent", "generic", [(b"traceparent", TRACEPARENT.upper())], {}, {"trace_context": None}, "malformed traceparent"),
    ("traceparent version ff", "generic", [(b"traceparent", b"ff" + TRACEPARENT[2:])], {}, {"trace_context": None}, "invalid traceparent"),
    ("traceparent v00 with extra", "generic", [(b"traceparent", TRACEPARENT + b"-x")], {}, {"trace_context": None}, "invalid traceparent"),
    ("traceparent zero span", "generic", [(b"traceparent", b"00-" + TRACE_ID.encode() + b"-0000000000000000-01")], {}, {"trace_context": None}, "invalid traceparent"),
    ("xff garbage", "cloud_run", [(b"x-forwarded-for", b"203.0.113.5, 1.2.3")], {}, {"client_ip": None}, "x-forwarded-for has an entry that is not an IP"),
    ("xff bad bracket", "cloud_run", [(b"x-forwarded-for", b"[2001:db8::1")], {}, {"client_ip": None}, "x-forwarded-for"),
    ("forwarded garbage", "cloud_run", [(b"forwarded", b"for=1.2.3.4;;==")], {}, {"client_ip": "1.2.3.4"}, "malformed forwarded"),
    ("forwarded for= not an address", "cloud_run", [(b"forwarded", b"for=nothere")], {}, {"client_ip": None}, "forwarded has an entry"),
    ("cf-connecting-ip not an address", "cloudflare", [(b"cf-connecting-ip", b"a, b"), (b"x-forwarded-for", b"203.0.113.5")], {}, {"client_ip": "203.0.113.5"}, "cf-connecting-ip"),
    ("bad host", "generic", [(b"host", b"a b")], {}, {"host": None, "raw_url": None}, "host is not a host name"),
]


@pytest.mark.parametrize(
    "platform, headers, request_args, expected, reason",
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_input_falls_back_with_one_log_line(
    platform: str, headers: H, request_args: dict[str, Any], expected: dict[str, Any], reason: str
) -> None:
    with capturedLogs() as events:
        value = metadata(platform, headers, **request_args)
    assert {key: getattr(value, key) for key in expected} == expected
    logged = problems(events)
    assert len(logged) == 1, logged
    assert reason in logged[0]


def test_happy_path_logs_nothing() -> None:
    headers = [
        (b"host", b"hello-123.europe-west1.run.app"),
        (b"x-forwarded-for", b"203.0.113.5"),
        (b"x-forwarded-proto", b"https"),
        (b"forwarded", b'for="203.0.113.5";proto=https'),
        (b"x-cloud-trace-context", CLOUD_TRACE),
        (b"traceparent", TRACEPARENT),
        (b"user-agent", b"curl/8"),
    ]
    with capturedLogs() as events:
        metadata("cloud_run", headers)
        metadata("cloudflare", [(b"x-containerflare-metadata", header_value({"colo": "AMS"}))])
        metadata("generic", [])
    assert problems(events) == []


def test_several_problems_make_one_line() -> None:
    with capturedLogs() as events:
        metadata("cloud_run", [(b"x-cloud-trace-context", b"bad"), (b"x-forwarded-for", b"nope"), (b"user-agent", b"\xff")])
    [line] = problems(events)
    assert "x-cloud-trace-context" in line and "x-forwarded-for" in line and "user-agent" in line
