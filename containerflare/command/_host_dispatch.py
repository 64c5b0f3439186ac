# -*- test-case-name: tests.test_host -*-
"""
The reference host's dispatcher: one request object in, one response object
out, following docs/commands.md. Transport-free: the line protocol and the
HTTP face both feed it bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

from containerflare.command._host_store import BadCursor, D1Error, HostStore

PROTOCOL_VERSION = 1
HOST_NAME = "containerflare-reference"
MAX_ID = 2**53 - 1

PROTOCOL_ERROR = "protocol_error"
TOO_LARGE = "too_large"
UNKNOWN_COMMAND = "unknown_command"
BAD_REQUEST = "bad_request"
FORBIDDEN_BINDING = "forbidden_binding"
UNKNOWN_BINDING = "unknown_binding"
D1_ERROR = "d1_error"
INTERNAL_ERROR = "internal_error"

_BINDING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Enough of an oversized line to find a leading {"id": N.
_HEAD_BYTES = 128
_LEADING_ID = re.compile(rb'\A[ \t\r]*\{[ \t\r]*"id"[ \t\r]*:[ \t\r]*(\d{1,16})[ \t\r]*[,}]')
_REQUEST_KEYS = frozenset({"id", "command", "payload"})

_KV_KEY_BYTES = 512
_KV_METADATA_BYTES = 1024
_KV_MIN_TTL = 60
_R2_KEY_BYTES = 1024
_QUEUE_BODY_BYTES = 128 * 1024
_QUEUE_MAX_DELAY = 43200
_LIST_LIMIT = 1000
_BATCH_STATEMENTS = 100
_BATCH_MESSAGES = 100
_DELETE_KEYS = 1000


class HostError(Exception):
    """
    A command that cannot run: becomes an C{ok: false} reply.

    @ivar code: one of the error codes of docs/commands.md.
    @ivar diagnostic: the human-readable explanation.
    """

    def __init__(self, code: str, diagnostic: str) -> None:
        super().__init__(code, diagnostic)
        self.code = code
        self.diagnostic = diagnostic


def _bad(diagnostic: str) -> HostError:
    return HostError(BAD_REQUEST, diagnostic)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _strict_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    # Iterative: a deeply nested value must not exhaust the stack.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(data: bytes) -> Any:
    """
    Strict JSON: UTF-8, no NaN/Infinity, no lone surrogates.

    @raise ValueError: with a short reason when C{data} is not that.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_strict_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"not valid JSON ({str(e)[:200]})") from None
    if _has_lone_surrogate(value):
        raise ValueError("contains a lone surrogate escape")
    return value


