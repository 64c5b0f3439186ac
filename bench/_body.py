"""
The one response every server gives: a small JSON object built from three
request headers.
"""

from __future__ import annotations

import json

#: Headers wrk sends (Host is set by wrk itself).
HEADERS = {"User-Agent": "containerflare-bench/1", "CF-Ray": "8f0c6a3e9d8b4a1c-ZRH"}


def body(host: str | None, user_agent: str | None, request_id: str | None) -> bytes:
    return json.dumps(
        {"host": host, "user_agent": user_agent, "request_id": request_id},
        separators=(",", ":"),
    ).encode("utf-8")
