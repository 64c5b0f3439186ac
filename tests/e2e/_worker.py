"""
Real processes for the Worker end-to-end tests: the example Worker in workerd
(tests/e2e/worker_harness.mjs, through Miniflare), the example app under
C{twistd -n containerflare}, and the reference command host.

The container's command channel: in production the container POSTs to
C{http://containerflare.command/} and the Container class's outbound
interception hands the request to C{outboundByHost}.  Here the twistd process
is not inside workerd, so its C{CF_CMD_ENDPOINT} points at the harness's
loopback bridge C{/__harness/outbound/<instance>/containerflare.command/},
which passes the request to the very fetcher that the Container class
registered with C{ctx.container.interceptOutboundHttp(...)}: the real
ContainerProxy, the example's outboundByHost and its dispatcher.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests._process import ROOT, clean_environ, free_port, stop_process, wait_for_port

EXAMPLE = ROOT / "examples" / "basic"
HARNESS = Path(__file__).resolve().parent / "worker_harness.mjs"
COMMAND_HOST = "containerflare.command"

T = TypeVar("T")


def node() -> str:
    """
    The node executable, and a check that the example's npm packages are
    installed (C{scripts/test.sh} runs C{npm ci} in examples/basic).
    """
    path = shutil.which("node")
    if path is None:
        raise RuntimeError("node is required for the Worker tests (Node.js 20+)")
    for package in ("miniflare", "esbuild", "@cloudflare/containers"):
        if not (EXAMPLE / "node_modules" / package / "package.json").is_file():
            raise RuntimeError(
                f"{package} is not installed in examples/basic/node_modules: "
                "run `npm ci` there (scripts/test.sh does)"
            )
    return path


def wrangler_vars() -> dict[str, str]:
    """
    The C{vars} of examples/basic/wrangler.jsonc (comments dropped).
    """
    out = subprocess.run(
        [node(), "-e", _READ_VARS, str(EXAMPLE / "wrangler.jsonc")],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return dict(json.loads(out.stdout))


# The harness's own JSONC reader, reused so the tests and the harness agree.
_READ_VARS = """
const fs = require("fs");
const text = fs.readFileSync(process.argv[1], "utf8");
let out = "";
for (let i = 0; i < text.length; i++) {
  const c = text[i];
  if (c === '"') { let j = i + 1; while (j < text.length && text[j] !== '"') j += text[j] === "\\\\" ? 2 : 1; out += text.slice(i, j + 1); i = j; }
  else if (c === "/" && text[i + 1] === "/") { while (i < text.length && text[i] !== "\\n") i++; out += "\\n"; }
  else if (c === "/" && text[i + 1] === "*") { i = text.indexOf("*/", i + 2) + 1; }
  else out += c;
}
process.stdout.write(JSON.stringify(JSON.parse(out.replace(/,(\\s*[}\\]])/g, "$1")).vars));
"""


class Harness:
    """
    A running worker_harness.mjs.
    """

    def __init__(self, proc: subprocess.Popen[bytes], url: str, stderr_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.stderr_path = stderr_path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def bridge(self, instance: str = "_") -> str:
        """
        The URL the container's command channel uses in the tests.
        """
        return f"{self.url}/__harness/outbound/{instance}/{COMMAND_HOST}/"

    def state(self, instance: str = "_") -> dict[str, Any]:
        """
        What the container stand-in of one instance saw.
        """
        status, _, body = http("GET", f"{self.url}/__harness/state/{instance}")
        assert status == 200, body
        return json.loads(body)  # type: ignore[no-any-return]

    def queue(self) -> list[dict[str, Any]]:
        """
        The messages the queue consumer received so far.
        """
        status, _, body = http("GET", f"{self.url}/__harness/queue")
        assert status == 200, body
        return json.loads(body)  # type: ignore[no-any-return]


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None and not sel.select(0):
                break
            if sel.select(min(remaining, 0.5)):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
    return buffer.split(b"\n", 1)[0]


@contextmanager
def run_harness(
    target_port: int,
    *,
    tmp_path: Path,
    variables: Mapping[str, str] | None = None,
) -> Iterator[Harness]:
    """
    Start the Worker harness, its container stand-in forwarding to
    C{127.0.0.1:target_port}; stopped (by its PID) on exit.
    """
    args = [node(), str(HARNESS), "--target-port", str(target_port)]
    for name, value in (variables or {}).items():
        args += ["--var", f"{name}={value}"]
    stderr_path = tmp_path / f"harness-{target_port}.err"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            args,
            cwd=str(EXAMPLE),
            env=clean_environ(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        line = _read_line(proc, 60.0)
        try:
            url = json.loads(line)["url"]
        except (ValueError, KeyError):
            raise RuntimeError(
                f"the Worker harness did not start (said {line!r})\n--- stderr ---\n"
                + stderr_path.read_text(errors="replace")
            ) from None
        yield Harness(proc, url, stderr_path)
    finally:
        stop_process(proc, timeout=15)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


@contextmanager
def run_reference_host(*, tmp_path: Path, allow: str | None = None) -> Iterator[tuple[int, int]]:
    """
    Start C{python -m containerflare.command.host} on free loopback ports:
    JSON lines on the first, the HTTP transport on the second.
    """
    lines_port, http_port = free_port(), free_port()
    args = [
        sys.executable,
        "-m",
        "containerflare.command.host",
        "--listen",
        f"tcp:127.0.0.1:{lines_port}",
        "--http",
        f"tcp:127.0.0.1:{http_port}",
    ]
    if allow is not None:
        args += ["--allow", allow]
    stderr_path = tmp_path / f"host-{lines_port}.err"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(args, cwd=str(ROOT), env=clean_environ(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        try:
            wait_for_port(lines_port, proc=proc)
            wait_for_port(http_port, proc=proc)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}\n--- stderr ---\n{stderr_path.read_text(errors='replace')}") from None
        yield lines_port, http_port
    finally:
        stop_process(proc, timeout=15)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """
    One HTTP request: (status, lower-cased headers, body); non-2xx answers
    are returned, not raised.
    """
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def http_json(method: str, url: str, value: Any = None, **kwargs: Any) -> tuple[int, Any]:
    body = None if value is None else json.dumps(value).encode()
    status, _, data = http(method, url, body, **kwargs)
    return status, json.loads(data)


def eventually(probe: Callable[[], T | None], *, timeout: float = 20.0, what: str = "condition") -> T:
    """
    Poll C{probe} until it returns something other than None (bounded).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


