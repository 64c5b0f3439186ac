# -*- test-case-name: tests.test_metadata -*-
"""
RequestMetadata: what the platform knows about one request.

(Minimal placeholder; the metadata issue fills every key.)
"""

from __future__ import annotations

from typing import Any

from attrs import asdict, frozen
from twisted.web.iweb import IRequest


@frozen
class RequestMetadata:
    """
    The metadata of one request.
    """

    method: str | None = None
    path: str | None = None
    host: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("latin-1")


def minimal_metadata(request: IRequest) -> RequestMetadata:
    return RequestMetadata(
        method=_text(request.method),
        path=_text(request.uri),
        host=_text(request.getHeader(b"host")),
    )
