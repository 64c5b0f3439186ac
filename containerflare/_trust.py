# -*- test-case-name: tests.test_trust -*-
"""
Whether to believe the Worker's metadata header: its HMAC signature, and a
rate limit for the log lines that bad or forged input causes.

The signature (the Worker must produce byte-identical values)::

    x-containerflare-signature: t=<unix seconds>,v1=<hex>

    <hex> = lowercase hex of HMAC-SHA256(
        key = the secret's UTF-8 bytes,
        msg = ASCII decimal <unix seconds> + "." + the header value's bytes
    )

The header value's bytes are exactly what is sent on the wire for
C{x-containerflare-metadata}: the UTF-8 encoding of the JSON text, which
should be ASCII only (JSON with non-ASCII characters escaped as C{\\uXXXX}:
C{fetch} headers cannot carry characters above U+00FF, and Latin-1 bytes on
the wire would not match the UTF-8 the signature is computed over), with no
leading or trailing whitespace (HTTP strips it).
"""

from __future__ import annotations

import hmac
import weakref
from collections.abc import Sequence

from twisted.logger import Logger

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_MAX_AGE",
    "LogLimiter",
    "limiter_for",
    "sign_metadata",
    "verify_signature",
]

#: The header carrying the signature of C{x-containerflare-metadata}.
SIGNATURE_HEADER = "x-containerflare-signature"

#: How far (in seconds, either way) a signature's timestamp may be from now.
SIGNATURE_MAX_AGE = 300

_HEX = frozenset("0123456789abcdef")
_DIGITS = frozenset("0123456789")


def _mac(value: bytes, secret: str, timestamp: int) -> str:
    message = b"%d." % timestamp + value
    # hmac.digest: the one-shot C implementation, several times cheaper than
    # hmac.new(...).hexdigest() on a request path.
    return hmac.digest(secret.encode("utf-8"), message, "sha256").hex()


def sign_metadata(value: str | bytes, secret: str, now: float) -> str:
    """
    Sign a metadata header value, as the Worker does.

    @param value: the C{x-containerflare-metadata} header value exactly as it
        will be sent; L{str} is encoded as UTF-8.
    @param secret: the shared secret (C{CONTAINERFLARE_METADATA_SECRET}).
    @param now: the current POSIX time; the fraction is dropped.
    @return: the C{x-containerflare-signature} header value,
        C{t=<seconds>,v1=<64 lowercase hex digits>}.
    """
    if isinstance(value, str):
        value = value.encode("utf-8")
    timestamp = int(now)
    return f"t={timestamp},v1={_mac(value, secret, timestamp)}"


def verify_signature(
    value: bytes, signature: Sequence[bytes] | None, secret: str, now: float
) -> str | None:
    """
    Check the signature of a metadata header value.

    @param value: the metadata header's raw bytes, as received.
    @param signature: the raw values of the signature header (L{None} or
        empty when absent).
    @param secret: the shared secret.
    @param now: the current POSIX time.
    @return: L{None} when the signature is valid, else the reason it is not
        (a short text for the log; it never contains the secret).
    """
    if not signature:
        return "no x-containerflare-signature header"
    if len(signature) != 1:
        return "more than one x-containerflare-signature header"
    try:
        text = signature[0].decode("ascii")
    except UnicodeDecodeError:
        return "malformed x-containerflare-signature (not ASCII)"
    timestamp: int | None = None
    candidates: list[str] = []
    for item in text.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return "malformed x-containerflare-signature"
        if key == "t":
            if timestamp is not None or not val or len(val) > 15 or not _DIGITS.issuperset(val):
                return "malformed x-containerflare-signature timestamp"
            timestamp = int(val, 10)
        elif key == "v1":
            val = val.lower()
            if len(val) != 64 or not _HEX.issuperset(val):
                return "malformed x-containerflare-signature v1 value"
            candidates.append(val)
        # Other keys (a future v2, say) are ignored, as in Stripe-style schemes.
    if timestamp is None:
        return "x-containerflare-signature has no t="
    if not candidates:
        return "x-containerflare-signature has no v1="
    if abs(now - timestamp) > SIGNATURE_MAX_AGE:
        return f"x-containerflare-signature timestamp is more than {SIGNATURE_MAX_AGE} s from now"
    expected = _mac(value, secret, timestamp)
    matched = False
    for candidate in candidates:
        # Every candidate is compared, in constant time, so the position of a
        # match does not show in the timing either.
        matched |= hmac.compare_digest(candidate, expected)
    if not matched:
        return "x-containerflare-signature does not match"
    return None


class LogLimiter:
    """
    At most one log line per kind of problem per C{interval} seconds; the
    lines held back are counted in the next one.

    Bad or forged headers come from outside, so an attacker must not be able
    to flood the log with them.  The clock is whatever C{now} the caller
    passes (the request's), so tests drive it.
    """

    __slots__ = ("_held", "_log", "_next", "interval")

    def __init__(self, interval: float = 60.0, log: Logger | None = None) -> None:
        self.interval = interval
        self._next: dict[object, float] = {}
        self._held: dict[object, int] = {}
        self._log = log if log is not None else Logger(namespace="containerflare.metadata")

    def warn(self, key: object, now: float, message: str) -> bool:
        """
        Log C{message} unless a line of the same C{key} was logged less than
        C{interval} seconds before C{now}.

        @return: whether a line was written.
        """
        due = self._next.get(key)
        if due is not None and now < due:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        self._next[key] = now + self.interval
        if len(self._next) > 256:
            # Keys are problem kinds, a small set; keep it bounded anyway.
            self._next.clear()
            self._next[key] = now + self.interval
        self._log.warn(
            "request metadata: {problem}{held_note}",
            problem=message,
            held=held,
            held_note=f" ({held} similar lines held back)" if held else "",
        )
        return True


# One limiter per RuntimeConfig (one per process under twistd, one per test),
# so that no rate-limit state leaks from one configuration to another.
_limiters: dict[int, LogLimiter] = {}


def limiter_for(config: object) -> LogLimiter:
    """
    The log limiter belonging to a configuration value, created on first
    use and dropped when the configuration is garbage collected.
    """
    key = id(config)
    limiter = _limiters.get(key)
    if limiter is None:
        limiter = LogLimiter()
        try:
            weakref.finalize(config, _limiters.pop, key, None)
        except TypeError:
            # Not weak-referenceable: a limiter of its own that nobody keeps.
            return limiter
        _limiters[key] = limiter
    return limiter
