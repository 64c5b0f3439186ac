"""
The example app (C{examples/basic/app.py}), tested the way its users would
test their own: with L{containerflare.testing}.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from containerflare.testing import FakeHost, HostError, StubContainer

APP_PATH = Path(__file__).resolve().parent.parent / "examples" / "basic" / "app.py"


def _load_example() -> ModuleType:
    # examples/basic is not a package: load app.py by path, under its own name.
    spec = importlib.util.spec_from_file_location("containerflare_example_basic_app", APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()

CLOUDFLARE_METADATA = {
    "request_id": "8e1f0c2a9b3d4e5f",
    "colo": "LHR",
    "country": "GB",
    "client_ip": "203.0.113.7",
    "worker_name": "containerflare-basic",
}


def cloudflare(**kwargs: Any) -> StubContainer:
    return StubContainer(
        example.app, platform="cloudflare", metadata=CLOUDFLARE_METADATA, secret="s3cret", **kwargs
    )


# -- index and health ----------------------------------------------------------


def test_index_on_cloudflare_shows_the_signed_metadata() -> None:
    response = cloudflare().fetch("GET", "/")
    assert response.code == 200
    assert response.header("content-type") == "application/json"
    body = response.json()
    assert body["message"] == "it works!"
    assert body["platform"] == "cloudflare"
    for key, value in CLOUDFLARE_METADATA.items():
        assert body["metadata"][key] == value


def test_index_on_cloud_run_uses_the_platform_headers() -> None:
    stub = StubContainer(
        example.app,
        platform="cloud_run",
        environ={"K_SERVICE": "basic", "K_REVISION": "basic-00002-xyz"},
    )
    response = stub.fetch(
        "GET",
        "https://basic-abc123-ew.a.run.app/",
        headers={
            "x-cloud-trace-context": "105445aa7843bc8bf206b12000100000/1;o=1",
            "x-forwarded-for": "198.51.100.4",
        },
    )
    body = response.json()
    assert body["platform"] == "cloud_run"
    metadata = body["metadata"]
    assert metadata["cloud_run_service"] == "basic"
    assert metadata["cloud_run_revision"] == "basic-00002-xyz"
    assert metadata["client_ip"] == "198.51.100.4"
    assert metadata["trace_context"]["trace_id"] == "105445aa7843bc8bf206b12000100000"


def test_index_on_cloud_run_ignores_a_forged_header() -> None:
    stub = StubContainer(example.app, platform="cloud_run", metadata={"country": "XX"})
    assert stub.fetch("GET", "/").json()["metadata"]["country"] is None


def test_head_and_healthz() -> None:
    stub = StubContainer(example.app, platform="generic")
    assert stub.fetch("HEAD", "/").code == 200
    health = stub.fetch("GET", "/healthz")
    assert (health.code, health.json()) == (200, {"status": "ok"})
    assert stub.host.received == []


# -- KV ------------------------------------------------------------------------


def test_kv_get() -> None:
    stub = cloudflare()
    stub.host.reply("kv.get", {"value": "hello", "metadata": {"by": "test"}})
    response = stub.fetch("GET", "/kv/greeting")
    assert response.code == 200
    assert response.json() == {"key": "greeting", "value": "hello", "metadata": {"by": "test"}}
    assert stub.host.payloads("kv.get") == [{"binding": "KV", "key": "greeting"}]


def test_kv_get_missing() -> None:
    stub = cloudflare()
    stub.host.reply("kv.get", {"value": None, "metadata": None})
    response = stub.fetch("GET", "/kv/nope")
    assert (response.code, response.json()["error"]) == (404, "not found")


def test_kv_put_with_ttl() -> None:
    stub = cloudflare()
    stub.host.reply("kv.put", None)
    response = stub.fetch("PUT", "/kv/greeting?ttl=120", data="héllo")
    assert response.code == 200
    assert response.json() == {"key": "greeting", "stored": True}
    assert stub.host.payloads("kv.put") == [
        {"binding": "KV", "key": "greeting", "value": "héllo", "expiration_ttl": 120}
    ]


def test_kv_put_rejects_bad_input_without_a_command() -> None:
    stub = cloudflare()
    assert stub.fetch("PUT", "/kv/k?ttl=soon", data="v").code == 400
    assert stub.fetch("PUT", "/kv/k", data=b"\xff\xfe").code == 400
    assert stub.host.received == []


def test_kv_refused_by_the_host() -> None:
    stub = cloudflare()
    stub.host.fail("kv.put", "bad_request", "expiration_ttl must be at least 60")
    response = stub.fetch("PUT", "/kv/k?ttl=5", data="v")
    assert response.code == 502
    assert response.json() == {
        "error": "command failed",
        "command": "kv.put",
        "code": "bad_request",
        "diagnostic": "expiration_ttl must be at least 60",
    }


def test_kv_on_cloud_run_is_unavailable() -> None:
    stub = StubContainer(example.app, platform="cloud_run")
    response = stub.fetch("GET", "/kv/greeting")
    assert response.code == 503
    assert response.json()["error"] == "commands unavailable"
    assert "Cloud Run" in response.json()["reason"]
    assert stub.host.received == []


def test_kv_timeout() -> None:
    stub = cloudflare(timeout=2)
    stub.host.reply("kv.get", lambda payload: Deferred())
    d = stub.get("/kv/slow")
    stub.clock.advance(2)
    stub.flush()
    results: list[Any] = []
    d.addCallback(lambda response: response.json()).addBoth(results.append)
    stub.flush()
    assert results[0]["error"] == "command channel error"
    stub.close()
    assert stub.clock.getDelayedCalls() == []


# -- D1 ------------------------------------------------------------------------


def _statement_result(rows: list[dict[str, Any]], last_row_id: int = 0) -> dict[str, Any]:
    return {"results": rows, "meta": {"changes": 0, "last_row_id": last_row_id}}


def test_d1_list() -> None:
    stub = cloudflare()
    stub.host.reply(
        "d1.batch",
        [_statement_result([]), _statement_result([{"id": 1, "text": "buy milk"}])],
    )
    response = stub.fetch("GET", "/d1?prefix=buy")
    assert response.json() == {"notes": [{"id": 1, "text": "buy milk"}]}
    (payload,) = stub.host.payloads("d1.batch")
    assert payload["binding"] == "DB"
    assert payload["statements"][1]["params"] == ["buy"]


def test_d1_add() -> None:
    stub = cloudflare()

    def batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
        assert payload["statements"][1]["params"] == ["call ada"]
        return [_statement_result([]), _statement_result([], last_row_id=7)]

    stub.host.reply("d1.batch", batch)
    response = stub.fetch("POST", "/d1", json={"text": "call ada"})
    assert (response.code, response.json()) == (201, {"id": 7, "text": "call ada"})
    assert stub.fetch("POST", "/d1", data="not json").code == 400
    assert stub.host.commands == ["d1.batch"]


def test_d1_error() -> None:
    stub = cloudflare()
    stub.host.reply("d1.batch", lambda payload: _raise(HostError("d1_error", "no such table")))
    response = stub.fetch("GET", "/d1")
    assert response.code == 502
    assert response.json()["code"] == "d1_error"


def _raise(error: Exception) -> Any:
    raise error


# -- R2 ------------------------------------------------------------------------


def test_r2_get() -> None:
    stub = cloudflare()
    stub.host.reply(
        "r2.get",
        {
            "key": "a.txt",
            "size": 5,
            "etag": "5d41402abc4b2a76b9719d911017c592",
            "uploaded": "2026-12-04T16:30:00.123Z",
            "content_type": "text/plain",
            "custom_metadata": {},
            "body_base64": base64.b64encode(b"hello").decode(),
        },
    )
    response = stub.fetch("GET", "/r2/a.txt")
    assert response.code == 200
    assert response.body == b"hello"
    assert response.header("content-type") == "text/plain"
    assert response.header("etag") == '"5d41402abc4b2a76b9719d911017c592"'


def test_r2_get_missing_and_invalid() -> None:
    stub = cloudflare()
    stub.host.reply("r2.get", None)
    assert stub.fetch("GET", "/r2/none").code == 404
    stub.host.reply("r2.get", {"etag": "x", "body_base64": "***"})
    assert stub.fetch("GET", "/r2/bad").code == 502


def test_r2_put() -> None:
    stub = cloudflare()
    stub.host.reply("r2.put", lambda payload: {"key": payload["key"], "size": 3})
    response = stub.fetch(
        "PUT", "/r2/img/a.bin", data=b"\x00\x01\x02", headers={"content-type": "application/x-demo"}
    )
    assert response.json() == {"key": "img/a.bin", "size": 3}
    assert stub.host.payloads("r2.put") == [
        {
            "binding": "BUCKET",
            "key": "img/a.bin",
            "body_base64": "AAEC",
            "content_type": "application/x-demo",
        }
    ]


# -- Queue ---------------------------------------------------------------------


def test_queue_send() -> None:
    host = FakeHost()
    host.reply("queue.send", None)
    stub = cloudflare(host=host)
    response = stub.fetch("POST", "/queue", json={"order": 42})
    assert (response.code, response.json()) == (202, {"queued": True})
    assert host.payloads("queue.send") == [{"binding": "QUEUE", "body": {"order": 42}}]
    assert stub.fetch("POST", "/queue", data="{").code == 400
    assert len(host.received) == 1


@pytest.mark.parametrize("path", ["/kv/x", "/d1", "/r2/x"])
def test_every_storage_route_degrades_without_a_channel(path: str) -> None:
    stub = StubContainer(example.app, platform="cloudflare", environ={"CF_CMD_ENDPOINT": "disabled"})
    response = stub.fetch("GET", path)
    assert response.code == 503
    assert json.loads(response.body)["error"] == "commands unavailable"
