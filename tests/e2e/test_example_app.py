"""
The example app on its own, in a real C{twistd -n containerflare} process:
the routes that need no host, the 503 answers when there is no command
channel (Cloud Run, or disabled), and bad input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests._process import TwistdProcess, run_twistd
from tests.e2e._worker import EXAMPLE, http


@pytest.fixture(scope="module")
def cloud_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwistdProcess]:
    env = {"K_SERVICE": "containerflare-example", "K_REVISION": "containerflare-example-00001-abc", "GOOGLE_CLOUD_PROJECT": "my-project"}
    with run_twistd("app:app", cwd=EXAMPLE, env=env, tmp_path=tmp_path_factory.mktemp("cloudrun")) as app:
        yield app


@pytest.fixture(scope="module")
def disabled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwistdProcess]:
    env = {"CF_CMD_ENDPOINT": "disabled"}
    with run_twistd("app:app", cwd=EXAMPLE, env=env, tmp_path=tmp_path_factory.mktemp("disabled")) as app:
        yield app


def get_json(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
    status, headers, data = http(method, url, body)
    assert headers["content-type"] == "application/json", (status, data)
    assert "transfer-encoding" not in headers  # bytes with a length, not a chunked str
    return status, json.loads(data)


def test_index_and_healthz_on_cloud_run(cloud_run: TwistdProcess) -> None:
    status, body = get_json("GET", cloud_run.url + "/?x=1")
    assert status == 200
    assert body["message"] == "it works!"
    assert body["platform"] == "cloud_run"
    assert body["metadata"]["path"] == "/?x=1"
    assert body["metadata"]["platform"]["platform"] == "cloud_run"
    assert body["metadata"]["cloud_run_service"] == "containerflare-example"
    assert get_json("GET", cloud_run.url + "/healthz") == (200, {"status": "ok"})


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/kv/k", None),
        ("PUT", "/kv/k", b"v"),
        ("GET", "/d1", None),
        ("POST", "/d1", b'{"text": "t"}'),
        ("GET", "/r2/o", None),
        ("PUT", "/r2/o", b"\x00"),
        ("POST", "/queue", b"{}"),
    ],
)
def test_storage_routes_answer_503_on_cloud_run(cloud_run: TwistdProcess, method: str, path: str, body: bytes | None) -> None:
    status, answer = get_json(method, cloud_run.url + path, body)
    assert status == 503
    assert answer == {
        "error": "commands unavailable",
        "reason": "host command channel is not available on Google Cloud Run",
    }


def test_storage_routes_answer_503_when_disabled(disabled: TwistdProcess) -> None:
    status, answer = get_json("GET", disabled.url + "/kv/k")
    assert status == 503
    assert answer["error"] == "commands unavailable"
    assert answer["reason"]


@pytest.mark.parametrize(
    "method, path, body, error",
    [
        ("PUT", "/kv/k", b"\xff\xfe", "the value must be UTF-8 text"),
        ("PUT", "/kv/k?ttl=soon", b"v", "ttl must be an integer (seconds, at least 60)"),
        ("POST", "/d1", b"not json", 'expected a JSON body {"text": "..."}'),
        ("POST", "/d1", b'{"text": 5}', 'expected a JSON body {"text": "..."}'),
        ("POST", "/queue", b"{", "the body must be JSON"),
    ],
)
def test_bad_input_is_a_400_before_any_command(disabled: TwistdProcess, method: str, path: str, body: bytes, error: str) -> None:
    assert get_json(method, disabled.url + path, body) == (400, {"error": error})


def test_unknown_route_is_404(disabled: TwistdProcess) -> None:
    status, _, _ = http("GET", disabled.url + "/nope")
    assert status == 404
