"""
Tests for L{containerflare.testing}: the in-memory client and the fake
command host, used from pytest and from trial.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import treq
from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest

from containerflare import ContainerContext, RequestMetadata
from containerflare._trust import sign_metadata
from containerflare.command import (
    CommandClient,
    CommandFailure,
    CommandRequest,
    CommandTimeout,
    Unavailable,
)
from containerflare.testing import (
    FakeHost,
    HostError,
    NotFinished,
    StubContainer,
    StubResponse,
    encode_metadata,
)


def make_app() -> Klein:
    """
    A small app that shows what its handlers see.
    """
    app = Klein()

    @app.route("/")
    def index(request: IRequest) -> bytes:
        ctx = ContainerContext.from_request(request)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(
            {"platform": ctx.platform.name, "metadata": ctx.metadata.to_dict()}
        ).encode()

    @app.route("/invoke/<command>", methods=["POST"])
    async def invoke(request: IRequest, command: str) -> bytes:
        ctx = ContainerContext.from_request(request)
        payload = json.loads(request.content.read() or b"null")  # type: ignore[attr-defined]
        try:
            reply = await ctx.invoke(command, payload)
        except CommandFailure as e:
            request.setResponseCode(502)
            return json.dumps({"code": e.code, "diagnostic": e.diagnostic}).encode()
        except Unavailable as e:
            request.setResponseCode(503)
            return json.dumps({"unavailable": e.reason}).encode()
        except CommandTimeout:
            request.setResponseCode(504)
            return b"timeout"
        return json.dumps({"reply": reply}).encode()

    @app.route("/kv/<key>")
    async def kv(request: IRequest, key: str) -> bytes:
        ctx = ContainerContext.from_request(request)
        value = await ctx.command_client.kv("KV").get(key)
        return json.dumps({"value": value}).encode()

    @app.route("/waits")
    def waits(request: IRequest) -> Deferred[bytes]:
        return Deferred()

    return app


APP = make_app()


# -- platforms and metadata ----------------------------------------------------


@pytest.mark.parametrize("platform", ["cloudflare", "cloud_run", "generic"])
def test_chosen_platform(platform: str) -> None:
    stub = StubContainer(APP, platform=platform)
    body = stub.fetch("GET", "/").json()
    assert body["platform"] == platform
    assert stub.config.platform.name == platform
    stub.close()


def test_platform_detected_from_environ() -> None:
    stub = StubContainer(APP, environ={"K_SERVICE": "shop", "K_REVISION": "shop-00001"})
    body = stub.fetch("GET", "/").json()
    assert body["platform"] == "cloud_run"
    assert body["metadata"]["cloud_run_service"] == "shop"
    assert StubContainer(APP).config.platform.name == "generic"


@pytest.mark.parametrize("platform", ["cloudflare", "generic"])
def test_metadata_dict_reaches_the_handler(platform: str) -> None:
    stub = StubContainer(
        APP, platform=platform, metadata={"colo": "LHR", "country": "GB", "request_id": "r-1"}
    )
    metadata = stub.fetch("GET", "/").json()["metadata"]
    assert (metadata["colo"], metadata["country"], metadata["request_id"]) == ("LHR", "GB", "r-1")


def test_request_metadata_value() -> None:
    stub = StubContainer(
        APP, platform="cloudflare", metadata=RequestMetadata(colo="SJC", client_ip="203.0.113.9")
    )
    metadata = stub.fetch("GET", "/").json()["metadata"]
    assert metadata["colo"] == "SJC"
    assert metadata["client_ip"] == "203.0.113.9"


def test_unsigned_header_is_ignored_on_cloud_run() -> None:
    """
    The stub does what production does: Cloud Run does not trust an unsigned
    header (any client could send one).
    """
    stub = StubContainer(APP, platform="cloud_run", metadata={"colo": "LHR"})
    assert stub.fetch("GET", "/").json()["metadata"]["colo"] is None


def test_signed_metadata_is_trusted() -> None:
    stub = StubContainer(APP, platform="cloud_run", metadata={"colo": "LHR"}, secret="s3cret")
    assert stub.config.metadata_secret == "s3cret"
    assert stub.fetch("GET", "/").json()["metadata"]["colo"] == "LHR"


def test_unsigned_metadata_is_refused_when_a_secret_is_set() -> None:
    stub = StubContainer(
        APP, platform="cloudflare", metadata={"colo": "LHR"}, secret="s3cret", sign=False
    )
    assert stub.fetch("GET", "/").json()["metadata"]["colo"] is None


def test_stale_signature_is_refused() -> None:
    """
    The signature is made with the stub's clock, the runtime checks it with
    the same clock: a header signed long ago (as a replayed one) fails.
    """
    clock = Clock()
    clock.advance(1_000_000)
    stub = StubContainer(APP, platform="cloudflare", secret="s3cret", clock=clock)
    value = encode_metadata({"colo": "LHR"})
    assert value is not None
    old = sign_metadata(value, "s3cret", clock.seconds() - 3600)
    response = stub.fetch(
        "GET",
        "/",
        headers={"x-containerflare-metadata": [value], "x-containerflare-signature": [old]},
    )
    assert response.json()["metadata"]["colo"] is None
    fresh = stub.fetch("GET", "/", metadata={"colo": "LHR"})
    assert fresh.json()["metadata"]["colo"] == "LHR"


def test_per_request_metadata() -> None:
    stub = StubContainer(APP, platform="cloudflare", metadata={"colo": "LHR"})
    assert stub.fetch("GET", "/", metadata={"colo": "CDG"}).json()["metadata"]["colo"] == "CDG"
    assert stub.fetch("GET", "/", metadata=None).json()["metadata"]["colo"] is None
    # The stub's own metadata is used again afterwards.
    assert stub.fetch("GET", "/").json()["metadata"]["colo"] == "LHR"


def test_request_headers_reach_the_metadata() -> None:
    stub = StubContainer(APP, platform="cloud_run")
    metadata = stub.fetch(
        "GET", "/", headers={"x-cloud-trace-context": "0123456789abcdef0123456789abcdef/1;o=1"}
    ).json()["metadata"]
    assert metadata["trace_context"]["trace_id"] == "0123456789abcdef0123456789abcdef"


def test_encode_metadata() -> None:
    assert encode_metadata(None) is None
    assert encode_metadata(b"raw") == b"raw"
    assert encode_metadata({"colo": "Zürich"}) == b'{"colo":"Z\\u00fcrich"}'
    assert json.loads(encode_metadata(RequestMetadata(colo="LHR")) or b"") == RequestMetadata(
        colo="LHR"
    ).to_dict()


# -- the fake host -----------------------------------------------------------


def invoke(stub: StubContainer, command: str, payload: Any = None) -> StubResponse:
    return stub.fetch("POST", f"/invoke/{command}", data=json.dumps(payload))


def test_static_reply_and_recording() -> None:
    stub = StubContainer(APP, platform="cloudflare")
    stub.host.reply("kv.get", {"value": "41", "metadata": None})
    response = invoke(stub, "kv.get", {"binding": "KV", "key": "hits"})
    assert response.code == 200
    assert response.json() == {"reply": {"value": "41", "metadata": None}}
    assert stub.host.received == [CommandRequest("kv.get", {"binding": "KV", "key": "hits"})]
    assert stub.host.commands == ["kv.get"]
    assert stub.host.payloads("kv.get") == [{"binding": "KV", "key": "hits"}]
    stub.close()
    assert stub.clock.getDelayedCalls() == []


def test_failure_reply() -> None:
    stub = StubContainer(APP, platform="cloudflare")
    stub.host.fail("kv.put", "forbidden_binding", "binding 'X' is not allowed")
    response = invoke(stub, "kv.put", {"binding": "X", "key": "k", "value": "v"})
    assert response.code == 502
    assert response.json() == {
        "code": "forbidden_binding",
        "diagnostic": "binding 'X' is not allowed",
    }


def test_unknown_command() -> None:
    stub = StubContainer(APP, platform="cloudflare")
    response = invoke(stub, "kv.frobnicate", {})
    assert response.code == 502
    assert response.json()["code"] == "unknown_command"
    assert stub.host.commands == ["kv.frobnicate"]


def test_callable_reply() -> None:
    stub = StubContainer(APP, platform="generic")
    stub.host.reply("ping", lambda payload: {"echo": payload})
    assert invoke(stub, "ping", [1, 2]).json() == {"reply": {"echo": [1, 2]}}


def test_callable_raising_host_error() -> None:
    stub = StubContainer(APP, platform="generic")

    def put(payload: Any) -> None:
        raise HostError("bad_request", "value must be a string")

    stub.host.reply("kv.put", put)
    response = invoke(stub, "kv.put", {"value": 1})
    assert response.json() == {"code": "bad_request", "diagnostic": "value must be a string"}


def test_callable_raising_anything_else() -> None:
    stub = StubContainer(APP, platform="generic")
    stub.host.reply("kv.put", lambda payload: 1 / 0)
    response = invoke(stub, "kv.put", {})
    assert response.code == 502
    assert response.json()["code"] == "internal_error"
    assert "ZeroDivisionError" in response.json()["diagnostic"]


def test_reply_that_is_not_json() -> None:
    stub = StubContainer(APP, platform="generic")
    stub.host.reply("odd", {1, 2})
    response = invoke(stub, "odd", None)
    assert response.json()["code"] == "internal_error"


def test_deferred_reply_and_timeout() -> None:
    """
    A reply function returning a Deferred holds the reply until it fires;
    one that never fires lets the test drive the command timeout.
    """
    stub = StubContainer(APP, platform="generic", timeout=5)
    later: Deferred[Any] = Deferred()
    stub.host.reply("slow", lambda payload: later)
    d = stub.post("/invoke/slow", data="null")
    stub.flush()
    assert _pending(d)
    assert stub.host.commands == ["slow"]
    later.callback("done")
    stub.flush()
    response = _result(d)
    assert response.code == 200

    stub.host.reply("never", lambda payload: Deferred())
    d = stub.post("/invoke/never", data="null")
    stub.flush()
    assert _pending(d)
    stub.clock.advance(5)
    stub.flush()
    assert _result(d).code == 504
    stub.close()
    assert stub.clock.getDelayedCalls() == []


def test_typed_helpers_go_through_the_host() -> None:
    stub = StubContainer(APP, platform="cloudflare")
    stub.host.reply("kv.get", {"value": "v1", "metadata": None})
    assert stub.fetch("GET", "/kv/a").json() == {"value": "v1"}
    assert stub.host.received == [CommandRequest("kv.get", {"binding": "KV", "key": "a"})]


def test_no_command_channel_on_cloud_run() -> None:
    """
    As in production, Cloud Run has no command channel by default: the app
    gets L{Unavailable} and the host sees nothing.
    """
    stub = StubContainer(APP, platform="cloud_run")
    stub.host.reply("ping", None)
    response = invoke(stub, "ping")
    assert response.code == 503
    assert "Cloud Run" in response.json()["unavailable"]
    assert stub.host.received == []
    assert not stub.command_client.available


def test_cf_cmd_endpoint_gives_cloud_run_a_channel() -> None:
    stub = StubContainer(
        APP, platform="cloud_run", environ={"CF_CMD_ENDPOINT": "tcp://127.0.0.1:7878"}
    )
    stub.host.reply("ping", "pong")
    assert invoke(stub, "ping").json() == {"reply": "pong"}


def test_disabled_endpoint() -> None:
    stub = StubContainer(APP, platform="cloudflare", environ={"CF_CMD_ENDPOINT": "disabled"})
    assert invoke(stub, "ping").code == 503


def test_shared_host() -> None:
    host = FakeHost()
    host.reply("ping", "pong")
    first = StubContainer(APP, platform="cloudflare", host=host)
    second = StubContainer(APP, platform="generic", host=host)
    invoke(first, "ping", 1)
    invoke(second, "ping", 2)
    assert host.payloads("ping") == [1, 2]
    assert host.connections == 2
    first.close()
    second.close()
    assert host.connections == 0


def test_forget() -> None:
    host = FakeHost()
    host.reply("ping", "pong")
    host.forget("ping")
    stub = StubContainer(APP, host=host)
    assert invoke(stub, "ping").json()["code"] == "unknown_command"


def test_host_client_without_an_app() -> None:
    """
    L{FakeHost.client} is a real L{CommandClient}, for code that is not a
    request handler.
    """
    host = FakeHost()
    host.reply("ping", lambda payload: payload)
    clock = Clock()
    client = host.client(clock)
    assert isinstance(client, CommandClient)
    d = client.invoke("ping", {"n": 1})
    assert _pending(d)
    host.flush()
    assert _result(d) == {"n": 1}
    closed = client.close()
    host.flush()
    assert closed.called
    assert clock.getDelayedCalls() == []


# -- the client itself ---------------------------------------------------------


def test_fetch_raises_when_the_handler_never_finishes() -> None:
    stub = StubContainer(APP)
    with pytest.raises(NotFinished):
        stub.fetch("GET", "/waits")


def test_fetch_returns_status_headers_and_body() -> None:
    stub = StubContainer(APP, platform="generic")
    response = stub.fetch("GET", "http://example.test/")
    assert response.code == 200
    assert response.header("content-type") == "application/json"
    assert response.header("x-nope") is None
    assert json.loads(response.text)["metadata"]["host"] == "example.test"
    assert stub.fetch("GET", "/missing").code == 404


def test_accepts_a_resource() -> None:
    stub = StubContainer(APP.resource(), platform="cloudflare")
    assert stub.fetch("GET", "/").json()["platform"] == "cloudflare"
    with pytest.raises(TypeError):
        StubContainer(object())


def _pending(d: Deferred[Any]) -> bool:
    seen: list[Any] = []

    def note(result: Any) -> Any:
        seen.append(result)
        return result

    d.addBoth(note)
    return not seen


def _result(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


# -- trial -------------------------------------------------------------------


class StubContainerTrialTests(SynchronousTestCase):
    """
    The same helpers from a trial test, treq-style with Deferreds.
    """

    def test_get_and_content(self) -> None:
        stub = StubContainer(APP, platform="cloudflare", metadata={"colo": "AMS"})
        response = self.successResultOf(stub.get("/"))
        self.assertEqual(response.code, 200)
        body = json.loads(self.successResultOf(treq.content(response)))
        self.assertEqual(body["metadata"]["colo"], "AMS")
        stub.close()
        self.assertEqual(stub.clock.getDelayedCalls(), [])

    def test_command_round_trip(self) -> None:
        stub = StubContainer(APP, platform="cloudflare")
        stub.host.reply("kv.get", {"value": "7", "metadata": None})
        d = stub.get("/kv/n")
        stub.flush()
        body = self.successResultOf(self.successResultOf(d).json())
        self.assertEqual(body, {"value": "7"})
        self.assertEqual(stub.host.commands, ["kv.get"])

    def test_fetch(self) -> None:
        stub = StubContainer(APP, platform="cloud_run", metadata={"colo": "X"}, secret="k")
        self.assertEqual(stub.fetch("GET", "/").json()["metadata"]["colo"], "X")


# -- lifecycle -------------------------------------------------------------------


def test_lifecycle_start_and_close() -> None:
    from containerflare._lifecycle import Lifecycle

    lifecycle = Lifecycle()
    events: list[str] = []

    @lifecycle.on_startup
    async def warm() -> None:
        assert lifecycle.runtime is not None
        events.append(await lifecycle.runtime.command_client.invoke("ping", "up"))

    @lifecycle.on_shutdown
    def bye() -> None:
        events.append("bye")

    stub = StubContainer(APP, platform="cloudflare", lifecycle=lifecycle, health_path="/ready")
    stub.host.reply("ping", lambda payload: payload)
    starting = stub.fetch("GET", "/")
    assert starting.code == 503
    assert starting.header("retry-after") == "1"
    assert stub.fetch("GET", "/ready").code == 503
    stub.start()
    assert events == ["up"]
    assert stub.readiness.state == "ready"
    assert stub.fetch("GET", "/").code == 200
    assert stub.fetch("GET", "/ready").json() == {"status": "ready"}
    stub.close()
    assert events == ["up", "bye"]
    assert stub.clock.getDelayedCalls() == []


def test_lifecycle_startup_failure() -> None:
    from containerflare._lifecycle import Lifecycle, StartupFailed

    lifecycle = Lifecycle()

    @lifecycle.on_startup
    def broken() -> None:
        raise RuntimeError("no database")

    stub = StubContainer(APP, lifecycle=lifecycle)
    with pytest.raises(StartupFailed):
        stub.start()
    assert stub.readiness.state == "failed"
    assert stub.fetch("GET", "/").code == 503


def test_no_lifecycle_is_ready_at_once() -> None:
    stub = StubContainer(APP)
    assert stub.readiness.state == "ready"
    stub.start()
    assert stub.fetch("GET", "/").code == 200


def test_the_trial_tests_pass_under_trial(tmp_path: Any) -> None:
    """
    The trial-style tests above also pass when C{trial} runs them (in a
    child process: trial's runner fires the reactor's shutdown event, which
    must not happen to the reactor pytest-twisted runs here).
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run(
        [sys.executable, "-m", "twisted.trial", "tests.test_testing.StubContainerTrialTests"],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED (successes=3)" in done.stdout, done.stdout
