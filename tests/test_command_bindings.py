"""
The typed helpers (C{client.kv/d1/r2/queue}): the payloads they send (in
memory, against docs/commands.md) and a round trip of each through the
reference host over a real socket.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from containerflare.command import (
    CommandClient,
    CommandFailure,
    KVValue,
    ProtocolError,
    QueueMessage,
    R2Object,
)

from .test_command_client import Harness
from .test_command_protocol import outcome
from .test_command_sockets import Host, running_host


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def sent(harness: Harness, call: Any, reply: Any = None) -> tuple[dict[str, Any], Any]:
    """
    Make C{call} on a connected client; return the request it wrote and
    what its Deferred fired with when answered with C{reply}.
    """
    conn = harness.endpoint.connections[-1] if harness.endpoint.connections else harness.endpoint.accept()
    d = call(harness.client)
    (req,) = conn.requests()
    conn.reply(req["id"], reply)
    return req, outcome(d)


@pytest.mark.parametrize(
    ("call", "command", "payload"),
    [
        (lambda c: c.kv("KV").get("k"), "kv.get", {"binding": "KV", "key": "k"}),
        (lambda c: c.kv("KV").put("k", "v"), "kv.put", {"binding": "KV", "key": "k", "value": "v"}),
        (
            lambda c: c.kv("KV").put("k", "v", expiration_ttl=60, metadata={"a": 1}),
            "kv.put",
            {"binding": "KV", "key": "k", "value": "v", "expiration_ttl": 60, "metadata": {"a": 1}},
        ),
        (lambda c: c.kv("KV").delete("k"), "kv.delete", {"binding": "KV", "key": "k"}),
        (lambda c: c.kv("KV").list(), "kv.list", {"binding": "KV"}),
        (
            lambda c: c.kv("KV").list(prefix="p", limit=5, cursor="c"),
            "kv.list",
            {"binding": "KV", "prefix": "p", "limit": 5, "cursor": "c"},
        ),
        (lambda c: c.d1("DB").query("SELECT 1"), "d1.query", {"binding": "DB", "sql": "SELECT 1", "params": []}),
        (
            lambda c: c.d1("DB").query("SELECT ?", (1,)),
            "d1.query",
            {"binding": "DB", "sql": "SELECT ?", "params": [1]},
        ),
        (
            lambda c: c.d1("DB").batch(["DELETE FROM t", ("INSERT INTO t VALUES (?)", [2]), {"sql": "SELECT 3"}]),
            "d1.batch",
            {
                "binding": "DB",
                "statements": [
                    {"sql": "DELETE FROM t", "params": []},
                    {"sql": "INSERT INTO t VALUES (?)", "params": [2]},
                    {"sql": "SELECT 3", "params": []},
                ],
            },
        ),
        (lambda c: c.r2("B").get("k"), "r2.get", {"binding": "B", "key": "k"}),
        (lambda c: c.r2("B").delete("k"), "r2.delete", {"binding": "B", "key": "k"}),
        (lambda c: c.r2("B").delete(["a", "b"]), "r2.delete", {"binding": "B", "keys": ["a", "b"]}),
        (lambda c: c.queue("Q").send({"x": 1}), "queue.send", {"binding": "Q", "body": {"x": 1}}),
        (lambda c: c.queue("Q").send(None, delay_seconds=5), "queue.send", {"binding": "Q", "body": None, "delay_seconds": 5}),
        (
            lambda c: c.queue("Q").send_batch([1, QueueMessage({"y": 2}, delay_seconds=3)], delay_seconds=1),
            "queue.send_batch",
            {"binding": "Q", "messages": [{"body": 1}, {"body": {"y": 2}, "delay_seconds": 3}], "delay_seconds": 1},
        ),
    ],
)
def test_payloads_follow_the_contract(harness: Harness, call: Any, command: str, payload: Any) -> None:
    req, _ = sent(harness, call)
    assert req["command"] == command
    assert req["payload"] == payload


def test_r2_put_encodes_the_body(harness: Harness) -> None:
    description = {
        "key": "k", "size": 2, "etag": "e", "uploaded": "2026-12-04T16:30:00.123Z",
        "content_type": "text/plain", "custom_metadata": {"o": "a"},
    }
    req, result = sent(
        harness,
        lambda c: c.r2("B").put("k", b"\x00\xff", content_type="text/plain", custom_metadata={"o": "a"}),
        description,
    )
    assert req["payload"] == {
        "binding": "B", "key": "k", "body_base64": "AP8=", "content_type": "text/plain",
        "custom_metadata": {"o": "a"},
    }
    assert result == R2Object("k", 2, "e", "2026-12-04T16:30:00.123Z", "text/plain", {"o": "a"}, None)


def test_replies_are_typed(harness: Harness) -> None:
    assert sent(harness, lambda c: c.kv("KV").get("k"), {"value": None, "metadata": None})[1] is None
    assert sent(harness, lambda c: c.kv("KV").get_with_metadata("k"), {"value": "v", "metadata": [1]})[1] == KVValue("v", [1])
    assert sent(harness, lambda c: c.kv("KV").put("k", "v"))[1] is None
    assert sent(harness, lambda c: c.r2("B").get("k"), None)[1] is None
    got = sent(
        harness,
        lambda c: c.r2("B").get("k"),
        {"key": "k", "size": 3, "etag": "e", "uploaded": "u", "content_type": None,
         "custom_metadata": {}, "body_base64": base64.b64encode(b"abc").decode()},
    )[1]
    assert got.body == b"abc" and got.content_type is None
    listed = sent(
        harness,
        lambda c: c.r2("B").list(),
        {"objects": [{"key": "k", "size": 0, "etag": "e", "uploaded": "u"}], "truncated": False, "cursor": None},
    )[1]
    assert listed["objects"] == [R2Object("k", 0, "e", "u")] and listed["truncated"] is False


@pytest.mark.parametrize(
    ("call", "reply"),
    [
        (lambda c: c.kv("KV").get("k"), "not an object"),
        (lambda c: c.kv("KV").get("k"), {"value": 3}),
        (lambda c: c.d1("DB").query("SELECT 1"), [1]),
        (lambda c: c.d1("DB").batch(["SELECT 1"]), {"results": []}),
        (lambda c: c.r2("B").get("k"), {"key": "k"}),
        (lambda c: c.r2("B").get("k"), {"key": "k", "size": 1, "etag": "e", "uploaded": "u", "body_base64": "!!"}),
        (lambda c: c.r2("B").list(), {"objects": "nope"}),
    ],
)
def test_malformed_replies_are_protocol_errors(harness: Harness, call: Any, reply: Any) -> None:
    _, result = sent(harness, call, reply)
    assert result.check(ProtocolError)


def test_bad_arguments_fail_without_io(harness: Harness) -> None:
    harness.endpoint.accept()
    assert outcome(harness.client.r2("B").put("k", 3)).check(ProtocolError)  # type: ignore[arg-type]
    assert outcome(harness.client.d1("DB").batch([42])).check(ProtocolError)  # type: ignore[list-item]
    assert harness.endpoint.connections[-1].requests() == []


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    with running_host(tmp_path, "tcp") as h:
        yield h


@pytest_twisted.ensureDeferred
async def test_round_trip_through_the_reference_host(host: Host) -> None:
    client = await CommandClient.connect(host.endpoint, timeout=20)
    try:
        kv = client.kv("KV")
        await kv.put("a", "1", metadata={"n": 1})
        await kv.put("b", "2", expiration_ttl=3600)
        assert await kv.get("a") == "1"
        assert await kv.get_with_metadata("a") == KVValue("1", {"n": 1})
        page = await kv.list(prefix="", limit=1)
        assert [k["name"] for k in page["keys"]] == ["a"] and page["list_complete"] is False
        rest = await kv.list(limit=1, cursor=page["cursor"])
        assert [k["name"] for k in rest["keys"]] == ["b"]
        await kv.delete("a")
        assert await kv.get("a") is None
        with pytest.raises(CommandFailure) as info:
            await kv.put("c", "3", expiration_ttl=1)
        assert info.value.code == "bad_request"

        db = client.d1("DB")
        await db.query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        results = await db.batch([("INSERT INTO t (name) VALUES (?)", ["ada"]), ("INSERT INTO t (name) VALUES (?)", ["bob"])])
        assert [r["meta"]["changes"] for r in results] == [1, 1]
        rows = await db.query("SELECT name FROM t WHERE id > ? ORDER BY id", [0])
        assert rows["results"] == [{"name": "ada"}, {"name": "bob"}]
        with pytest.raises(CommandFailure) as info:
            await db.query("SELECT * FROM nowhere")
        assert info.value.code == "d1_error"

        r2 = client.r2("BUCKET")
        put = await r2.put("img/a.bin", b"\x00\x01\xfe", content_type="application/octet-stream", custom_metadata={"o": "a"})
        assert put.size == 3 and put.body is None and put.custom_metadata == {"o": "a"}
        got = await r2.get("img/a.bin")
        assert got is not None and got.body == b"\x00\x01\xfe" and got.etag == put.etag
        listing = await r2.list(prefix="img/")
        assert [o.key for o in listing["objects"]] == ["img/a.bin"]
        await r2.delete(["img/a.bin", "missing"])
        assert await r2.get("img/a.bin") is None

        queue = client.queue("JOBS")
        await queue.send({"job": 1})
        await queue.send_batch([{"job": 2}, QueueMessage({"job": 3})])
        pulled = await client.invoke("queue.pull", {"binding": "JOBS"})
        assert [m["body"] for m in pulled["messages"]] == [{"job": 1}, {"job": 2}, {"job": 3}]
    finally:
        await client.close()