#: Worker vars the Container class passes on to the container (worker/config.js).
FORWARDED_VARS = (
    "CONTAINERFLARE_WORKER",
    "CONTAINERFLARE_METADATA_SECRET",
    "CONTAINERFLARE_LOG_LEVEL",
    "CONTAINERFLARE_LOG_FORMAT",
)


def container_env(variables: Mapping[str, str]) -> dict[str, str]:
    """
    The environment the example Worker gives its container (its C{envVars}),
    for a Worker with these vars.
    """
    env = {"CF_CMD_ENDPOINT": f"http://{COMMAND_HOST}/", "CONTAINERFLARE_PLATFORM": "cloudflare"}
    for name in FORWARDED_VARS:
        if variables.get(name):
            env[name] = variables[name]
    return env


class Stack:
    """
    The example Worker in workerd in front of the example app in twistd.

    @ivar env: the app's environment: the Worker's envVars, except that
        C{CF_CMD_ENDPOINT} is the harness's loopback bridge to the command host.
    """

    def __init__(self, harness: Harness, app: Any, env: dict[str, str]) -> None:
        self.harness = harness
        self.app = app
        self.env = env

    @property
    def url(self) -> str:
        return self.harness.url


@contextmanager
def run_worker_stack(tmp_path: Path, variables: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """
    Start the Worker harness and C{twistd -n containerflare --app app:app} in
    examples/basic behind it; both stopped on exit.
    """
    from tests._process import run_twistd

    variables = dict(variables or {})
    port = free_port()
    with run_harness(port, tmp_path=tmp_path, variables=variables) as harness:
        env = container_env({**wrangler_vars(), **variables})
        env["CF_CMD_ENDPOINT"] = harness.bridge()
        with run_twistd("app:app", cwd=EXAMPLE, env=env, port=port, tmp_path=tmp_path) as app:
            yield Stack(harness, app, env)
