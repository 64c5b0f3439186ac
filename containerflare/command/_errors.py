# -*- test-case-name: tests.test_command_client -*-
"""
The errors a command can fail with.

Every failure a caller of L{CommandClient.invoke} sees is a L{CommandError}:

    - L{CommandFailure}: the host ran nothing useful and said so (C{ok: false}).
    - L{CommandTimeout}: no reply within the timeout.
    - L{TransportClosed}: the connection to the host went away (or never came).
    - L{Unavailable}: this process has no command channel at all.
    - L{ProtocolError}: the host's reply (or our request) broke the wire format.
"""

from __future__ import annotations

from typing import Any


class CommandError(Exception):
    """
    Base class of every command channel error.
    """


class CommandFailure(CommandError):
    """
    The host answered C{ok: false}.

    @ivar command: the command that failed.
    @ivar diagnostic: the host's explanation (not stable; do not parse it).
    @ivar payload: the reply's payload, usually C{{"code": ...}}.
    @ivar code: C{payload["code"]} when the payload is an object with a
        string C{code} (see C{docs/commands.md}), else L{None}.
    """

    def __init__(self, command: str, diagnostic: str | None, payload: Any = None) -> None:
        super().__init__(command, diagnostic, payload)
        self.command = command
        self.diagnostic = diagnostic
        self.payload = payload

    @property
    def code(self) -> str | None:
        payload = self.payload
        if isinstance(payload, dict) and isinstance(payload.get("code"), str):
            return payload["code"]  # type: ignore[no-any-return]
        return None

    def __str__(self) -> str:
        code = self.code
        prefix = f"{self.command} failed"
        if code is not None:
            prefix += f" ({code})"
        if self.diagnostic:
            return f"{prefix}: {self.diagnostic}"
        return prefix


class CommandTimeout(CommandError):
    """
    No reply came within the timeout.

    @ivar command: the command.
    @ivar timeout: the timeout in seconds.
    @ivar sent: whether the request had been written to the host (C{False}
        when it was still waiting for a connection).
    """

    def __init__(self, command: str, timeout: float, *, sent: bool = True) -> None:
        super().__init__(command, timeout)
        self.command = command
        self.timeout = timeout
        self.sent = sent

    def __str__(self) -> str:
        if self.sent:
            return f"{self.command}: no reply from the host within {self.timeout:g} s"
        return f"{self.command}: no connection to the host within {self.timeout:g} s (not sent)"


class TransportClosed(CommandError):
    """
    The connection to the host is gone (closed, lost, refused, or the client
    was closed) before the reply came.

    @ivar reason: what happened, for people.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class Unavailable(CommandError):
    """
    This process has no command channel (disabled, or not possible on this
    platform); nothing was sent anywhere.

    @ivar reason: why, and what to do about it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"command channel unavailable: {self.reason}"


class ProtocolError(CommandError):
    """
    A reply (or a request) broke the wire format: not JSON, not an object,
    too long, wrong types, or a payload that cannot be written as JSON.
    """


__all__ = [
    "CommandError",
    "CommandFailure",
    "CommandTimeout",
    "ProtocolError",
    "TransportClosed",
    "Unavailable",
]
