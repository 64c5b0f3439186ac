# -*- test-case-name: tests.test_testing -*-
"""
Test your app as containerflare runs it, without sockets or a reactor.

    - L{StubContainer}: an in-memory client (like L{treq.testing.StubTreq})
      around your C{klein.Klein} app, served through the same resource
      wrapper and runtime as under C{twistd containerflare}, with a chosen
      platform, environment and request metadata (optionally signed).
    - L{FakeHost}: the command host your app's C{ctx.invoke(...)} reaches;
      the test sets its replies per command and reads what it received.

See C{docs/testing.md}.
"""

from containerflare._testing import (
    FakeHost,
    HostError,
    NotFinished,
    StubContainer,
    StubResponse,
    encode_metadata,
)

__all__ = [
    "FakeHost",
    "HostError",
    "NotFinished",
    "StubContainer",
    "StubResponse",
    "encode_metadata",
]
