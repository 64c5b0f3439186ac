"""
The reference command host (containerflare.command.host): the dispatcher for
every command and error of docs/commands.md, the line protocol, the command
line, and the real process over TCP, UNIX sockets, stdio and HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage

from containerflare.command import host as host_module
from containerflare.command.host import (
    HostDispatcher,
    HostFactory,
    HostLineProtocol,
    HostOptions,
    HostStore,
    server_description,
)
from tests._host_process import exchange, run_host
from tests._process import ROOT, clean_environ

# Helpers


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(1_800_000_000)  # 2027-01-15T08:00:00Z
    return c


@pytest.fixture
def store(clock: Clock) -> Iterator[HostStore]:
    s = HostStore(clock=clock)
    yield s
    s.close()


@pytest.fixture
def dispatcher(store: HostStore) -> HostDispatcher:
    return HostDispatcher(store)


def call(dispatcher: HostDispatcher, command: str, payload: Any = None, **extra: Any) -> dict[str, Any]:
    """
    Send one request through the byte-level entry point (what the line
    protocol does) and return the decoded response.
    """
    request = {"id": 1, "command": command, "payload": payload, **extra}
    reply = json.loads(dispatcher.handle_line(json.dumps(request).encode("utf-8")))
    assert reply["id"] == 1
    return reply


def ok(dispatcher: HostDispatcher, command: str, payload: Any = None) -> Any:
    reply = call(dispatcher, command, payload)
    assert reply["ok"] is True, reply
    assert reply["diagnostic"] is None
    return reply["payload"]


def fails(dispatcher: HostDispatcher, command: str, payload: Any, code: str, mentions: str = "") -> str:
    reply = call(dispatcher, command, payload)
    assert reply["ok"] is False, reply
    assert reply["payload"]["code"] == code, reply
    assert isinstance(reply["diagnostic"], str) and reply["diagnostic"]
    assert mentions in reply["diagnostic"], reply["diagnostic"]
    return reply["diagnostic"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# The public module


def test_public_names_are_the_private_objects() -> None:
    from containerflare.command import (
        _host_dispatch,
        _host_main,
        _host_protocol,
        _host_store,
    )

    assert host_module.HostDispatcher is _host_dispatch.HostDispatcher
    assert host_module.HostStore is _host_store.HostStore
    assert host_module.HostFactory is _host_protocol.HostFactory
    assert host_module.main is _host_main.main
    for name in host_module.__all__:
        assert hasattr(host_module, name)


def test_import_loads_neither_klein_nor_twisted_web_server() -> None:
    code = (
        "import sys, containerflare.command.host\n"
        "bad = [m for m in sys.modules if m == 'klein' or m.startswith('klein.') "
        "or m == 'twisted.web.server']\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_environ()
    ).stdout
    assert out.strip() == "[]"


# Requests and errors common to all commands


def test_reply_carries_the_request_id(dispatcher: HostDispatcher) -> None:
    reply = json.loads(dispatcher.handle_line(b'{"id": 42, "command": "ping", "payload": [1, "a"]}'))
    assert reply == {"id": 42, "ok": True, "payload": [1, "a"], "diagnostic": None}


def test_request_without_id_gets_reply_without_id(dispatcher: HostDispatcher) -> None:
    reply = json.loads(dispatcher.handle_line(b'{"command": "ping", "payload": "hi"}'))
    assert reply == {"ok": True, "payload": "hi", "diagnostic": None}


def test_missing_payload_is_null(dispatcher: HostDispatcher) -> None:
    reply = json.loads(dispatcher.handle_line(b'{"id": 0, "command": "ping"}'))
    assert reply == {"id": 0, "ok": True, "payload": None, "diagnostic": None}


def test_integral_float_id_is_echoed_as_integer(dispatcher: HostDispatcher) -> None:
    reply = json.loads(dispatcher.handle_line(b'{"id": 7.0, "command": "ping"}'))
    assert reply["id"] == 7 and isinstance(reply["id"], int)


@pytest.mark.parametrize("bad_id", ['"7"', "true", "-1", "1.5", "9007199254740992", "null", "[1]"])
def test_invalid_id_is_a_protocol_error_without_id(dispatcher: HostDispatcher, bad_id: str) -> None:
    reply = json.loads(dispatcher.handle_line(f'{{"id": {bad_id}, "command": "ping"}}'.encode()))
    assert "id" not in reply
    assert reply["ok"] is False and reply["payload"] == {"code": "protocol_error"}
    assert "'id'" in reply["diagnostic"]


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'"ping"',
        b"\xff\xfe{}",
        b'{"id": 1, "command": "ping", "payload": NaN}',
        b'{"id": 1, "command": "ping", "payload": 1e999}',
        b'{"id": 1, "command": "ping", "payload": "\\ud800"}',
        b"[" * 100_000,
    ],
)
def test_malformed_line_is_a_protocol_error_without_id(dispatcher: HostDispatcher, line: bytes) -> None:
    reply = json.loads(dispatcher.handle_line(line))
    assert reply == {"ok": False, "payload": {"code": "protocol_error"}, "diagnostic": reply["diagnostic"]}
    assert reply["diagnostic"].startswith("request ")


def test_command_must_be_a_string(dispatcher: HostDispatcher) -> None:
    reply = json.loads(dispatcher.handle_line(b'{"id": 3, "command": 5}'))
    assert reply["id"] == 3 and reply["payload"] == {"code": "protocol_error"}


def test_unknown_command(dispatcher: HostDispatcher) -> None:
    diagnostic = fails(dispatcher, "kv.frobnicate", {}, "unknown_command")
    assert "kv.frobnicate" in diagnostic


def test_unknown_request_key_is_bad_request(dispatcher: HostDispatcher) -> None:
    reply = call(dispatcher, "ping", None, extra_key=1)
    assert reply["payload"] == {"code": "bad_request"} and "extra_key" in reply["diagnostic"]


@pytest.mark.parametrize("payload", [None, [], "KV", {"key": "k"}])
def test_payload_must_be_an_object_with_binding(dispatcher: HostDispatcher, payload: Any) -> None:
    fails(dispatcher, "kv.get", payload, "bad_request")


@pytest.mark.parametrize("binding", ["", "1KV", "K-V", "K V", 5, None])
def test_binding_name_must_look_like_an_identifier(dispatcher: HostDispatcher, binding: Any) -> None:
    fails(dispatcher, "kv.get", {"binding": binding, "key": "k"}, "bad_request", "binding")


def test_unknown_payload_field_is_bad_request(dispatcher: HostDispatcher) -> None:
    fails(dispatcher, "kv.put", {"binding": "KV", "key": "k", "value": "v", "expirationTtl": 60}, "bad_request", "expirationTtl")


def test_allowlist_forbids_other_bindings(store: HostStore) -> None:
    d = HostDispatcher(store, allow=["KV", "DB"])
    assert ok(d, "kv.put", {"binding": "KV", "key": "k", "value": "v"}) is None
    fails(d, "kv.get", {"binding": "SECRET", "key": "k"}, "forbidden_binding", "SECRET")
    fails(d, "d1.query", {"binding": "OTHER", "sql": "SELECT 1"}, "forbidden_binding")
    # The payload is checked before the allowlist (docs/commands.md, order of checks).
    fails(d, "kv.get", {"binding": "SECRET"}, "bad_request")


def test_internal_error_is_a_reply_and_a_log_line(store: HostStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.logger import globalLogPublisher

    def broken(binding: str, key: str) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "kv_get", broken)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        d = HostDispatcher(store)
        diagnostic = fails(d, "kv.get", {"binding": "KV", "key": "k"}, "internal_error", "kv.get")
        assert "disk on fire" not in diagnostic
        # The host keeps answering.
        assert ok(d, "ping", 1) == 1
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("log_failure" in e and "kv.get" in e.get("command", "") for e in events)


# ping and host.info


def test_ping_echoes_any_payload(dispatcher: HostDispatcher) -> None:
    payload = {"a": [1, 2.5, None, True, "é"], "b": {}}
    assert ok(dispatcher, "ping", payload) == payload


def test_host_info(dispatcher: HostDispatcher) -> None:
    info = ok(dispatcher, "host.info")
    assert info["host"] == "containerflare-reference"
    assert info["protocol"] == 1
    assert info["commands"] == sorted(info["commands"])
    for command in ["kv.get", "kv.put", "kv.delete", "kv.list", "d1.query", "d1.batch", "r2.get", "r2.put",
                    "r2.delete", "r2.list", "queue.send", "queue.send_batch", "ping", "host.info", "queue.pull"]:
        assert command in info["commands"]
    assert ok(dispatcher, "host.info", {}) == info
    fails(dispatcher, "host.info", {"x": 1}, "bad_request")


# KV


def test_kv_put_get_delete(dispatcher: HostDispatcher) -> None:
    assert ok(dispatcher, "kv.get", {"binding": "KV", "key": "hits"}) == {"value": None, "metadata": None}
    assert ok(dispatcher, "kv.put", {"binding": "KV", "key": "hits", "value": "41"}) is None
    assert ok(dispatcher, "kv.get", {"binding": "KV", "key": "hits"}) == {"value": "41", "metadata": None}
    ok(dispatcher, "kv.put", {"binding": "KV", "key": "hits", "value": "42", "metadata": {"by": ["ada", 1]}})
    assert ok(dispatcher, "kv.get", {"binding": "KV", "key": "hits"}) == {"value": "42", "metadata": {"by": ["ada", 1]}}
    # Namespaces are separate.
    assert ok(dispatcher, "kv.get", {"binding": "OTHER", "key": "hits"})["value"] is None
    assert ok(dispatcher, "kv.delete", {"binding": "KV", "key": "hits"}) is None
    assert ok(dispatcher, "kv.get", {"binding": "KV", "key": "hits"})["value"] is None
    # Deleting what is not there is fine.
    assert ok(dispatcher, "kv.delete", {"binding": "KV", "key": "hits"}) is None


def test_kv_values_are_strings_kept_exactly(dispatcher: HostDispatcher) -> None:
    value = "line1\nline2\t\u00e9\U0001f600 \"quoted\" \\"
    ok(dispatcher, "kv.put", {"binding": "KV", "key": "k\u00e9y/\U0001f600", "value": value})
    assert ok(dispatcher, "kv.get", {"binding": "KV", "key": "k\u00e9y/\U0001f600"})["value"] == value
    fails(dispatcher, "kv.put", {"binding": "KV", "key": "k", "value": 5}, "bad_request", "value")
    fails(dispatcher, "kv.put", {"binding": "KV", "key": "k"}, "bad_request", "value")


def test_kv_expiration_ttl(dispatcher: HostDispatcher, clock: Clock) -> None:
    ok(dispatcher, "kv.put", {"binding": "KV", "key": "k", "value": "v", "expiration_ttl": 60})
    ok(dispatcher, "kv.put", {"binding": "KV", "key": "forever", "value": "v", "expiration_ttl": None})
    listed = ok(dispatcher, "kv.list", {"binding": "KV"})["keys"]
    assert listed == [
        {"name": "forever", "expiration": None, "metadata": None},
        {"name": "k", "expiration": int(clock.seconds()) + 60, "metadata": None},
    ]
    clock.advance(59)
    assert ok(dispatcher, "kv.get", {"binding": "KV", "key": "k"})["value"] == "v"
    clock.advance(1)
    assert ok(dispatcher, "kv.get", {"binding": "KV", "key": "k"}) == {"value": None, "metadata": None}
    assert [k["name"] for k in ok(dispatcher, "kv.list", {"binding": "KV"})["keys"]] == ["forever"]


@pytest.mark.parametrize("ttl", [59, 0, -5, 60.5, "60", True])
def test_kv_ttl_must_be_an_integer_of_at_least_60(dispatcher: HostDispatcher, ttl: Any) -> None:
    fails(dispatcher, "kv.put", {"binding": "KV", "key": "k", "value": "v", "expiration_ttl": ttl}, "bad_request", "expiration_ttl")


@pytest.mark.parametrize("key", ["", ".", "..", "x" * 513, "\u00e9" * 257, 5, None])
def test_kv_key_rules(dispatcher: HostDispatcher, key: Any) -> None:
    fails(dispatcher, "kv.get", {"binding": "KV", "key": key}, "bad_request", "key")


def test_kv_key_of_512_bytes_is_fine(dispatcher: HostDispatcher) -> None:
    ok(dispatcher, "kv.put", {"binding": "KV", "key": "\u00e9" * 256, "value": "v"})


def test_kv_metadata_is_at_most_1024_bytes(dispatcher: HostDispatcher) -> None:
    ok(dispatcher, "kv.put", {"binding": "KV", "key": "k", "value": "v", "metadata": "x" * 1022})
    fails(dispatcher, "kv.put", {"binding": "KV", "key": "k", "value": "v", "metadata": "x" * 1023}, "bad_request", "metadata")


def test_kv_list_prefix_limit_cursor(dispatcher: HostDispatcher) -> None:
    names = [f"user:{i:02d}" for i in range(25)] + ["other", "user", "usez"]
    for name in names:
        ok(dispatcher, "kv.put", {"binding": "KV", "key": name, "value": "v"})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = ok(dispatcher, "kv.list", {"binding": "KV", "prefix": "user:", "limit": 10, "cursor": cursor})
        seen += [k["name"] for k in page["keys"]]
        if page["list_complete"]:
            assert page["cursor"] is None
            break
        assert isinstance(page["cursor"], str) and len(page["keys"]) == 10
        cursor = page["cursor"]
    assert seen == [f"user:{i:02d}" for i in range(25)]
    everything = ok(dispatcher, "kv.list", {"binding": "KV"})
    assert everything["list_complete"] is True
    assert [k["name"] for k in everything["keys"]] == sorted(names)


def test_kv_list_orders_by_utf8_bytes(dispatcher: HostDispatcher) -> None:
    # UTF-16 order would put U+10000 (a surrogate pair) before U+FFFD.
    keys = ["\U00010000", "\ufffd", "a", "B", "\u00e9"]
    for key in keys:
        ok(dispatcher, "kv.put", {"binding": "KV", "key": key, "value": "v"})
    listed = [k["name"] for k in ok(dispatcher, "kv.list", {"binding": "KV"})["keys"]]
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))


@pytest.mark.parametrize("limit", [0, 1001, 2.5, "10"])
def test_kv_list_limit_range(dispatcher: HostDispatcher, limit: Any) -> None:
    fails(dispatcher, "kv.list", {"binding": "KV", "limit": limit}, "bad_request", "limit")


@pytest.mark.parametrize("cursor", ["nonsense!", b64(b"[1,2]"), b64(b'["r2", "a"]')])
def test_kv_list_rejects_foreign_cursors(dispatcher: HostDispatcher, cursor: str) -> None:
    fails(dispatcher, "kv.list", {"binding": "KV", "cursor": cursor}, "bad_request", "cursor")


# D1


def test_d1_query_rows_and_meta(dispatcher: HostDispatcher) -> None:
    created = ok(dispatcher, "d1.query", {"binding": "DB", "sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, photo BLOB)"})
    assert created == {"results": [], "meta": {"changes": 0, "last_row_id": 0}}
    inserted = ok(dispatcher, "d1.query", {"binding": "DB", "sql": "INSERT INTO t (name, score) VALUES (?, ?), (?, ?)", "params": ["ada", 9.5, "bob", None]})
    assert inserted == {"results": [], "meta": {"changes": 2, "last_row_id": 2}}
    ok(dispatcher, "d1.query", {"binding": "DB", "sql": "UPDATE t SET photo = x'6869' WHERE id = ?1", "params": [1]})
    rows = ok(dispatcher, "d1.query", {"binding": "DB", "sql": "SELECT id, name, score, photo FROM t ORDER BY id"})
    assert rows["results"] == [
        {"id": 1, "name": "ada", "score": 9.5, "photo": [104, 105]},
        {"id": 2, "name": "bob", "score": None, "photo": None},
    ]
    assert rows["meta"]["changes"] == 0
    assert set(rows["meta"]) == {"changes", "last_row_id"}
    deleted = ok(dispatcher, "d1.query", {"binding": "DB", "sql": "DELETE FROM t"})
    assert deleted["meta"]["changes"] == 2


def test_d1_insert_returning(dispatcher: HostDispatcher) -> None:
    ok(dispatcher, "d1.query", {"binding": "DB", "sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"})
    reply = ok(dispatcher, "d1.query", {"binding": "DB", "sql": "INSERT INTO t (v) VALUES (?) RETURNING id, v", "params": ["x"]})
    assert reply == {"results": [{"id": 1, "v": "x"}], "meta": {"changes": 1, "last_row_id": 1}}


def test_d1_parameter_values_bind_like_d1(dispatcher: HostDispatcher) -> None:
    # Checked against Miniflare's D1: numbers and booleans bind as REAL.
    reply = ok(dispatcher, "d1.query", {
        "binding": "DB",
        "sql": "SELECT ? AS t, ? AS f, ? AS n, ? AS i, ? AS r, ? AS s, typeof(?) AS ty, typeof(?) AS tb,"
               " ? / 2 AS half, 'x' || ? AS cat",
        "params": [True, False, None, 3, 2.5, "x", 3, True, 3, 3],
    })
    assert reply["results"] == [{"t": 1, "f": 0, "n": None, "i": 3, "r": 2.5, "s": "x", "ty": "real", "tb": "real",
                                 "half": 1.5, "cat": "x3.0"}]
    # Integral REAL results are written as JavaScript writes them.
    line = dispatcher.handle_line(b'{"id": 1, "command": "d1.query", "payload": {"binding": "DB", "sql": "SELECT 2.0 AS two, 1e21 AS e"}}')
    assert b'"two":2,' in line and b'"e":1e+21' in line


def test_d1_integer_columns_still_hold_integers(dispatcher: HostDispatcher) -> None:
    ok(dispatcher, "d1.query", {"binding": "DB", "sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)"})
    ok(dispatcher, "d1.query", {"binding": "DB", "sql": "INSERT INTO t VALUES (?, ?)", "params": [7, 5]})
    reply = ok(dispatcher, "d1.query", {"binding": "DB", "sql": "SELECT typeof(n) AS ty, n / 2 AS half FROM t WHERE id = ?", "params": [7]})
    assert reply["results"] == [{"ty": "integer", "half": 2}]


def test_d1_number_too_large_is_bad_request(dispatcher: HostDispatcher) -> None:
    line = b'{"id": 1, "command": "d1.query", "payload": {"binding": "DB", "sql": "SELECT ?", "params": [1' + b"0" * 400 + b"]}}"
    reply = json.loads(dispatcher.handle_line(line))
    assert reply["payload"] == {"code": "bad_request"} and "params" in reply["diagnostic"]


def test_d1_non_finite_results_are_null(dispatcher: HostDispatcher) -> None:
    reply = ok(dispatcher, "d1.query", {"binding": "DB", "sql": "SELECT 1e308 * 10 AS big"})
    assert reply["results"] == [{"big": None}]


@pytest.mark.parametrize("params", [[[1]], [{"a": 1}], "x", {"a": 1}])
def test_d1_params_must_be_a_list_of_scalars(dispatcher: HostDispatcher, params: Any) -> None:
    fails(dispatcher, "d1.query", {"binding": "DB", "sql": "SELECT ?", "params": params}, "bad_request", "params")


@pytest.mark.parametrize(
    "sql, params, mentions",
    [
        ("SELEKT 1", [], "syntax"),
        ("SELECT * FROM nope", [], "no such table"),
        ("SELECT ?", [], ""),
        ("SELECT ?", [1, 2], ""),
        ("SELECT 1; SELECT 2", [], ""),
        ("BEGIN", [], "d1.batch"),
        ("SAVEPOINT x", [], "d1.batch"),
        ("ATTACH DATABASE '/tmp/elsewhere.db' AS other", [], "ATTACH"),
    ],
)
def test_d1_errors(dispatcher: HostDispatcher, sql: str, params: list[Any], mentions: str) -> None:
    fails(dispatcher, "d1.query", {"binding": "DB", "sql": sql, "params": params}, "d1_error", mentions)
    # The database still works afterwards, outside any transaction.
    assert ok(dispatcher, "d1.query", {"binding": "DB", "sql": "SELECT 1 AS one"})["results"] == [{"one": 1}]


def test_d1_constraint_error(dispatcher: HostDispatcher) -> None:
    ok(dispatcher, "d1.query", {"binding": "DB", "sql": "CREATE TABLE u (name TEXT UNIQUE)"})
    ok(dispatcher, "d1.query", {"binding": "DB", "sql": "INSERT INTO u VALUES ('a')"})
    fails(dispatcher, "d1.query", {"binding": "DB", "sql": "INSERT INTO u VALUES ('a')"}, "d1_error", "UNIQUE")


def test_d1_statement_time_limit(clock: Clock) -> None:
    store = HostStore(clock=clock, d1_time_limit=0.2)
    try:
        d = HostDispatcher(store)
        endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        fails(d, "d1.query", {"binding": "DB", "sql": endless}, "d1_error", "longer than")
        assert ok(d, "d1.query", {"binding": "DB", "sql": "SELECT 2 AS two"})["results"] == [{"two": 2}]
    finally:
        store.close()


def test_d1_databases_are_separate_per_binding(dispatcher: HostDispatcher) -> None:
    ok(dispatcher, "d1.query", {"binding": "A", "sql": "CREATE TABLE t (x)"})
    fails(dispatcher, "d1.query", {"binding": "B", "sql": "SELECT * FROM t"}, "d1_error", "no such table")
    # The host's own tables are not visible to D1 users.
    fails(dispatcher, "d1.query", {"binding": "A", "sql": "SELECT * FROM kv"}, "d1_error", "no such table")


def test_d1_batch(dispatcher: HostDispatcher) -> None:
    results = ok(dispatcher, "d1.batch", {"binding": "DB", "statements": [
        {"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"},
        {"sql": "INSERT INTO t (v) VALUES (?)", "params": ["a"]},
        {"sql": "INSERT INTO t (v) VALUES (?)", "params": ["b"]},
        {"sql": "SELECT v FROM t ORDER BY id", "params": None},
    ]})
    assert results == [
        {"results": [], "meta": {"changes": 0, "last_row_id": 0}},
        {"results": [], "meta": {"changes": 1, "last_row_id": 1}},
        {"results": [], "meta": {"changes": 1, "last_row_id": 2}},
        {"results": [{"v": "a"}, {"v": "b"}], "meta": {"changes": 0, "last_row_id": 2}},
    ]


def test_d1_batch_is_all_or_nothing(dispatcher: HostDispatcher) -> None:
    ok(dispatcher, "d1.query", {"binding": "DB", "sql": "CREATE TABLE t (v TEXT NOT NULL)"})
    fails(dispatcher, "d1.batch", {"binding": "DB", "statements": [
        {"sql": "INSERT INTO t VALUES ('kept?')"},
        {"sql": "INSERT INTO t VALUES (NULL)"},
    ]}, "d1_error", "NOT NULL")
    assert ok(dispatcher, "d1.query", {"binding": "DB", "sql": "SELECT count(*) AS n FROM t"})["results"] == [{"n": 0}]
    # A COMMIT smuggled into a batch cannot end the batch's transaction early.
    fails(dispatcher, "d1.batch", {"binding": "DB", "statements": [
        {"sql": "INSERT INTO t VALUES ('x')"},
        {"sql": "COMMIT"},
    ]}, "d1_error")
    assert ok(dispatcher, "d1.query", {"binding": "DB", "sql": "SELECT count(*) AS n FROM t"})["results"] == [{"n": 0}]


@pytest.mark.parametrize(
    "statements",
    [[], [{"sql": "SELECT 1"}] * 101, [{"params": []}], [{"sql": 5}], ["SELECT 1"], [{"sql": "SELECT 1", "x": 1}], None],
)
def test_d1_batch_payload_rules(dispatcher: HostDispatcher, statements: Any) -> None:
    fails(dispatcher, "d1.batch", {"binding": "DB", "statements": statements}, "bad_request", "statements")


# R2


def test_r2_put_get_binary(dispatcher: HostDispatcher, clock: Clock) -> None:
    clock.advance(0.123)
    body = bytes(range(256)) * 3
    described = ok(dispatcher, "r2.put", {
        "binding": "BUCKET", "key": "img/a.bin", "body_base64": b64(body),
        "content_type": "application/octet-stream", "custom_metadata": {"owner": "ada"},
    })
    assert described == {
        "key": "img/a.bin",
        "size": 768,
        "etag": hashlib.md5(body).hexdigest(),
        "uploaded": "2027-01-15T08:00:00.123Z",
        "content_type": "application/octet-stream",
        "custom_metadata": {"owner": "ada"},
    }
    got = ok(dispatcher, "r2.get", {"binding": "BUCKET", "key": "img/a.bin"})
    assert base64.b64decode(got.pop("body_base64")) == body
    assert got == described


def test_r2_defaults_and_missing(dispatcher: HostDispatcher) -> None:
    assert ok(dispatcher, "r2.get", {"binding": "B", "key": "nope"}) is None
    described = ok(dispatcher, "r2.put", {"binding": "B", "key": "empty", "body_base64": ""})
    assert described["size"] == 0 and described["content_type"] is None and described["custom_metadata"] == {}
    assert described["etag"] == hashlib.md5(b"").hexdigest()


@pytest.mark.parametrize("body", ["not base64!", "aGVsbG8", "aGVs\nbG8=", "é", 5])
def test_r2_body_must_be_strict_base64(dispatcher: HostDispatcher, body: Any) -> None:
    fails(dispatcher, "r2.put", {"binding": "B", "key": "k", "body_base64": body}, "bad_request", "body_base64")


@pytest.mark.parametrize("custom", [{"a": 1}, ["a"], "a"])
def test_r2_custom_metadata_is_strings(dispatcher: HostDispatcher, custom: Any) -> None:
    fails(dispatcher, "r2.put", {"binding": "B", "key": "k", "body_base64": "", "custom_metadata": custom}, "bad_request", "custom_metadata")


@pytest.mark.parametrize("key", ["", "x" * 1025, None, 3])
def test_r2_key_rules(dispatcher: HostDispatcher, key: Any) -> None:
    fails(dispatcher, "r2.get", {"binding": "B", "key": key}, "bad_request", "key")


def test_r2_delete_one_or_many(dispatcher: HostDispatcher) -> None:
    for key in "abcd":
        ok(dispatcher, "r2.put", {"binding": "B", "key": key, "body_base64": b64(key.encode())})
    assert ok(dispatcher, "r2.delete", {"binding": "B", "key": "a"}) is None
    assert ok(dispatcher, "r2.delete", {"binding": "B", "keys": ["b", "c", "missing"]}) is None
    assert [o["key"] for o in ok(dispatcher, "r2.list", {"binding": "B"})["objects"]] == ["d"]
    fails(dispatcher, "r2.delete", {"binding": "B"}, "bad_request", "key")
    fails(dispatcher, "r2.delete", {"binding": "B", "key": "d", "keys": ["d"]}, "bad_request", "key")
    fails(dispatcher, "r2.delete", {"binding": "B", "keys": []}, "bad_request", "keys")


def test_r2_list_pages(dispatcher: HostDispatcher) -> None:
    for i in range(7):
        ok(dispatcher, "r2.put", {"binding": "B", "key": f"p/{i}", "body_base64": b64(b"x" * i)})
    ok(dispatcher, "r2.put", {"binding": "B", "key": "q", "body_base64": ""})
    first = ok(dispatcher, "r2.list", {"binding": "B", "prefix": "p/", "limit": 4})
    assert [o["key"] for o in first["objects"]] == ["p/0", "p/1", "p/2", "p/3"]
    assert first["truncated"] is True and isinstance(first["cursor"], str)
    assert [o["size"] for o in first["objects"]] == [0, 1, 2, 3]
    assert "body_base64" not in first["objects"][0]
    rest = ok(dispatcher, "r2.list", {"binding": "B", "prefix": "p/", "limit": 4, "cursor": first["cursor"]})
    assert [o["key"] for o in rest["objects"]] == ["p/4", "p/5", "p/6"]
    assert rest["truncated"] is False and rest["cursor"] is None
    fails(dispatcher, "r2.list", {"binding": "B", "cursor": "zzz"}, "bad_request", "cursor")


# Queues


def test_queue_send_and_pull(dispatcher: HostDispatcher, clock: Clock) -> None:
    assert ok(dispatcher, "queue.send", {"binding": "Q", "body": {"n": 1}}) is None
    assert ok(dispatcher, "queue.send", {"binding": "Q", "body": None}) is None
    assert ok(dispatcher, "queue.send", {"binding": "Q", "body": "later", "delay_seconds": 30}) is None
    pulled = ok(dispatcher, "queue.pull", {"binding": "Q"})["messages"]
    assert [m["body"] for m in pulled] == [{"n": 1}, None]
    assert all(re.fullmatch(r"[0-9a-f]{32}", m["id"]) and m["attempts"] == 1 for m in pulled)
    assert pulled[0]["timestamp"] == "2027-01-15T08:00:00.000Z"
    assert ok(dispatcher, "queue.pull", {"binding": "Q"}) == {"messages": []}
    clock.advance(30)
    assert [m["body"] for m in ok(dispatcher, "queue.pull", {"binding": "Q"})["messages"]] == ["later"]


def test_queue_send_batch(dispatcher: HostDispatcher, clock: Clock) -> None:
    assert ok(dispatcher, "queue.send_batch", {"binding": "Q", "delay_seconds": 10, "messages": [
        {"body": 1}, {"body": 2, "delay_seconds": 0}, {"body": 3, "delay_seconds": None},
    ]}) is None
    assert [m["body"] for m in ok(dispatcher, "queue.pull", {"binding": "Q"})["messages"]] == [2]
    clock.advance(10)
    assert [m["body"] for m in ok(dispatcher, "queue.pull", {"binding": "Q", "limit": 1})["messages"]] == [1]
    assert [m["body"] for m in ok(dispatcher, "queue.pull", {"binding": "Q"})["messages"]] == [3]


@pytest.mark.parametrize(
    "command, payload, mentions",
    [
        ("queue.send", {"binding": "Q"}, "body"),
        ("queue.send", {"binding": "Q", "body": "x" * (128 * 1024)}, "body"),
        ("queue.send", {"binding": "Q", "body": 1, "delay_seconds": 43201}, "delay_seconds"),
        ("queue.send", {"binding": "Q", "body": 1, "delay_seconds": -1}, "delay_seconds"),
        ("queue.send_batch", {"binding": "Q", "messages": []}, "messages"),
        ("queue.send_batch", {"binding": "Q", "messages": [{"body": 1}] * 101}, "messages"),
        ("queue.send_batch", {"binding": "Q", "messages": [{"nobody": 1}]}, "messages[0]"),
        ("queue.send_batch", {"binding": "Q", "messages": [1]}, "messages[0]"),
    ],
)
def test_queue_payload_rules(dispatcher: HostDispatcher, command: str, payload: Any, mentions: str) -> None:
    fails(dispatcher, command, payload, "bad_request", mentions)
    # Nothing was half-sent.
    assert ok(dispatcher, "queue.pull", {"binding": "Q"}) == {"messages": []}


# The examples in docs/commands.md are what this host answers.


def _doc_examples() -> list[tuple[bytes, dict[str, Any]]]:
    text = (ROOT / "docs" / "commands.md").read_text()
    section = text[text.index("## 6. Examples"):]
    block = section.split("```")[1]
    lines = [line for line in block.splitlines() if line.startswith(("> ", "< "))]
    pairs = []
    for request, reply in zip(lines[::2], lines[1::2]):
        assert request.startswith("> ") and reply.startswith("< ")
        pairs.append((request[2:].encode("utf-8"), json.loads(reply[2:])))
    return pairs


def test_documented_examples(dispatcher: HostDispatcher) -> None:
    examples = _doc_examples()
    assert len(examples) >= 5
    for request, documented in examples:
        actual = json.loads(dispatcher.handle_line(request))
        if not documented["ok"]:
            # Diagnostics are human text, not part of the contract.
            assert isinstance(actual["diagnostic"], str)
            documented = {**documented, "diagnostic": actual["diagnostic"]}
        assert actual == documented, request


# The line protocol, in memory


def connect(dispatcher: HostDispatcher, max_line: int = 1024) -> tuple[HostLineProtocol, StringTransport]:
    factory = HostFactory(dispatcher, max_line)
    protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def replies(transport: StringTransport) -> list[dict[str, Any]]:
    data = transport.value()
    transport.clear()
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def test_line_split_across_chunks(dispatcher: HostDispatcher) -> None:
    protocol, transport = connect(dispatcher)
    line = b'{"id": 1, "command": "ping", "payload": "\xc3\xa9t\xc3\xa9"}\n'
    for i in range(len(line)):
        assert transport.value() == b""
        protocol.dataReceived(line[i : i + 1])
    assert replies(transport) == [{"id": 1, "ok": True, "payload": "\u00e9t\u00e9", "diagnostic": None}]


def test_several_lines_in_one_chunk(dispatcher: HostDispatcher) -> None:
    protocol, transport = connect(dispatcher)
    protocol.dataReceived(
        b'{"id": 1, "command": "ping", "payload": 1}\r\n\n   \n{"id": 2, "command": "ping", "payload": 2}\n'
        b'{"command": "ping", "payload": 3}\n{"id": 4, "comm'
    )
    assert [(r.get("id"), r["payload"]) for r in replies(transport)] == [(1, 1), (2, 2), (None, 3)]
    protocol.dataReceived(b'and": "ping", "payload": 4}\n')
    assert [(r.get("id"), r["payload"]) for r in replies(transport)] == [(4, 4)]


def test_the_protocol_throttles_reading_on_its_own_writes(dispatcher: HostDispatcher) -> None:
    _, transport = connect(dispatcher)
    assert transport.producer is transport and transport.streaming


def test_malformed_lines_keep_the_connection(dispatcher: HostDispatcher) -> None:
    protocol, transport = connect(dispatcher)
    protocol.dataReceived(b'garbage\n\xff\n{"id": 5, "command": "ping", "payload": "after"}\n')
    got = replies(transport)
    assert [r["payload"] for r in got[:2]] == [{"code": "protocol_error"}] * 2
    assert all("id" not in r for r in got[:2])
    assert got[2] == {"id": 5, "ok": True, "payload": "after", "diagnostic": None}
    assert not transport.disconnecting


def test_oversized_line_in_one_chunk(dispatcher: HostDispatcher) -> None:
    protocol, transport = connect(dispatcher, max_line=1024)
    big = b'{"id": 9, "command": "ping", "payload": "' + b"x" * 2000 + b'"}\n'
    fits = b'{"id": 10, "command": "ping", "payload": "' + b"y" * (1024 - 45) + b'"}'
    assert len(fits) <= 1024
    protocol.dataReceived(big + fits + b"\n")
    got = replies(transport)
    assert got[0]["id"] == 9 and got[0]["payload"] == {"code": "too_large"} and "1024" in got[0]["diagnostic"]
    assert got[1]["id"] == 10 and got[1]["ok"] is True
    assert not transport.disconnecting


def test_oversized_line_across_chunks_is_skipped_without_buffering(dispatcher: HostDispatcher) -> None:
    protocol, transport = connect(dispatcher, max_line=1024)
    protocol.dataReceived(b'  {"id" : 12345 , "command": "ping", "payload": "')
    for _ in range(100):
        protocol.dataReceived(b"z" * 500)
        # Bounded: nothing of the oversized line is kept beyond the limit.
        assert len(protocol._pending) <= 1024
        assert transport.value() == b""
    protocol.dataReceived(b'zz"}\n{"id": 2, "command": "ping"}\n')
    got = replies(transport)
    assert got[0] == {"id": 12345, "ok": False, "payload": {"code": "too_large"}, "diagnostic": got[0]["diagnostic"]}
    assert got[1]["id"] == 2 and got[1]["ok"] is True


def test_oversized_line_without_leading_id_gets_a_reply_without_id(dispatcher: HostDispatcher) -> None:
    protocol, transport = connect(dispatcher, max_line=1024)
    protocol.dataReceived(b'{"command": "ping", "id": 3, "payload": "' + b"x" * 2000 + b'"}\n')
    (got,) = replies(transport)
    assert "id" not in got and got["payload"] == {"code": "too_large"}


def test_line_of_exactly_the_limit_is_served(dispatcher: HostDispatcher) -> None:
    protocol, transport = connect(dispatcher, max_line=1024)
    prefix = b'{"id": 1, "command": "ping", "payload": "'
    line = prefix + b"a" * (1024 - len(prefix) - 2) + b'"}'
    assert len(line) == 1024
    protocol.dataReceived(line[:600])
    protocol.dataReceived(line[600:] + b"\n")
    (got,) = replies(transport)
    assert got["ok"] is True


def test_connection_lost_callback(dispatcher: HostDispatcher) -> None:
    lost: list[Any] = []
    protocol = HostLineProtocol(dispatcher, 1024, lost.append)
    protocol.makeConnection(StringTransport())
    protocol.connectionLost(None)  # type: ignore[arg-type]
    assert len(lost) == 1


# Property tests: nothing a peer sends makes an exception escape.

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(chunks=st.lists(st.binary(max_size=300) | st.sampled_from([b"\n", b'{"id": 1, "command": "ping"}\n', b'{"id":', b'"x"}\n', b"\r\n"]), max_size=30))
def test_any_bytes_get_json_replies(chunks: list[bytes]) -> None:
    store = HostStore(clock=Clock())
    try:
        protocol, transport = connect(HostDispatcher(store), max_line=256)
        for chunk in chunks:
            protocol.dataReceived(chunk)
        lines = b"".join(chunks).count(b"\n")
        got = replies(transport)
        assert len(got) <= lines
        for reply in got:
            assert set(reply) <= {"id", "ok", "payload", "diagnostic"}
            assert isinstance(reply["ok"], bool)
        assert len(protocol._pending) <= 256
    finally:
        store.close()


@given(request=_json)
def test_any_json_value_gets_a_response(request: Any) -> None:
    store = HostStore(clock=Clock())
    try:
        reply = json.loads(HostDispatcher(store).handle_line(json.dumps(request).encode()))
        assert isinstance(reply["ok"], bool)
        assert reply["ok"] or reply["payload"]["code"] != "internal_error"
    finally:
        store.close()


_commands = st.sampled_from(sorted(HostDispatcher(HostStore()).commands) + ["nope"])
_keys = st.sampled_from(["binding", "key", "value", "keys", "prefix", "limit", "cursor", "sql", "params", "statements",
                         "body", "body_base64", "messages", "delay_seconds", "expiration_ttl", "metadata",
                         "content_type", "custom_metadata", "other"])


@given(command=_commands, payload=st.dictionaries(_keys, _json, max_size=5), binding=st.sampled_from(["KV", None, "", 5]))
def test_any_payload_is_answered_without_internal_error(command: str, payload: dict[str, Any], binding: Any) -> None:
    if binding is not None:
        payload["binding"] = binding
    store = HostStore(clock=Clock())
    try:
        reply = json.loads(HostDispatcher(store).handle_line(json.dumps({"id": 1, "command": command, "payload": payload}).encode()))
        assert reply["id"] == 1
        assert reply["ok"] or reply["payload"]["code"] in {"bad_request", "unknown_command", "d1_error"}, reply
    finally:
        store.close()


# Command line


@pytest.mark.parametrize(
    "given_value, expected",
    [
        ("stdio", "stdio"),
        ("tcp:7878", "tcp:7878:interface=127.0.0.1"),
        ("tcp:127.0.0.1:7878", "tcp:7878:interface=127.0.0.1"),
        ("tcp://127.0.0.1:7878", "tcp:7878:interface=127.0.0.1"),
        ("tcp://localhost:7878/", "tcp:7878:interface=localhost"),
        ("tcp:0.0.0.0:7878", "tcp:7878:interface=0.0.0.0"),
        ("tcp:[::1]:7878", "tcp:7878:interface=\\:\\:1"),
        ("tcp://[::1]:7878", "tcp:7878:interface=\\:\\:1"),
        ("tcp:port=7878:interface=0.0.0.0", "tcp:port=7878:interface=0.0.0.0"),
        ("unix:/tmp/h.sock", "unix:/tmp/h.sock"),
        ("unix:///tmp/h.sock", "unix:/tmp/h.sock"),
        ("unix:/tmp/h.sock:mode=600", "unix:/tmp/h.sock:mode=600"),
    ],
)
def test_listen_spellings(given_value: str, expected: str) -> None:
    assert server_description(given_value) == expected


def test_options_defaults_and_errors() -> None:
    options = HostOptions()
    options.parseOptions([])
    assert options["listen"] == ["tcp:127.0.0.1:7878"] and options["allow"] is None
    options = HostOptions()
    options.parseOptions(["--listen", "stdio", "--allow", "KV, DB", "--allow", "Q", "--db", "/tmp/x"])
    assert options["allow"] == ["KV", "DB", "Q"] and options["db"] == "/tmp/x"
    for bad in (["--log-level", "loud"], ["--http", "stdio"], ["--max-line", "10"], ["--listen", "stdio", "--listen", "stdio"]):
        with pytest.raises(usage.UsageError):
            HostOptions().parseOptions(bad)


def test_bad_endpoint_exits_with_an_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "containerflare.command.host", "--listen", "bogus:thing"],
        capture_output=True, text=True, timeout=60, env=clean_environ(), check=False,
    )
    assert result.returncode == 1
    assert "cannot start the host" in result.stderr
    assert result.stdout == ""


def test_usage_error_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "containerflare.command.host", "--log-level", "loud"],
        capture_output=True, text=True, timeout=60, env=clean_environ(), check=False,
    )
    assert result.returncode == 2 and "--log-level" in result.stderr


# The real process


@pytest.fixture(scope="module")
def live_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("host")
    with run_host(tmp, tcp=True, unix=True, http=True, args=("--max-line", "65536", "--allow", "KV,DB,B,Q")) as host:
        yield host


def _conversation() -> list[dict[str, Any]]:
    return [
        {"id": 1, "command": "kv.put", "payload": {"binding": "KV", "key": "hits", "value": "1"}},
        {"id": 2, "command": "kv.get", "payload": {"binding": "KV", "key": "hits"}},
        {"id": 3, "command": "d1.query", "payload": {"binding": "DB", "sql": "SELECT ? * 2 AS n", "params": [21]}},
        {"id": 4, "command": "r2.put", "payload": {"binding": "B", "key": "k", "body_base64": b64(b"\x00\xff")}},
        {"id": 5, "command": "r2.get", "payload": {"binding": "B", "key": "k"}},
        {"id": 6, "command": "queue.send", "payload": {"binding": "Q", "body": {"x": 1}}},
        {"id": 7, "command": "kv.get", "payload": {"binding": "SECRET", "key": "hits"}},
        {"command": "ping", "payload": "fifo"},
    ]


def _check_conversation(got: list[dict[str, Any]]) -> None:
    by_id = {r.get("id"): r for r in got}
    assert by_id[1]["ok"] and by_id[2]["payload"] == {"value": "1", "metadata": None}
    assert by_id[3]["payload"]["results"] == [{"n": 42}]
    assert base64.b64decode(by_id[5]["payload"]["body_base64"]) == b"\x00\xff"
    assert by_id[6] == {"id": 6, "ok": True, "payload": None, "diagnostic": None}
    assert by_id[7]["payload"] == {"code": "forbidden_binding"}
    assert by_id[None]["payload"] == "fifo"


def test_tcp_conversation(live_host: Any) -> None:
    with live_host.connect_tcp() as sock:
        _check_conversation(exchange(sock, _conversation()))


def test_unix_conversation(live_host: Any) -> None:
    with live_host.connect_unix() as sock:
        _check_conversation(exchange(sock, _conversation()))


def test_tcp_and_unix_share_one_store(live_host: Any) -> None:
    with live_host.connect_tcp() as a, live_host.connect_unix() as b:
        exchange(a, [{"id": 1, "command": "kv.put", "payload": {"binding": "KV", "key": "shared", "value": "yes"}}])
        (got,) = exchange(b, [{"id": 2, "command": "kv.get", "payload": {"binding": "KV", "key": "shared"}}])
    assert got["payload"]["value"] == "yes"


def test_malformed_and_oversized_input_over_a_socket(live_host: Any) -> None:
    with live_host.connect_tcp() as sock:
        raw = (
            b"not json\n\xff\xfe\n"
            + b'{"id": 77, "command": "ping", "payload": "' + b"x" * 100_000 + b'"}\n'
            + b'{"id": 78, "command": "ping", "payload": "still here"}\n'
        )
        got = exchange(sock, [], raw=raw)
    assert [r["payload"] for r in got[:2]] == [{"code": "protocol_error"}] * 2
    assert got[2]["id"] == 77 and got[2]["payload"] == {"code": "too_large"}
    assert got[3] == {"id": 78, "ok": True, "payload": "still here", "diagnostic": None}


def test_many_concurrent_connections(live_host: Any) -> None:
    connections = 40
    per_connection = 25
    socks = [live_host.connect_tcp() if i % 2 else live_host.connect_unix() for i in range(connections)]
    try:
        # Everything is sent before anything is read: the host holds all
        # connections open with requests pending at once.
        for c, sock in enumerate(socks):
            lines = b"".join(
                json.dumps({"id": c * 1000 + i, "command": "kv.put" if i % 2 else "ping",
                            "payload": {"binding": "KV", "key": f"c{c}", "value": str(i)} if i % 2 else [c, i]}).encode() + b"\n"
                for i in range(per_connection)
            )
            sock.sendall(lines)
        for c, sock in enumerate(socks):
            reader = sock.makefile("rb")
            got = [json.loads(reader.readline()) for _ in range(per_connection)]
            reader.close()
            assert sorted(r["id"] for r in got) == [c * 1000 + i for i in range(per_connection)]
            assert all(r["ok"] for r in got)
            for r in got:
                if r["id"] % 2 == 0:
                    assert r["payload"] == [c, r["id"] - c * 1000]
    finally:
        for sock in socks:
            sock.close()


def test_abrupt_disconnects_do_not_hurt_the_host(live_host: Any) -> None:
    for _ in range(5):
        sock = live_host.connect_tcp()
        sock.sendall(b'{"id": 1, "command": "ping", "payload": "' + b"x" * 5000)
        sock.close()
    with live_host.connect_tcp() as sock:
        (got,) = exchange(sock, [{"id": 2, "command": "ping", "payload": "ok"}])
    assert got["payload"] == "ok"
    assert live_host.proc.poll() is None


def _post(url: str, body: bytes, method: str = "POST") -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_http_face(live_host: Any) -> None:
    url = live_host.http_url
    status, reply, headers = _post(url, json.dumps({"command": "kv.put", "payload": {"binding": "KV", "key": "h", "value": "v"}}).encode())
    assert status == 200 and reply == {"ok": True, "payload": None, "diagnostic": None}
    assert headers["Content-Type"] == "application/json"
    status, reply, _ = _post(url + "any/path", json.dumps({"id": 3, "command": "kv.get", "payload": {"binding": "KV", "key": "h"}}).encode())
    assert status == 200 and reply["id"] == 3 and reply["payload"]["value"] == "v"
    # The same store as the line transports.
    with live_host.connect_tcp() as sock:
        (got,) = exchange(sock, [{"id": 1, "command": "kv.get", "payload": {"binding": "KV", "key": "h"}}])
    assert got["payload"]["value"] == "v"
    # ok: false is still 200: the outcome is in the JSON.
    status, reply, _ = _post(url, json.dumps({"command": "kv.get", "payload": {"binding": "NOPE", "key": "h"}}).encode())
    assert status == 200 and reply["payload"] == {"code": "forbidden_binding"}
    status, reply, _ = _post(url, b"not json")
    assert status == 400 and reply["payload"] == {"code": "protocol_error"}
    status, reply, headers = _post(url, b"", method="GET")
    assert status == 405 and headers["Allow"] == "POST" and reply["payload"] == {"code": "protocol_error"}
    status, reply, _ = _post(url, b'{"id": 5, "command": "ping", "payload": "' + b"x" * 70_000 + b'"}')
    assert status == 413 and reply == {"id": 5, "ok": False, "payload": {"code": "too_large"}, "diagnostic": reply["diagnostic"]}


def test_logs_go_to_stderr(live_host: Any) -> None:
    assert f"listening on tcp:127.0.0.1:{live_host.port}" in live_host.stderr()
    assert f"listening on unix:{live_host.socket_path}" in live_host.stderr()


def test_stdio_mode(tmp_path: Path) -> None:
    requests = b"".join(
        json.dumps(r).encode() + b"\n"
        for r in [
            {"id": 1, "command": "kv.put", "payload": {"binding": "KV", "key": "k", "value": "v"}},
            {"id": 2, "command": "kv.get", "payload": {"binding": "KV", "key": "k"}},
            {"command": "ping", "payload": "no id"},
        ]
    ) + b"broken\n"
    result = subprocess.run(
        [sys.executable, "-m", "containerflare.command.host", "--listen", "stdio", "--log-level", "debug"],
        input=requests, capture_output=True, timeout=60, env=clean_environ(), cwd=str(ROOT), check=False,
    )
    # End of stdin stops the host cleanly.
    assert result.returncode == 0, result.stderr
    replies_ = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r.get("id") for r in replies_] == [1, 2, None, None]
    assert replies_[1]["payload"] == {"value": "v", "metadata": None}
    assert replies_[2]["payload"] == "no id"
    assert replies_[3]["payload"] == {"code": "protocol_error"}
    # Only protocol lines on stdout; the logs are on stderr.
    assert b"listening on stdio" in result.stderr and b"malformed" in result.stderr


def test_db_file_persists_across_runs(tmp_path: Path) -> None:
    db = tmp_path / "host.sqlite"
    with run_host(tmp_path, args=("--db", str(db))) as host, host.connect_tcp() as sock:
        exchange(sock, [
            {"id": 1, "command": "kv.put", "payload": {"binding": "KV", "key": "k", "value": "kept"}},
            {"id": 2, "command": "d1.query", "payload": {"binding": "DB", "sql": "CREATE TABLE t (v)"}},
            {"id": 3, "command": "d1.query", "payload": {"binding": "DB", "sql": "INSERT INTO t VALUES ('row')"}},
        ])
    assert db.exists() and (tmp_path / "host.sqlite.d1.DB.sqlite").exists()
    with run_host(tmp_path, args=("--db", str(db))) as host, host.connect_tcp() as sock:
        got = exchange(sock, [
            {"id": 1, "command": "kv.get", "payload": {"binding": "KV", "key": "k"}},
            {"id": 2, "command": "d1.query", "payload": {"binding": "DB", "sql": "SELECT v FROM t"}},
        ])
    assert got[0]["payload"]["value"] == "kept"
    assert got[1]["payload"]["results"] == [{"v": "row"}]


def test_killed_host_closes_connections(tmp_path: Path) -> None:
    with run_host(tmp_path) as host:
        sock = host.connect_tcp()
        exchange(sock, [{"id": 1, "command": "ping"}])
        host.kill()
        sock.settimeout(10)
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass
        finally:
            sock.close()


def test_readme_spelling_of_listen(tmp_path: Path) -> None:
    # What the README tells users: --listen tcp:127.0.0.1:PORT, then
    # CF_CMD_ENDPOINT=tcp://127.0.0.1:PORT.
    with run_host(tmp_path) as host:
        assert host.tcp_endpoint.startswith("tcp://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
            (got,) = exchange(sock, [{"id": 1, "command": "host.info"}])
        assert got["payload"]["protocol"] == 1


# Conformance cases shared with the example Worker's tests


def test_conformance_matcher_can_fail() -> None:
    from tests._conformance import mismatch

    assert mismatch({"a": [1, "<int>"]}, {"a": [1.0, 5]}) is None
    assert mismatch({"a": 1}, {"a": 1, "b": 2})
    assert mismatch({"a": "<int>"}, {"a": 1.5})
    assert mismatch({"a": "<iso8601>"}, {"a": "2026-12-04"})
    assert mismatch({"a": True}, {"a": 1})
    assert mismatch([1, 2], [1])
    assert mismatch(None, 0)


def test_conformance_in_memory(clock: Clock) -> None:
    from tests._conformance import load, run

    store = HostStore(clock=clock)
    try:
        dispatcher = HostDispatcher(store, allow=load()["allow"])
        failures = run(lambda request: json.loads(dispatcher.handle_line(json.dumps(request).encode())))
    finally:
        store.close()
    assert failures == []


def test_conformance_over_tcp_and_http(tmp_path: Path) -> None:
    from tests._conformance import load, run

    allow = ",".join(load()["allow"])
    with run_host(tmp_path, tcp=True, args=("--allow", allow)) as host, host.connect_tcp() as sock:
        assert run(lambda request: exchange(sock, [request])[0]) == []
    with run_host(tmp_path, tcp=False, http=True, args=("--allow", allow)) as host:
        assert run(lambda request: _post(host.http_url, json.dumps(request).encode())[1]) == []


def test_tcp_half_close_flushes_every_reply(live_host: Any) -> None:
    # A client that sends its requests then shuts down its sending side
    # (printf ... | nc -N) still gets every reply, then end of file.
    with live_host.connect_tcp() as sock:
        sock.sendall(b"".join(
            json.dumps({"id": i, "command": "ping", "payload": i}).encode() + b"\n" for i in range(200)
        ))
        sock.shutdown(socket.SHUT_WR)
        data = b""
        for _ in range(10_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert [json.loads(line)["id"] for line in data.splitlines()] == list(range(200))
