"""
Signing and verifying the metadata header, and the log rate limit.
"""

from __future__ import annotations

import gc
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import Logger, capturedLogs

from containerflare import SIGNATURE_MAX_AGE, sign_metadata
from containerflare._trust import LogLimiter, _limiters, limiter_for, verify_signature

SECRET = "s3cret"
VALUE = b'{"colo":"AMS"}'
NOW = 1_700_000_000


def test_known_vector() -> None:
    # The Worker's tests pin the same vector (Web Crypto HMAC-SHA256).
    assert sign_metadata('{"colo":"AMS"}', SECRET, NOW) == (
        "t=1700000000,v1=b3b8dad3b7c74039d6804f9db47380fa0d63ba268c1ed8bdba8e858ba026de19"
    )


def test_signed_bytes_are_seconds_dot_value() -> None:
    value = '{"city":"Z\\u00fcrich","x":"é"}'  # str: its UTF-8 bytes are signed
    expected = hmac.new(
        SECRET.encode(), b"1700000000." + value.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    assert sign_metadata(value, SECRET, NOW + 0.9) == f"t=1700000000,v1={expected}"
    assert sign_metadata(value.encode("utf-8"), SECRET, NOW) == f"t=1700000000,v1={expected}"


def _sig(value: bytes = VALUE, now: float = NOW, secret: str = SECRET) -> list[bytes]:
    return [sign_metadata(value, secret, now).encode()]


@pytest.mark.parametrize("skew", [0, 1, -1, SIGNATURE_MAX_AGE, -SIGNATURE_MAX_AGE])
def test_valid_within_window(skew: int) -> None:
    assert verify_signature(VALUE, _sig(now=NOW + skew), SECRET, NOW) is None


@pytest.mark.parametrize("skew", [SIGNATURE_MAX_AGE + 1, -SIGNATURE_MAX_AGE - 1, 86400])
def test_replayed_or_future_signature_is_refused(skew: int) -> None:
    # A header replayed more than 300 s later (or signed too far ahead).
    reason = verify_signature(VALUE, _sig(now=NOW - skew), SECRET, NOW)
    assert reason is not None and "300 s" in reason


def test_fractional_now_window_edge() -> None:
    assert verify_signature(VALUE, _sig(now=NOW), SECRET, NOW + 300.0) is None
    assert verify_signature(VALUE, _sig(now=NOW), SECRET, NOW + 300.5) is not None


@pytest.mark.parametrize(
    "signature, reason",
    [
        (None, "no x-containerflare-signature"),
        ([], "no x-containerflare-signature"),
        ([b"t=1,v1=" + b"0" * 64, b"t=1,v1=" + b"0" * 64], "more than one"),
        ([b"\xff"], "not ASCII"),
        ([b"garbage"], "malformed"),
        ([b"v1=" + b"0" * 64], "no t="),
        ([b"t=1700000000"], "no v1="),
        ([b"t=-5,v1=" + b"0" * 64], "timestamp"),
        ([b"t=1e9,v1=" + b"0" * 64], "timestamp"),
        ([b"t=1,t=2,v1=" + b"0" * 64], "timestamp"),
        ([b"t=1700000000,v1=abc"], "v1 value"),
        ([b"t=1700000000,v1=" + b"g" * 64], "v1 value"),
        ([b"t=1700000000,v1=" + b"0" * 64], "does not match"),
    ],
)
def test_bad_signatures(signature: list[bytes] | None, reason: str) -> None:
    result = verify_signature(VALUE, signature, SECRET, NOW)
    assert result is not None and reason in result
    assert SECRET not in result


def test_forged_signature_other_secret_or_value() -> None:
    assert "does not match" in verify_signature(VALUE, _sig(secret="guess"), SECRET, NOW)  # type: ignore[operator]
    assert "does not match" in verify_signature(b'{"colo":"SFO"}', _sig(), SECRET, NOW)  # type: ignore[operator]
    # The timestamp is signed too: moving it forward breaks the signature.
    tampered = _sig()[0].replace(b"t=1700000000", b"t=1700000100")
    assert "does not match" in verify_signature(VALUE, [tampered], SECRET, NOW)  # type: ignore[operator]


def test_uppercase_hex_extra_keys_and_rotation() -> None:
    good = sign_metadata(VALUE, SECRET, NOW)
    t, v1 = good.split(",")
    assert verify_signature(VALUE, [f"{t}, {v1.upper().replace('V1=', 'v1=')}".encode()], SECRET, NOW) is None
    # A v1 for an old secret beside the current one, and unknown keys: fine.
    old = sign_metadata(VALUE, "old", NOW).split(",")[1]
    assert verify_signature(VALUE, [f"{t},{old},{v1},v2=xyz".encode()], SECRET, NOW) is None


@given(st.binary(max_size=200), st.lists(st.binary(max_size=120), max_size=3), st.floats(allow_nan=False, allow_infinity=False))
def test_verify_never_raises(value: bytes, signature: list[bytes], now: float) -> None:
    result = verify_signature(value, signature, SECRET, now)
    assert result is None or isinstance(result, str)


@given(st.text(max_size=60))
def test_signature_header_text_never_raises(text: str) -> None:
    verify_signature(VALUE, [text.encode("utf-8", "surrogatepass")], SECRET, NOW)


def _events(limiter: LogLimiter, calls: list[tuple[object, float]]) -> list[dict]:
    events: list[dict] = []
    limiter._log = Logger(namespace="test", observer=events.append)  # type: ignore[arg-type]
    for key, now in calls:
        limiter.warn(key, now, f"problem {key}")
    return events


def test_limiter_one_line_per_kind_per_interval() -> None:
    events = _events(
        LogLimiter(interval=60),
        [("a", 0), ("a", 1), ("b", 2), ("a", 59.9), ("a", 60), ("a", 61), ("a", 200)],
    )
    lines = [(e["problem"], e["held"]) for e in events]
    assert lines == [("problem a", 0), ("problem b", 0), ("problem a", 2), ("problem a", 1)]
    assert "2 similar lines held back" in events[2]["held_note"]


def test_limiter_per_config_and_dropped_with_it() -> None:
    class Config:
        pass

    first, second = Config(), Config()
    assert limiter_for(first) is limiter_for(first)
    assert limiter_for(first) is not limiter_for(second)
    key = id(first)
    assert key in _limiters
    del first
    gc.collect()
    assert key not in _limiters


def test_limiter_for_unreferenceable_value() -> None:
    limiter = limiter_for(object())
    assert isinstance(limiter, LogLimiter)


def test_limiter_writes_to_the_metadata_namespace() -> None:
    with capturedLogs() as events:
        LogLimiter().warn("k", 0, "bad header")
    [event] = [e for e in events if e.get("log_namespace") == "containerflare.metadata"]
    assert event["problem"] == "bad header"
    assert event["log_level"].name == "warn"
