"""
The host command channel (placeholder until the command issue lands).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed


class CommandError(Exception):
    pass


class Unavailable(CommandError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CommandEndpoint:
    pass


class CommandClient:
    def __init__(self, reason: str) -> None:
        self._reason = reason

    @classmethod
    def unavailable(cls, reason: str) -> "CommandClient":
        return cls(reason)

    def invoke(self, command: str, payload: Any = None, *, timeout: float | None = None) -> Deferred[Any]:
        return fail(Unavailable(self._reason))

    def close(self) -> Deferred[None]:
        return succeed(None)


def _parse(text: str) -> CommandEndpoint:
    return CommandEndpoint()


def _default(platform: str, *, stdin_is_tty: bool = False) -> CommandEndpoint:
    return CommandEndpoint()


CommandEndpoint.parse = staticmethod(_parse)  # type: ignore[attr-defined]
CommandEndpoint.default = staticmethod(_default)  # type: ignore[attr-defined]
CommandClient.for_endpoint = classmethod(  # type: ignore[attr-defined]
    lambda cls, endpoint, *, reactor=None, timeout=30.0: cls("command channel not built yet")
)