def encode_json(value: Any) -> bytes:
    """
    Compact UTF-8 JSON (one line: JSON strings never hold a raw newline).
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _as_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def response(request_id: int | None, ok: bool, payload: Any, diagnostic: str | None) -> dict[str, Any]:
    """
    A response object; without C{id} when C{request_id} is C{None}.
    """
    reply: dict[str, Any] = {}
    if request_id is not None:
        reply["id"] = request_id
    reply.update(ok=ok, payload=payload, diagnostic=diagnostic)
    return reply


def error_response(request_id: int | None, code: str, diagnostic: str) -> dict[str, Any]:
    return response(request_id, False, {"code": code}, diagnostic)


# Field validators: (field name, value) -> the value to use, or HostError.

_Check = Callable[[str, Any], Any]


def _any(name: str, value: Any) -> Any:
    return value


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(f"{name!r} must be a string")
    return value


def _integer(low: int, high: int) -> _Check:
    def check(name: str, value: Any) -> int:
        number = _as_integer(value)
        if number is None or not low <= number <= high:
            raise _bad(f"{name!r} must be an integer from {low} to {high}")
        return number

    return check


def _binding(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _BINDING_NAME.match(value):
        raise _bad(f"{name!r} must be a binding name matching [A-Za-z_][A-Za-z0-9_]*")
    return value


def _kv_key(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{name!r} must be a non-empty string")
    if value in (".", ".."):
        raise _bad(f"{name!r} cannot be {value!r}")
    if len(value.encode("utf-8")) > _KV_KEY_BYTES:
        raise _bad(f"{name!r} is longer than {_KV_KEY_BYTES} bytes of UTF-8")
    return value


def _r2_key(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{name!r} must be a non-empty string")
    if len(value.encode("utf-8")) > _R2_KEY_BYTES:
        raise _bad(f"{name!r} is longer than {_R2_KEY_BYTES} bytes of UTF-8")
    return value


def _sized_json(limit: int) -> _Check:
    def check(name: str, value: Any) -> Any:
        if len(encode_json(value)) > limit:
            raise _bad(f"{name!r} serializes to more than {limit} bytes")
        return value

    return check


def _ttl(name: str, value: Any) -> int:
    number = _as_integer(value)
    if number is None or number < _KV_MIN_TTL:
        raise _bad(f"{name!r} must be an integer of at least {_KV_MIN_TTL} seconds")
    return number


def _base64(name: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise _bad(f"{name!r} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _bad(f"{name!r} is not valid base64 (RFC 4648, with padding)") from None


def _custom_metadata(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(f"{name!r} must be an object of strings")
    return value


def _sql_param(name: str, value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        # D1 binds every JavaScript number, and booleans, as REAL
        # (typeof(?) is 'real', 3 / 2 is 1.5): do the same.
        try:
            return float(value)
        except OverflowError:
            raise _bad(f"{name!r} holds a number too large for D1") from None
    raise _bad(f"{name!r} must hold only null, booleans, numbers and strings")


def _sql_params(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"{name!r} must be a list")
    return [_sql_param(name, item) for item in value]


def _list_of(check: _Check, low: int, high: int) -> _Check:
    def check_list(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list) or not low <= len(value) <= high:
            raise _bad(f"{name!r} must be a list of {low} to {high} items")
        return [check(f"{name}[{index}]", item) for index, item in enumerate(value)]

    return check_list


def fields(
    payload: Any,
    required: dict[str, _Check],
    optional: dict[str, tuple[_Check, Any]] | None = None,
    *,
    where: str = "payload",
) -> dict[str, Any]:
    """
    Check a payload object: required fields present, optional ones C{null}
    or valid (then defaulted), nothing else.

    @raise HostError: C{bad_request} naming the first field at fault.
    """
    optional = optional or {}
    if not isinstance(payload, dict):
        raise _bad(f"{where} must be a JSON object")
    unknown = sorted(set(payload) - set(required) - set(optional))
    if unknown:
        raise _bad(f"unknown field(s) in {where}: {', '.join(map(repr, unknown))}")
    def qualified(name: str) -> str:
        # Nested objects name their fields in full: statements[2].sql
        return name if where == "payload" else f"{where}.{name}"

    checked: dict[str, Any] = {}
    for name, check in required.items():
        if name not in payload:
            raise _bad(f"{where} is missing {name!r}")
        checked[name] = check(qualified(name), payload[name])
    for name, (check, default) in optional.items():
        value = payload.get(name)
        checked[name] = default if value is None else check(qualified(name), value)
    return checked


def _statement(name: str, value: Any) -> tuple[str, list[Any]]:
    checked = fields(value, {"sql": _string}, {"params": (_sql_params, [])}, where=name)
    return checked["sql"], checked["params"]


_DELAY = _integer(0, _QUEUE_MAX_DELAY)
_QUEUE_BODY = _sized_json(_QUEUE_BODY_BYTES)


def _message(name: str, value: Any) -> tuple[Any, int | None]:
    checked = fields(value, {"body": _QUEUE_BODY}, {"delay_seconds": (_DELAY, None)}, where=name)
    return checked["body"], checked["delay_seconds"]


_LIMIT = (_integer(1, _LIST_LIMIT), _LIST_LIMIT)
_OPTIONAL_STRING = (_string, None)


class HostDispatcher:
    """
    Answers command requests from a L{HostStore}.

    @ivar store: the storage.
    @ivar allow: binding names that may be used, or C{None} for any.
    """

    log = Logger()

    def __init__(
        self,
        store: HostStore,
        *,
        allow: Iterable[str] | None = None,
        host_name: str = HOST_NAME,
    ) -> None:
        self.store = store
        self.allow = frozenset(allow) if allow is not None else None
        self.host_name = host_name
        self._handlers: dict[str, Callable[[Any], Any]] = {
            "ping": self._ping,
            "host.info": self._host_info,
            "kv.get": self._kv_get,
            "kv.put": self._kv_put,
            "kv.delete": self._kv_delete,
            "kv.list": self._kv_list,
            "d1.query": self._d1_query,
            "d1.batch": self._d1_batch,
            "r2.get": self._r2_get,
            "r2.put": self._r2_put,
            "r2.delete": self._r2_delete,
            "r2.list": self._r2_list,
            "queue.send": self._queue_send,
            "queue.send_batch": self._queue_send_batch,
            "queue.pull": self._queue_pull,
        }

    @property
    def commands(self) -> list[str]:
        """
        The sorted names of the commands this host answers.
        """
        return sorted(self._handlers)

    # Entry points

    def handle_line(self, line: bytes) -> bytes:
        """
        Answer one request line (without its newline).

        @return: the response line, without newline. Never raises.
        """
        return self._answer(line)[1]

    def handle_body(self, body: bytes) -> tuple[int, bytes]:
        """
        Answer one HTTP request body.

        @return: (HTTP status, response body). Never raises.
        """
        return self._answer(body)

    def oversized(self, head: bytes, limit: int) -> bytes:
        """
        The reply to a line longer than C{limit} bytes that began with
        C{head}: C{too_large}, with the id if the line began C{{"id": N}.
        """
        return encode_json(self.oversized_response(head, limit))

    def oversized_response(self, head: bytes, limit: int) -> dict[str, Any]:
        match = _LEADING_ID.match(head[:_HEAD_BYTES])
        request_id = None
        if match is not None:
            number = int(match.group(1))
            request_id = number if number <= MAX_ID else None
        self.log.warn("rejected a request of more than {limit} bytes (id {id})", limit=limit, id=request_id)
        return error_response(request_id, TOO_LARGE, f"request is longer than {limit} bytes")

    def _answer(self, data: bytes) -> tuple[int, bytes]:
        try:
            request = parse_json(data)
        except ValueError as e:
            self.log.warn("rejected a malformed request: {why}", why=str(e))
            return 400, encode_json(error_response(None, PROTOCOL_ERROR, f"request is {e}"))
        reply = self.dispatch(request)
        status = 400 if not reply["ok"] and reply["payload"]["code"] == PROTOCOL_ERROR else 200
        try:
            return status, encode_json(reply)
        except Exception as e:
            # Not expected for values this host produces; never crash if it happens.
            self.log.failure("unencodable reply")
            reply = error_response(reply.get("id"), INTERNAL_ERROR, f"unencodable reply: {type(e).__name__}")
            return 500, encode_json(reply)

    def dispatch(self, request: Any) -> dict[str, Any]:
        """
        Answer a parsed request object.

        @return: the response object. Never raises.
        """
        if not isinstance(request, dict):
            return error_response(None, PROTOCOL_ERROR, "request must be a JSON object")
        request_id = None
        if "id" in request:
            request_id = _as_integer(request["id"])
            if request_id is None or not 0 <= request_id <= MAX_ID:
                return error_response(
                    None, PROTOCOL_ERROR, f"'id' must be an integer from 0 to {MAX_ID}"
                )
        command = request.get("command")
        if not isinstance(command, str):
            return error_response(request_id, PROTOCOL_ERROR, "'command' must be a string")
        handler = self._handlers.get(command)
        if handler is None:
            return error_response(request_id, UNKNOWN_COMMAND, f"unknown command {command[:100]!r}")
        unknown = sorted(set(request) - _REQUEST_KEYS)
        if unknown:
            return error_response(
                request_id, BAD_REQUEST, f"unknown request key(s): {', '.join(map(repr, unknown))}"
            )
        try:
            result = handler(request.get("payload"))
        except HostError as e:
            return error_response(request_id, e.code, e.diagnostic)
        except D1Error as e:
            return error_response(request_id, D1_ERROR, str(e))
        except BadCursor as e:
            return error_response(request_id, BAD_REQUEST, str(e))
        except Exception as e:
            self.log.failure("command {command} failed", command=command)
            return error_response(request_id, INTERNAL_ERROR, f"{command} failed: {type(e).__name__}")
        return response(request_id, True, result, None)

    def _check_binding(self, name: str) -> str:
        if self.allow is not None and name not in self.allow:
            raise HostError(FORBIDDEN_BINDING, f"binding {name!r} is not allowed on this host")
        return name

    def _fields(self, payload: Any, required: dict[str, _Check], optional: dict[str, tuple[_Check, Any]] | None = None) -> dict[str, Any]:
        checked = fields(payload, {"binding": _binding, **required}, optional)
        self._check_binding(checked["binding"])
        return checked

    # Commands

    def _ping(self, payload: Any) -> Any:
        return payload

    def _host_info(self, payload: Any) -> dict[str, Any]:
        if payload is not None:
            fields(payload, {})
        return {"host": self.host_name, "protocol": PROTOCOL_VERSION, "commands": self.commands}

    def _kv_get(self, payload: Any) -> dict[str, Any]:
        p = self._fields(payload, {"key": _kv_key})
        value, metadata = self.store.kv_get(p["binding"], p["key"])
        return {"value": value, "metadata": metadata}

    def _kv_put(self, payload: Any) -> None:
        p = self._fields(
            payload,
            {"key": _kv_key, "value": _string},
            {"expiration_ttl": (_ttl, None), "metadata": (_sized_json(_KV_METADATA_BYTES), None)},
        )
        self.store.kv_put(
            p["binding"], p["key"], p["value"], expiration_ttl=p["expiration_ttl"], metadata=p["metadata"]
        )

    def _kv_delete(self, payload: Any) -> None:
        p = self._fields(payload, {"key": _kv_key})
        self.store.kv_delete(p["binding"], p["key"])

    def _kv_list(self, payload: Any) -> dict[str, Any]:
        p = self._fields(payload, {}, {"prefix": _OPTIONAL_STRING, "limit": _LIMIT, "cursor": _OPTIONAL_STRING})
        return self.store.kv_list(p["binding"], prefix=p["prefix"], limit=p["limit"], cursor=p["cursor"])

    def _d1_query(self, payload: Any) -> dict[str, Any]:
        p = self._fields(payload, {"sql": _string}, {"params": (_sql_params, [])})
        return self.store.d1(p["binding"]).query(p["sql"], p["params"])

    def _d1_batch(self, payload: Any) -> list[dict[str, Any]]:
        p = self._fields(payload, {"statements": _list_of(_statement, 1, _BATCH_STATEMENTS)})
        return self.store.d1(p["binding"]).batch(p["statements"])

    def _r2_get(self, payload: Any) -> dict[str, Any] | None:
        p = self._fields(payload, {"key": _r2_key})
        return self.store.r2_get(p["binding"], p["key"])

    def _r2_put(self, payload: Any) -> dict[str, Any]:
        p = self._fields(
            payload,
            {"key": _r2_key, "body_base64": _base64},
            {"content_type": _OPTIONAL_STRING, "custom_metadata": (_custom_metadata, None)},
        )
        return self.store.r2_put(
            p["binding"],
            p["key"],
            p["body_base64"],
            content_type=p["content_type"],
            custom_metadata=p["custom_metadata"],
        )

    def _r2_delete(self, payload: Any) -> None:
        p = self._fields(
            payload, {}, {"key": (_r2_key, None), "keys": (_list_of(_r2_key, 1, _DELETE_KEYS), None)}
        )
        if (p["key"] is None) == (p["keys"] is None):
            raise _bad("give exactly one of 'key' and 'keys'")
        self.store.r2_delete(p["binding"], [p["key"]] if p["key"] is not None else p["keys"])

    def _r2_list(self, payload: Any) -> dict[str, Any]:
        p = self._fields(payload, {}, {"prefix": _OPTIONAL_STRING, "limit": _LIMIT, "cursor": _OPTIONAL_STRING})
        return self.store.r2_list(p["binding"], prefix=p["prefix"], limit=p["limit"], cursor=p["cursor"])

    def _queue_send(self, payload: Any) -> None:
        p = self._fields(payload, {"body": _QUEUE_BODY}, {"delay_seconds": (_DELAY, 0)})
        self.store.queue_send(p["binding"], [(p["body"], p["delay_seconds"])])

    def _queue_send_batch(self, payload: Any) -> None:
        p = self._fields(
            payload,
            {"messages": _list_of(_message, 1, _BATCH_MESSAGES)},
            {"delay_seconds": (_DELAY, 0)},
        )
        default = p["delay_seconds"]
        self.store.queue_send(
            p["binding"], [(body, default if delay is None else delay) for body, delay in p["messages"]]
        )

    def _queue_pull(self, payload: Any) -> dict[str, Any]:
        p = self._fields(payload, {}, {"limit": (_integer(1, 1000), 100)})
        return {"messages": self.store.queue_pull(p["binding"], p["limit"])}
