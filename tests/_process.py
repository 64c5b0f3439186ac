"""
Real processes for tests: a free loopback port, and a C{twistd -n
containerflare} child that is stopped (by its own PID) when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [str(Path(sys.executable).with_name("twistd"))]

# Variables that would make a child believe it runs on some platform.
PLATFORM_VARS = (
    "PORT",
    "CF_CONTAINER_PORT",
    "CF_CONTAINER_ADDR",
    "CF_CMD_ENDPOINT",
    "CONTAINERFLARE_PLATFORM",
    "CONTAINERFLARE_WORKER",
    "CONTAINERFLARE_METADATA_SECRET",
    "CONTAINERFLARE_TRUSTED_HOPS",
    "CONTAINERFLARE_LOG_FORMAT",
    "CONTAINERFLARE_LOG_LEVEL",
    "CLOUDFLARE_APPLICATION_ID",
    "CLOUDFLARE_DURABLE_OBJECT_ID",
    "CLOUDFLARE_LOCATION",
    "CLOUDFLARE_REGION",
    "CLOUDFLARE_COUNTRY_A2",
    "K_SERVICE",
    "K_REVISION",
    "K_CONFIGURATION",
    "CLOUD_RUN_JOB",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GOOGLE_CLOUD_REGION",
    "REGION",
)


def free_port(host: str = "127.0.0.1") -> int:
    """
    A TCP port that was free a moment ago on C{host}.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    The test process's environment without any platform variables, plus C{extra}.
    """
    env = {k: v for k, v in os.environ.items() if k not in PLATFORM_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """
    Block until something accepts connections on C{host:port}.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """
    Stop a child this test started: SIGTERM, then SIGKILL after C{timeout} s.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class TwistdProcess:
    """
    A running C{twistd -n --pidfile= containerflare} child.
    """

    def __init__(self, proc: subprocess.Popen[bytes], port: int, stdout_path: Path, stderr_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)


@contextmanager
def run_twistd(
    app: str,
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    port: int | None = None,
    wait: bool = True,
    tmp_path: Path | None = None,
) -> Iterator[TwistdProcess]:
    """
    Start C{twistd -n --pidfile= containerflare --app APP} in C{cwd} with a
    clean environment plus C{env}; the port is passed as C{PORT} unless
    C{env} or C{args} already choose the endpoint.  Output goes to files.
    On exit the child gets SIGTERM, then SIGKILL after 15 s.
    """
    if port is None:
        port = free_port()
    environ = clean_environ(env)
    if not any(a.startswith("--endpoint") for a in args) and "PORT" not in environ and "CF_CONTAINER_PORT" not in environ:
        environ["PORT"] = str(port)
    out_dir = Path(tmp_path) if tmp_path is not None else Path(cwd)
    stdout_path = out_dir / f"twistd-{port}.out"
    stderr_path = out_dir / f"twistd-{port}.err"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "containerflare", "--app", app, *args],
            cwd=str(cwd),
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    child = TwistdProcess(proc, port, stdout_path, stderr_path)
    try:
        if wait:
            try:
                wait_for_port(port, proc=proc)
            except Exception as e:
                raise RuntimeError(f"{e}\n--- stderr ---\n{child.stderr()}") from None
        yield child
    finally:
        stop_process(proc, timeout=15)
