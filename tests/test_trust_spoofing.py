"""
The trust model end to end through the providers: who may set the metadata
header, and what a forger gets (the fallbacks, a rate-limited log line,
never an error).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.logger import capturedLogs

from containerflare import sign_metadata

from ._metadata_requests import (
    NOW,
    config,
    header_value,
    make_request,
    metadata,
    signed,
)

SECRET = "worker-and-container-share-this"
FORGED = header_value(
    {"client_ip": "1.1.1.1", "country": "KP", "request_id": "forged", "colo": "XXX", "worker_name": "evil"}
)


def problems(events: Any) -> list[str]:
    return [e["problem"] for e in events if e.get("log_namespace") == "containerflare.metadata"]


def test_forged_header_on_cloud_run_without_secret_is_ignored() -> None:
    headers = [
        (b"x-containerflare-metadata", FORGED),
        (b"cf-connecting-ip", b"1.1.1.1"),
        (b"cf-ipcountry", b"KP"),
        (b"cf-ray", b"forged"),
        (b"x-forwarded-for", b"1.1.1.1, 203.0.113.5"),
    ]
    with capturedLogs() as events:
        value = metadata("cloud_run", headers)
    assert value.client_ip == "203.0.113.5"
    assert value.country is None and value.request_id is None and value.colo is None
    assert value.worker_name == "hello"
    [line] = problems(events)
    assert "not trusted on cloud_run" in line


@pytest.mark.parametrize("platform", ["cloudflare", "generic"])
def test_header_trusted_without_secret_on_cloudflare_and_generic(platform: str) -> None:
    value = metadata(platform, [(b"x-containerflare-metadata", FORGED)])
    assert value.client_ip == "1.1.1.1" and value.country == "KP" and value.request_id == "forged"


@pytest.mark.parametrize("platform", ["cloudflare", "cloud_run", "generic"])
def test_valid_signature_is_used(platform: str) -> None:
    with capturedLogs() as events:
        value = metadata(
            platform, signed(FORGED, SECRET), env={"CONTAINERFLARE_METADATA_SECRET": SECRET}
        )
    assert value.client_ip == "1.1.1.1" and value.country == "KP" and value.request_id == "forged"
    assert problems(events) == []


@pytest.mark.parametrize("platform", ["cloudflare", "cloud_run", "generic"])
@pytest.mark.parametrize(
    "headers, reason",
    [
        ([(b"x-containerflare-metadata", FORGED)], "no x-containerflare-signature"),
        (signed(FORGED, "a guessed secret"), "does not match"),
        (
            [(b"x-containerflare-metadata", FORGED), signed(b"{}", SECRET)[1]],
            "does not match",
        ),
        (signed(FORGED, SECRET, NOW - 301), "more than 300 s"),
        (signed(FORGED, SECRET, NOW + 301), "more than 300 s"),
    ],
    ids=["unsigned", "forged signature", "signature of another value", "replayed after 301 s", "from the future"],
)
def test_bad_signature_is_ignored(platform: str, headers: list[tuple[bytes, bytes]], reason: str) -> None:
    headers = headers + [(b"x-forwarded-for", b"203.0.113.5")]
    with capturedLogs() as events:
        value = metadata(platform, headers, env={"CONTAINERFLARE_METADATA_SECRET": SECRET})
    assert value.country is None and value.request_id is None
    assert value.client_ip == "203.0.113.5"
    [line] = problems(events)
    assert reason in line and SECRET not in line


def test_replay_within_the_window_is_accepted() -> None:
    # Documented limit: no nonce store, a copy is good for 300 s.
    value = metadata(
        "cloud_run", signed(FORGED, SECRET, NOW - 300), env={"CONTAINERFLARE_METADATA_SECRET": SECRET}
    )
    assert value.request_id == "forged"


def test_signature_covers_the_exact_utf8_bytes() -> None:
    raw = '{"colo":"Zürich"}'.encode()
    value = metadata("cloud_run", signed(raw, SECRET), env={"CONTAINERFLARE_METADATA_SECRET": SECRET})
    assert value.colo == "Zürich"
    # The same text with \\u escapes is a different byte string: a signature
    # over one does not cover the other.
    escaped = b'{"colo":"Z\\u00fcrich"}'
    headers = [(b"x-containerflare-metadata", escaped), signed(raw, SECRET)[1]]
    with capturedLogs() as events:
        value = metadata("cloud_run", headers, env={"CONTAINERFLARE_METADATA_SECRET": SECRET})
    assert value.colo is None and len(problems(events)) == 1


def test_forgeries_are_logged_rate_limited_per_config() -> None:
    cfg = config("cloud_run")
    with capturedLogs() as events:
        for offset in (0, 1, 30, 59):
            metadata("cloud_run", [(b"x-containerflare-metadata", FORGED)], cfg=cfg, now=NOW + offset)
        assert len(problems(events)) == 1
        metadata("cloud_run", [(b"x-containerflare-metadata", FORGED)], cfg=cfg, now=NOW + 61)
        logged = [e for e in events if e.get("log_namespace") == "containerflare.metadata"]
        assert len(logged) == 2 and logged[1]["held"] == 3
        # Another kind of problem is not held back by the first.
        metadata("cloud_run", [(b"x-cloud-trace-context", b"bad")], cfg=cfg, now=NOW + 62)
        assert len(problems(events)) == 3
        # A new configuration (a new process, another test) starts afresh.
        metadata("cloud_run", [(b"x-containerflare-metadata", FORGED)], now=NOW + 62)
        assert len(problems(events)) == 4


def test_request_carrying_a_signature_but_no_secret_configured() -> None:
    # On Cloud Run without a secret a signature cannot make the header trusted.
    value = metadata("cloud_run", signed(FORGED, SECRET))
    assert value.request_id is None


def test_provider_never_raises_for_a_broken_request_object() -> None:
    cfg = config("generic")
    request = make_request([(b"host", b"h")])
    request.requestHeaders = None  # type: ignore[assignment]
    with capturedLogs() as events:
        value = cfg.provider.request_metadata(request, cfg, NOW)
    assert value.method == "GET" and value.path == "/"
    assert "minimal metadata used" in problems(events)[0]


def test_signature_helper_matches_what_is_verified() -> None:
    sig = sign_metadata(FORGED, SECRET, NOW)
    assert sig.startswith(f"t={int(NOW)},v1=") and len(sig.split("v1=")[1]) == 64
