# -*- test-case-name: tests.test_command_bindings -*-
"""
Typed helpers over L{CommandClient.invoke} for the commands of
C{docs/commands.md}: C{client.kv("KV").get("key")},
C{client.d1("DB").query("SELECT ?", [1])}, C{client.r2("BUCKET").put(...)},
C{client.queue("JOBS").send({...})}.  Each returns a Deferred and fails like
C{invoke} does (a host's C{ok: false} is a L{CommandFailure} whose C{code}
is the error code of the contract).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from attrs import field, frozen
from twisted.internet.defer import Deferred, fail

from containerflare.command._errors import ProtocolError

if TYPE_CHECKING:
    from containerflare.command._client import CommandClient

#: A D1 statement for L{D1.batch}: SQL alone, C{(sql, params)}, or
#: C{{"sql": ..., "params": [...]}}.
Statement = Union[str, Sequence[Any], Mapping[str, Any]]


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class _Binding:
    def __init__(self, client: CommandClient, binding: str) -> None:
        self.client = client
        self.binding = binding

    def _invoke(self, command: str, timeout: float | None, **fields: Any) -> Deferred[Any]:
        return self.client.invoke(command, {"binding": self.binding, **fields}, timeout=timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.binding!r} via {self.client!r}>"


# -- KV ------------------------------------------------------------------


@frozen
class KVValue:
    """
    A KV value with its metadata (C{value} is L{None} when the key is
    missing or expired).
    """

    value: str | None
    metadata: Any = None


class KV(_Binding):
    """
    A Workers KV namespace.  Values are strings (store bytes as base64).
    """

    def get(self, key: str, *, timeout: float | None = None) -> Deferred[str | None]:
        """
        The value of C{key}, or L{None} when it is missing or expired.
        """
        return self.get_with_metadata(key, timeout=timeout).addCallback(lambda v: v.value)

    def get_with_metadata(self, key: str, *, timeout: float | None = None) -> Deferred[KVValue]:
        """
        The value of C{key} and its metadata.
        """
        d = self._invoke("kv.get", timeout, key=key)
        return d.addCallback(_kv_value)

    def put(
        self,
        key: str,
        value: str,
        *,
        expiration_ttl: int | None = None,
        metadata: Any = None,
        timeout: float | None = None,
    ) -> Deferred[None]:
        """
        Store C{value} under C{key}, expiring C{expiration_ttl} seconds from
        now (at least 60) if given, with C{metadata} (any JSON value, at most
        1024 bytes written compactly).
        """
        d = self._invoke(
            "kv.put",
            timeout,
            key=key,
            value=value,
            **_drop_none(expiration_ttl=expiration_ttl, metadata=metadata),
        )
        return d.addCallback(lambda _: None)

    def delete(self, key: str, *, timeout: float | None = None) -> Deferred[None]:
        """
        Remove C{key} (fine if it does not exist).
        """
        return self._invoke("kv.delete", timeout, key=key).addCallback(lambda _: None)

    def list(
        self,
        *,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> Deferred[dict[str, Any]]:
        """
        One page of keys: C{{"keys": [{"name", "expiration", "metadata"}],
        "list_complete": bool, "cursor": str | None}}; pass C{cursor} back
        with the same C{prefix} for the next page.
        """
        return self._invoke(
            "kv.list", timeout, **_drop_none(prefix=prefix, limit=limit, cursor=cursor)
        ).addCallback(_object_reply, "kv.list")


def _kv_value(reply: Any) -> KVValue:
    reply = _object_reply(reply, "kv.get")
    value = reply.get("value")
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"kv.get: value is not a string: {value!r:.80}")
    return KVValue(value, reply.get("metadata"))


# -- D1 ------------------------------------------------------------------


class D1(_Binding):
    """
    A D1 (SQLite) database.  Parameters bind in order to C{?} and C{?NNN}.
    """

    def query(
        self, sql: str, params: Sequence[Any] = (), *, timeout: float | None = None
    ) -> Deferred[dict[str, Any]]:
        """
        Run one statement: C{{"results": [row objects], "meta": {"changes",
        "last_row_id"}}}.
        """
        return self._invoke("d1.query", timeout, sql=sql, params=list(params)).addCallback(
            _object_reply, "d1.query"
        )

    def batch(
        self, statements: Iterable[Statement], *, timeout: float | None = None
    ) -> Deferred[list[dict[str, Any]]]:
        """
        Run statements atomically (all or none); one result per statement.
        Each is SQL alone, C{(sql, params)} or C{{"sql": ..., "params": ...}}.
        """
        try:
            items = [_statement(s) for s in statements]
        except (TypeError, ValueError) as e:
            return fail(ProtocolError(f"d1.batch: {e}"))
        return self._invoke("d1.batch", timeout, statements=items).addCallback(_list_reply, "d1.batch")


def _statement(statement: Statement) -> dict[str, Any]:
    if isinstance(statement, str):
        return {"sql": statement, "params": []}
    if isinstance(statement, Mapping):
        return {"sql": statement["sql"], "params": list(statement.get("params", ()))}
    if isinstance(statement, Sequence) and len(statement) == 2:
        return {"sql": statement[0], "params": list(statement[1])}
    raise TypeError(f"not a statement: {statement!r:.80}")


# -- R2 ------------------------------------------------------------------


@frozen
class R2Object:
    """
    An R2 object's description, with its body when it was read with
    L{R2.get}.
    """

    key: str
    size: int
    etag: str
    uploaded: str
    content_type: str | None = None
    custom_metadata: dict[str, str] = field(factory=dict)
    body: bytes | None = None

    @classmethod
    def from_dict(cls, obj: Any, command: str = "r2") -> R2Object:
        if not isinstance(obj, dict):
            raise ProtocolError(f"{command}: expected an object description, got {obj!r:.80}")
        body = None
        if obj.get("body_base64") is not None:
            try:
                body = base64.b64decode(obj["body_base64"], validate=True)
            except (binascii.Error, ValueError, TypeError) as e:
                raise ProtocolError(f"{command}: body_base64 is not base64: {e}") from None
        try:
            return cls(
                key=obj["key"],
                size=obj["size"],
                etag=obj["etag"],
                uploaded=obj["uploaded"],
                content_type=obj.get("content_type"),
                custom_metadata=obj.get("custom_metadata") or {},
                body=body,
            )
        except KeyError as e:
            raise ProtocolError(f"{command}: object description without {e}") from None


def _body_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"an R2 body is bytes or str, not {type(body).__name__}")


class R2(_Binding):
    """
    An R2 bucket.  Bodies travel base64-encoded; these helpers take and give
    C{bytes}.
    """

    def put(
        self,
        key: str,
        body: bytes | str,
        *,
        content_type: str | None = None,
        custom_metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Deferred[R2Object]:
        """
        Store C{body} (C{str} is stored as UTF-8) under C{key}, replacing
        what was there.
        """
        try:
            encoded = base64.b64encode(_body_bytes(body)).decode("ascii")
        except TypeError as e:
            return fail(ProtocolError(f"r2.put: {e}"))
        fields = _drop_none(
            content_type=content_type,
            custom_metadata=dict(custom_metadata) if custom_metadata is not None else None,
        )
        d = self._invoke("r2.put", timeout, key=key, body_base64=encoded, **fields)
        return d.addCallback(R2Object.from_dict, "r2.put")

    def get(self, key: str, *, timeout: float | None = None) -> Deferred[R2Object | None]:
        """
        The object under C{key} with its C{body}, or L{None} when missing.
        """
        d = self._invoke("r2.get", timeout, key=key)
        return d.addCallback(lambda reply: None if reply is None else R2Object.from_dict(reply, "r2.get"))

    def delete(self, key: str | Iterable[str], *, timeout: float | None = None) -> Deferred[None]:
        """
        Remove C{key}, or every key of a list of keys (missing ones are fine).
        """
        if isinstance(key, str):
            d = self._invoke("r2.delete", timeout, key=key)
        else:
            d = self._invoke("r2.delete", timeout, keys=list(key))
        return d.addCallback(lambda _: None)

    def list(
        self,
        *,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> Deferred[dict[str, Any]]:
        """
        One page of objects: C{{"objects": [R2Object], "truncated": bool,
        "cursor": str | None}}.
        """
        d = self._invoke("r2.list", timeout, **_drop_none(prefix=prefix, limit=limit, cursor=cursor))
        return d.addCallback(_r2_list)


def _r2_list(reply: Any) -> dict[str, Any]:
    reply = _object_reply(reply, "r2.list")
    objects = reply.get("objects")
    if not isinstance(objects, list):
        raise ProtocolError(f"r2.list: no list of objects in {reply!r:.80}")
    return {**reply, "objects": [R2Object.from_dict(o, "r2.list") for o in objects]}


# -- Queues --------------------------------------------------------------


@frozen
class QueueMessage:
    """
    A message for L{Queue.send_batch} with its own delay.
    """

    body: Any
    delay_seconds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"body": self.body, **_drop_none(delay_seconds=self.delay_seconds)}


class Queue(_Binding):
    """
    A Queue producer.  Bodies are any JSON value (at most 128 KiB written).
    """

    def send(self, body: Any, *, delay_seconds: int | None = None, timeout: float | None = None) -> Deferred[None]:
        """
        Send one message, delivered after C{delay_seconds} if given.
        """
        d = self._invoke("queue.send", timeout, body=body, **_drop_none(delay_seconds=delay_seconds))
        return d.addCallback(lambda _: None)

    def send_batch(
        self,
        messages: Iterable[Any],
        *,
        delay_seconds: int | None = None,
        timeout: float | None = None,
    ) -> Deferred[None]:
        """
        Send messages all or nothing; each is a body, or a L{QueueMessage}
        with its own delay (which wins over C{delay_seconds}).
        """
        items = [m.to_dict() if isinstance(m, QueueMessage) else {"body": m} for m in messages]
        d = self._invoke(
            "queue.send_batch", timeout, messages=items, **_drop_none(delay_seconds=delay_seconds)
        )
        return d.addCallback(lambda _: None)


# -- replies -------------------------------------------------------------


def _object_reply(reply: Any, command: str) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise ProtocolError(f"{command}: expected an object in the reply, got {reply!r:.80}")
    return reply


def _list_reply(reply: Any, command: str) -> list[Any]:
    if not isinstance(reply, list):
        raise ProtocolError(f"{command}: expected a list in the reply, got {reply!r:.80}")
    return reply


__all__ = ["D1", "KV", "R2", "KVValue", "Queue", "QueueMessage", "R2Object", "Statement"]
