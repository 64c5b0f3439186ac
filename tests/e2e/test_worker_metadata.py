"""
The example Worker, in workerd, in front of the example app in a real
C{twistd -n containerflare} process: readiness, the metadata header (plain
and signed), and what the app makes of it.  (Issue 5, item 5a.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from containerflare._trust import sign_metadata
from tests.e2e._worker import Stack, http, run_worker_stack, wrangler_vars

SECRET = "correct horse battery staple"
CF = {"colo": "CDG", "country": "FR", "region": "Île-de-France", "city": "Paris", "asn": 64496}
CLIENT_IP = "203.0.113.7"
RAY = "8f1e2d3c4b5a6978-CDG"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_worker_stack(tmp_path_factory.mktemp("plain")) as stack:
        yield stack


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_worker_stack(
        tmp_path_factory.mktemp("signed"), {"CONTAINERFLARE_METADATA_SECRET": SECRET}
    ) as stack:
        yield stack


def edge_headers(**extra: str) -> dict[str, str]:
    """
    What Cloudflare's edge would add: request.cf (through Miniflare's
    MF-CF-Blob), cf-connecting-ip and cf-ray.
    """
    return {
        "MF-CF-Blob": json.dumps(CF),
        "cf-connecting-ip": CLIENT_IP,
        "cf-ray": RAY,
        "user-agent": "containerflare-e2e/1",
        **extra,
    }


def echo(stack: Stack, path: str = "/?q=1&lang=fr", **headers: str) -> tuple[dict, dict]:
    """
    GET through the Worker; the app's JSON and the metadata header the
    Worker forwarded for that request (as the container stand-in saw it).
    """
    status, response_headers, body = http("GET", stack.url + path, headers=edge_headers(**headers))
    assert status == 200, body
    assert response_headers["content-type"] == "application/json"
    forwarded = [r for r in stack.harness.state()["forwarded"] if r["metadata"] is not None]
    return json.loads(body), forwarded[-1]


def test_readiness_ping_reaches_the_app(plain: Stack) -> None:
    """
    Before the first request the Container class starts the container (with
    the envVars of the Worker) and probes its port with GET http://ping/;
    both probes are answered by the app in twistd.
    """
    status, _, body = http("GET", plain.url + "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})

    state = plain.harness.state()
    assert len(state["starts"]) == 1
    passed = state["starts"][0]["env"]
    # The container is told to send its commands to the Worker's command host...
    assert passed["CF_CMD_ENDPOINT"] == "http://containerflare.command/"
    # ...and gets the Worker's name; the test's twistd got the same variables
    # except the command endpoint, which is the loopback bridge to that host.
    assert passed["CONTAINERFLARE_WORKER"] == wrangler_vars()["CONTAINERFLARE_WORKER"]
    assert {**passed, "CF_CMD_ENDPOINT": plain.env["CF_CMD_ENDPOINT"]} == plain.env
    # The command host is intercepted (outboundByHost registered through ContainerProxy).
    assert state["intercepts"] == {"containerflare.command": 1}

    probes = [r for r in state["forwarded"] if r["metadata"] is None]
    assert [(r["host"], r["path"], r["port"]) for r in probes] == [
        ("containerstarthealthcheck", "/", 8787),
        ("ping", "/", 8787),
    ]
    for probe in probes:
        assert probe["status"] == 200
        assert probe["server"].startswith("TwistedWeb/")
    # twistd logged them: two GET / before the /healthz request.
    log = plain.app.stderr()
    first_health = log.index('"GET /healthz HTTP/1.1"')
    assert log[:first_health].count('"GET / HTTP/1.1" 200') == 2


def test_metadata_echo_matches_what_the_worker_saw(plain: Stack) -> None:
    body, forwarded = echo(plain)
    sent = json.loads(forwarded["metadata"])
    assert forwarded["signature"] is None  # no secret: unsigned

    assert body["message"] == "it works!"
    assert body["platform"] == "cloudflare"
    metadata = body["metadata"]
    # The app's metadata is the Worker's header, key for key.
    assert metadata == sent
    assert metadata["colo"] == "CDG"
    assert metadata["country"] == "FR"
    assert metadata["region"] == "Île-de-France"  # non-ASCII survives the header
    assert metadata["client_ip"] == CLIENT_IP
    assert metadata["request_id"] == RAY
    assert metadata["worker_name"] == "containerflare-example"
    assert metadata["platform"] == {"platform": "cloudflare", "worker_name": "containerflare-example"}
    assert metadata["method"] == "GET"
    assert metadata["path"] == "/?q=1&lang=fr"
    assert metadata["raw_url"] == plain.url + "/?q=1&lang=fr"
    assert metadata["host"] == plain.url.split("//", 1)[1]
    assert metadata["scheme"] == "http"
    assert metadata["user_agent"] == "containerflare-e2e/1"
    # The header is plain ASCII on the wire (non-ASCII escaped in the JSON).
    assert forwarded["metadata"].isascii()


def test_request_id_without_cf_ray_is_a_uuid(plain: Stack) -> None:
    status, _, body = http("GET", plain.url + "/", headers={"MF-CF-Blob": json.dumps(CF)})
    assert status == 200
    request_id = json.loads(body)["metadata"]["request_id"]
    assert len(request_id) == 36 and request_id.count("-") == 4


def test_client_cannot_send_its_own_metadata_header(plain: Stack) -> None:
    forged = json.dumps({"colo": "EVIL", "client_ip": "198.51.100.1", "country": "XX"})
    body, forwarded = echo(plain, **{"x-containerflare-metadata": forged, "x-containerflare-signature": "t=1,v1=00"})
    assert body["metadata"]["colo"] == "CDG"
    assert body["metadata"]["client_ip"] == CLIENT_IP
    assert forwarded["signature"] is None


def test_signed_metadata_is_used(signed: Stack) -> None:
    body, forwarded = echo(signed)
    header, signature = forwarded["metadata"], forwarded["signature"]
    # The Worker's WebCrypto HMAC is byte-identical to containerflare's.
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    assert signature == sign_metadata(header, SECRET, timestamp)
    assert body["metadata"] == json.loads(header)
    assert body["metadata"]["colo"] == "CDG"
    assert body["metadata"]["region"] == "Île-de-France"
    assert body["metadata"]["client_ip"] == CLIENT_IP


def direct(stack: Stack, headers: dict[str, str]) -> dict:
    """
    GET / straight to the app (bypassing the Worker), as a forger would.
    """
    status, _, body = http("GET", stack.app.url + "/", headers=headers)
    assert status == 200, body  # never a 4xx/5xx for bad metadata
    return json.loads(body)["metadata"]  # type: ignore[no-any-return]


def test_signed_header_replayed_unchanged_is_accepted(signed: Stack) -> None:
    _, forwarded = echo(signed)
    metadata = direct(
        signed,
        {"x-containerflare-metadata": forwarded["metadata"], "x-containerflare-signature": forwarded["signature"]},
    )
    assert metadata["colo"] == "CDG"


@pytest.mark.parametrize("how", ["tampered", "wrong-secret", "unsigned", "stale"])
def test_bad_signatures_are_ignored(signed: Stack, how: str) -> None:
    _, forwarded = echo(signed)
    header, signature = forwarded["metadata"], forwarded["signature"]
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    forged = header.replace('"colo":"CDG"', '"colo":"XXX"').replace(CLIENT_IP, "198.51.100.66")
    assert forged != header
    headers = {
        "tampered": {"x-containerflare-metadata": forged, "x-containerflare-signature": signature},
        "wrong-secret": {
            "x-containerflare-metadata": forged,
            "x-containerflare-signature": sign_metadata(forged, "not the secret", timestamp),
        },
        "unsigned": {"x-containerflare-metadata": forged},
        "stale": {
            "x-containerflare-metadata": forged,
            "x-containerflare-signature": sign_metadata(forged, SECRET, timestamp - 3600),
        },
    }[how]
    metadata = direct(signed, headers)
    assert metadata["colo"] != "XXX"
    assert metadata["client_ip"] != "198.51.100.66"
    assert "request metadata:" in signed.app.stderr()  # logged (rate-limited)


def test_huge_client_headers_cannot_push_out_the_edge_facts(signed: Stack) -> None:
    """
    containerflare ignores a metadata header over 8 KiB; the Worker keeps
    its header under that by dropping what the client chose (accept
    headers, user agent, forwarded...) first.  (The trimming order and the
    path shortening are covered in worker_units.test.mjs.)
    """
    long_path = "/?pad=" + "p" * 1200
    headers = {
        "user-agent": "u" * 2500,
        "accept-language": "fr," * 400,
        "x-forwarded-for": ", ".join(["198.51.100.1"] * 30),
    }
    body, forwarded = echo(signed, long_path, **headers)
    assert len(forwarded["metadata"]) <= 7 * 1024
    sent = json.loads(forwarded["metadata"])
    assert sent["accept_language"] is None  # dropped first
    assert sent["user_agent"] == headers["user-agent"]  # kept: the header fits without it
    metadata = body["metadata"]
    # The signed header is used: the edge's facts are intact...
    assert (metadata["colo"], metadata["country"], metadata["client_ip"]) == ("CDG", "FR", CLIENT_IP)
    assert metadata["worker_name"] == "containerflare-example"
    assert metadata["request_id"] == RAY
    assert metadata["path"] == long_path
    # ...and what was dropped comes from the request's own header.
    assert metadata["accept_language"] == headers["accept-language"]
