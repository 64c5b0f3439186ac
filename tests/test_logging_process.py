"""
Logging for real: a C{twistd -n --pidfile= containerflare} child whose app
logs through twisted.logger, the logging module and print().  Its stdout
stays empty and, in JSON mode, every stderr line is one JSON object with the
request's trace.
"""

from __future__ import annotations

import http.client
import json
import signal
from pathlib import Path

from ._process import run_twistd

APPS = Path(__file__).parent / "apps"

TRACES = {
    # marker: (path, headers, trace id, span id as hex, sampled)
    "m1": (
        "/work",
        {"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"},
        "105445aa7843bc8bf206b12000100000",
        "0000000000000001",
        True,
    ),
    "m2": (
        "/work",
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        False,
    ),
    "m3": (
        "/async",
        {"X-Cloud-Trace-Context": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/255;o=1"},
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "00000000000000ff",
        True,
    ),
    "m4": (
        "/crash",
        {"X-Cloud-Trace-Context": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/7;o=0"},
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "0000000000000007",
        False,
    ),
}


def _get(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "GET",
            path,
            headers={**headers, "User-Agent": "logging-test", "X-Forwarded-For": "203.0.113.7"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_json_mode_on_cloud_run(tmp_path: Path) -> None:
    env = {"K_SERVICE": "svc", "K_REVISION": "svc-00001", "GOOGLE_CLOUD_PROJECT": "proj"}
    with run_twistd(
        "tests.apps.logging_app:app", cwd=APPS.parent.parent, env=env, tmp_path=tmp_path
    ) as child:
        for marker, (path, headers, *_) in TRACES.items():
            status = _get(child.port, f"{path}?m={marker}", headers)
            assert status == (500 if path == "/crash" else 200)
        child.signal(signal.SIGTERM)
        assert child.wait() == 0
        stdout, stderr = child.stdout(), child.stderr()

    assert stdout == ""
    entries = []
    for line in stderr.splitlines():
        entry = json.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict), line
        assert entry["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        assert entry["time"].endswith("Z")
        entries.append(entry)

    # Start-up: the app's import-time warning went through the bridge too.
    imported = [e for e in entries if e["message"] == "imported"]
    assert len(imported) == 1
    assert imported[0]["severity"] == "WARNING"
    assert "logging.googleapis.com/trace" not in imported[0]
    [warned] = [e for e in entries if "import-time warning" in str(e["message"])]
    assert warned["severity"] == "WARNING"
    [printed] = [e for e in entries if e["message"] == "printed while importing"]
    assert printed["logger"] == "stdout"

    by_marker: dict[str, list[dict[str, object]]] = {m: [] for m in TRACES}
    for entry in entries:
        message = str(entry["message"])
        if entry["logger"] == "containerflare.access":
            marker = str(entry["httpRequest"]["requestUrl"]).rsplit("m=", 1)[1]  # type: ignore[index]
        else:
            words = message.split()
            marker = next((w for w in words[:3] if w in TRACES), "")
            if not marker:
                continue
        by_marker[marker].append(entry)
        _, _, trace, span, sampled = TRACES[marker]
        assert entry["logging.googleapis.com/trace"] == f"projects/proj/traces/{trace}", entry
        assert entry["logging.googleapis.com/spanId"] == span
        assert entry["logging.googleapis.com/trace_sampled"] is sampled
        assert entry["request_id"]

    for marker in ("m1", "m2"):
        kinds = sorted(str(e["message"]).split()[0] for e in by_marker[marker] if "httpRequest" not in e)
        assert kinds == ["exception", "later", "print", "stdlib", "twisted"], kinds
        [exception] = [e for e in by_marker[marker] if str(e["message"]).startswith("exception")]
        assert exception["severity"] == "ERROR"
        assert "Traceback (most recent call last)" in str(exception["message"])
        assert "ZeroDivisionError" in str(exception["message"])
        location = exception["logging.googleapis.com/sourceLocation"]
        assert location["file"].endswith("logging_app.py")  # type: ignore[index]
        assert location["function"] == "later"  # type: ignore[index]
        [twisted_line] = [e for e in by_marker[marker] if str(e["message"]).startswith("twisted")]
        assert twisted_line["logging.googleapis.com/sourceLocation"]["function"] == "work"  # type: ignore[index]
        [access] = [e for e in by_marker[marker] if "httpRequest" in e]
        http_request = access["httpRequest"]
        assert http_request["requestMethod"] == "GET"  # type: ignore[index]
        assert http_request["status"] == 200  # type: ignore[index]
        assert http_request["responseSize"] == "2"  # type: ignore[index]
        assert http_request["userAgent"] == "logging-test"  # type: ignore[index]
        assert http_request["remoteIp"] == "203.0.113.7"  # type: ignore[index]
        assert str(http_request["latency"]).endswith("s")  # type: ignore[index]
    assert [str(e["message"]).split()[0] for e in by_marker["m3"] if "httpRequest" not in e] == ["async"]
    assert len([e for e in by_marker["m3"] if "httpRequest" in e]) == 1
    # The crash: one entry with the traceback, and a 500 in the access log.
    crash = [e for e in by_marker["m4"] if "httpRequest" not in e]
    assert crash == [] or all("RuntimeError" in str(e["message"]) for e in crash)
    [access] = [e for e in by_marker["m4"] if "httpRequest" in e]
    assert access["httpRequest"]["status"] == 500  # type: ignore[index]
    assert access["severity"] == "ERROR"
    tracebacks = [e for e in entries if "RuntimeError: crash m4" in str(e["message"])]
    assert len(tracebacks) == 1
    assert tracebacks[0]["logging.googleapis.com/trace"].endswith("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")  # type: ignore[union-attr]


def test_text_mode_without_access_log(tmp_path: Path) -> None:
    env = {"CONTAINERFLARE_LOG_FORMAT": "text", "CONTAINERFLARE_LOG_LEVEL": "debug"}
    with run_twistd(
        "tests.apps.logging_app:app",
        cwd=APPS.parent.parent,
        env=env,
        args=("--no-access-log",),
        tmp_path=tmp_path,
    ) as child:
        assert _get(child.port, "/work?m=t1", {"X-Request-Id": "x"}) == 200
        child.signal(signal.SIGTERM)
        assert child.wait() == 0
        stdout, stderr = child.stdout(), child.stderr()

    assert stdout == ""
    lines = stderr.splitlines()
    assert not any(line.lstrip().startswith("{") for line in lines)
    assert not any('"GET /work' in line for line in lines)  # no access log
    [twisted_line] = [line for line in lines if line.endswith("twisted t1") or " twisted t1 [" in line]
    assert " INFO  [logging_app] twisted t1" in twisted_line
    assert any(" DEBUG [logging_app] debug t1" in line for line in lines)
    # The traceback follows its message on the next lines.
    index = next(i for i, line in enumerate(lines) if " ERROR [logging_app] exception t1" in line)
    assert lines[index + 1] == "Traceback (most recent call last):"


def test_import_time_records_survive_a_failed_start(tmp_path: Path) -> None:
    """
    twistd buffers events until it starts logging and drops them if it
    never starts: what a broken app logged while being imported is still
    shown.
    """
    (tmp_path / "broken_app.py").write_text(
        "import logging\n"
        "logging.getLogger('broken_app').warning('DATABASE_URL is not set')\n"
        "print('connecting', end='')\n"
        "raise RuntimeError('cannot start')\n"
    )
    with run_twistd(
        "broken_app:app", cwd=tmp_path, env={"K_SERVICE": "svc"}, wait=False, tmp_path=tmp_path
    ) as child:
        assert child.wait() != 0
        stderr = child.stderr()
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [(e["severity"], e["message"]) for e in entries] == [
        ("WARNING", "DATABASE_URL is not set"),
        ("INFO", "connecting"),
    ]
    assert "connecting" not in child.stdout()
    assert "cannot start" in stderr + child.stdout()
