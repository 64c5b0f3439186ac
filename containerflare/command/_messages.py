# -*- test-case-name: tests.test_command_protocol -*-
"""
The two messages of the command channel and their JSON form (see
C{docs/commands.md}, "Wire format").
"""

from __future__ import annotations

import json
from typing import Any

from attrs import field, frozen, validators

from containerflare.command._errors import ProtocolError

#: Largest id a host must accept (JSON numbers are doubles in the Worker).
MAX_ID = 2**53 - 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Built once: json.dumps/json.loads with keyword arguments build a new
# encoder/decoder on every call, about half of their cost for a small line.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@frozen
class CommandRequest:
    """
    One command for the host.

    @ivar command: the command's name, e.g. C{"kv.get"}.
    @ivar payload: its arguments: any value C{json} can write (usually a
        C{dict}).
    """

    command: str = field(validator=validators.and_(validators.instance_of(str), validators.min_len(1)))
    payload: Any = None

    def to_dict(self, id: int | None = None) -> dict[str, Any]:
        """
        The request as a JSON object, C{id} first when given (hosts look for
        it at the start of a line they cannot read whole).
        """
        obj: dict[str, Any] = {}
        if id is not None:
            obj["id"] = id
        obj["command"] = self.command
        obj["payload"] = self.payload
        return obj

    def encode(self, id: int | None = None) -> bytes:
        """
        The request as one line of strict UTF-8 JSON, without the newline.

        @raise ProtocolError: the payload cannot be written as strict JSON
            (an object C{json} does not know, C{NaN}, a lone surrogate, a
            cycle).
        """
        try:
            return _ENCODER.encode(self.to_dict(id)).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as e:
            raise ProtocolError(f"the payload of {self.command!r} cannot be sent as JSON: {e}") from None


@frozen
class CommandResponse:
    """
    The host's answer to one command.

    @ivar ok: C{True} when the command ran.
    @ivar payload: its result when C{ok}, else an error object
        (C{{"code": ...}}).
    @ivar diagnostic: C{None} when C{ok}, else the host's explanation.
    @ivar id: the id the reply carried, if any.
    """

    ok: bool
    payload: Any = None
    diagnostic: str | None = None
    id: int | None = None

    @classmethod
    def from_dict(cls, obj: Any) -> CommandResponse:
        """
        Read a decoded reply object.

        @raise ProtocolError: C{obj} is not a reply (not an object, no
            boolean C{ok}, or an C{id} that is not an integer).
        """
        if not isinstance(obj, dict):
            raise ProtocolError(f"reply is not a JSON object: {_preview(obj)}")
        ok = obj.get("ok")
        if not isinstance(ok, bool):
            raise ProtocolError(f"reply has no boolean 'ok': {_preview(obj)}")
        rid = obj.get("id")
        if rid is not None and not _is_id(rid):
            raise ProtocolError(f"reply has an invalid 'id': {_preview(rid)}")
        diagnostic = obj.get("diagnostic")
        if diagnostic is not None and not isinstance(diagnostic, str):
            # Keep what the host said rather than failing the whole reply.
            diagnostic = json.dumps(diagnostic)
        return cls(ok=ok, payload=obj.get("payload"), diagnostic=diagnostic, id=rid)

    @classmethod
    def decode(cls, data: bytes) -> CommandResponse:
        """
        Read one reply line (strict UTF-8 JSON, without the newline).

        @raise ProtocolError: it is not one.
        """
        try:
            obj = _DECODER.decode(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ProtocolError(f"reply is not JSON ({e}): {_preview(data)}") from None
        return cls.from_dict(obj)

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        if self.id is not None:
            obj["id"] = self.id
        obj.update(ok=self.ok, payload=self.payload, diagnostic=self.diagnostic)
        return obj


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _preview(value: Any, limit: int = 120) -> str:
    text = repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


__all__ = ["CommandRequest", "CommandResponse"]
