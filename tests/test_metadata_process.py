"""
End to end: a real C{twistd -n containerflare} process serving an app that
echoes C{metadata.to_dict()}; requests over loopback TCP.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from containerflare import sign_metadata

from ._process import run_twistd
from .test_metadata import TOP_KEYS

APPS = Path(__file__).parent / "apps"
SECRET = "e2e-secret"
FORGED = json.dumps({"client_ip": "1.1.1.1", "country": "KP", "request_id": "forged"})


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_cloud_run_ignores_a_forged_header(tmp_path: Path) -> None:
    env = {"K_SERVICE": "hello", "K_REVISION": "hello-00002-xyz", "GOOGLE_CLOUD_PROJECT": "proj"}
    with run_twistd("metadata_app:app", cwd=APPS, env=env, tmp_path=tmp_path) as child:
        headers = {
            "Host": "hello-123456789.europe-west1.run.app",
            "X-Containerflare-Metadata": FORGED,
            "CF-Connecting-IP": "1.1.1.1",
            "X-Forwarded-For": "1.1.1.1, 203.0.113.5",
            "X-Forwarded-Proto": "https",
            "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1",
            "User-Agent": "e2e",
        }
        results = [get(child.url + "/items?x=1", headers) for _ in range(3)]
    for status, body in results:
        assert status == 200
        assert list(body) == TOP_KEYS
        assert body["client_ip"] == "203.0.113.5"
        assert body["country"] is None
        assert body["request_id"] == "105445aa7843bc8bf206b12000100000"
        assert body["platform"] == {
            "platform": "cloud_run",
            "service": "hello",
            "revision": "hello-00002-xyz",
            "configuration": None,
            "project_id": "proj",
            "region": "europe-west1",
        }
        assert body["raw_url"] == "https://hello-123456789.europe-west1.run.app/items?x=1"
        assert body["trace_context"]["span_id"] == "0000000000000001"
        assert body["user_agent"] == "e2e"
    # Three forgeries, one (rate-limited) log line.
    lines = [line for line in child.stderr().splitlines() if "not trusted on cloud_run" in line]
    assert len(lines) == 1


def test_signed_header_on_cloudflare(tmp_path: Path) -> None:
    env = {"CONTAINERFLARE_WORKER": "edge", "CONTAINERFLARE_METADATA_SECRET": SECRET}
    with run_twistd("metadata_app:app", cwd=APPS, env=env, tmp_path=tmp_path) as child:
        now = time.time()
        signed = {
            "X-Containerflare-Metadata": FORGED,
            "X-Containerflare-Signature": sign_metadata(FORGED, SECRET, now),
        }
        good = get(child.url + "/", signed)
        replayed = get(
            child.url + "/",
            {
                "X-Containerflare-Metadata": FORGED,
                "X-Containerflare-Signature": sign_metadata(FORGED, SECRET, now - 400),
            },
        )
        forged = get(
            child.url + "/",
            {
                "X-Containerflare-Metadata": FORGED,
                "X-Containerflare-Signature": sign_metadata(FORGED, "guess", now),
            },
        )
        malformed = get(
            child.url + "/",
            {"X-Containerflare-Metadata": "{not json", "X-Containerflare-Signature": sign_metadata("{not json", SECRET, now)},
        )
    assert good == (200, good[1])
    assert good[1]["request_id"] == "forged" and good[1]["client_ip"] == "1.1.1.1"
    assert good[1]["platform"] == {"platform": "cloudflare", "worker_name": "edge"}
    for status, body in (replayed, forged, malformed):
        assert status == 200
        assert body["request_id"] is None and body["country"] is None
        assert body["worker_name"] == "edge" and body["path"] == "/"
    stderr = child.stderr()
    assert "more than 300 s from now" in stderr
    # The forged signature is the same kind of problem as the replay, within
    # a minute: rate-limited, counted in the next line of that kind.
    assert "does not match" not in stderr
    assert "not valid JSON" in stderr
    assert SECRET not in stderr
