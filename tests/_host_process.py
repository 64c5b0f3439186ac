"""
The reference command host as a real child process, for tests that need a
peer: C{with run_host(tmp_path) as host: host.port / host.socket_path}.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests._process import ROOT, clean_environ, free_port, stop_process, wait_for_port

HOST_MODULE = "containerflare.command.host"


class HostProcess:
    """
    A running C{python -m containerflare.command.host} child.

    @ivar port: its TCP port (lines), or C{None}.
    @ivar http_port: its HTTP port, or C{None}.
    @ivar socket_path: its UNIX socket, or C{None}.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int | None,
        http_port: int | None,
        socket_path: Path | None,
        stderr_path: Path,
    ) -> None:
        self.proc = proc
        self.port = port
        self.http_port = http_port
        self.socket_path = socket_path
        self.stderr_path = stderr_path

    @property
    def tcp_endpoint(self) -> str:
        """
        The C{CF_CMD_ENDPOINT} spelling of the TCP listener.
        """
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def unix_endpoint(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def connect_tcp(self, timeout: float = 10.0) -> socket.socket:
        assert self.port is not None
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def connect_unix(self, timeout: float = 10.0) -> socket.socket:
        assert self.socket_path is not None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(self.socket_path))
        return s

    def kill(self) -> None:
        """
        SIGKILL the host (a host dying mid-flight).
        """
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def _wait_for_unix(path: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"host exited with {proc.returncode} before listening")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(path))
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {path} after {timeout} s")


@contextmanager
def run_host(
    tmp_path: Path,
    *,
    tcp: bool = True,
    unix: bool = False,
    http: bool = False,
    args: tuple[str, ...] = (),
) -> Iterator[HostProcess]:
    """
    Start the reference host on free loopback ports (and/or a UNIX socket
    in C{tmp_path}); stop it (SIGTERM, then SIGKILL after 10 s) on exit.
    """
    port = free_port() if tcp else None
    http_port = free_port() if http else None
    socket_path = tmp_path / "host.sock" if unix else None
    argv = [sys.executable, "-m", HOST_MODULE, *args]
    if port is not None:
        argv += ["--listen", f"tcp:127.0.0.1:{port}"]
    if socket_path is not None:
        argv += ["--listen", f"unix:{socket_path}"]
    if http_port is not None:
        argv += ["--http", f"tcp:127.0.0.1:{http_port}"]
    stderr_path = tmp_path / f"host-{port or http_port or 'unix'}.err"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=str(ROOT),
            env=clean_environ(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    host = HostProcess(proc, port, http_port, socket_path, stderr_path)
    try:
        try:
            for p in (port, http_port):
                if p is not None:
                    wait_for_port(p, proc=proc)
            if socket_path is not None:
                _wait_for_unix(socket_path, proc)
        except Exception as e:
            raise RuntimeError(f"{e}\n--- host stderr ---\n{host.stderr()}") from None
        yield host
    finally:
        stop_process(proc, timeout=10)


def exchange(sock: socket.socket, requests: list[Any], *, raw: bytes = b"") -> list[dict[str, Any]]:
    """
    Send C{requests} (JSON values, one line each) and C{raw} bytes, then read
    as many reply lines as lines were sent.
    """
    data = b"".join(json.dumps(r).encode("utf-8") + b"\n" for r in requests) + raw
    sock.sendall(data)
    expected = len(requests) + raw.count(b"\n")
    reader = sock.makefile("rb")
    try:
        return [json.loads(reader.readline()) for _ in range(expected)]
    finally:
        reader.close()
