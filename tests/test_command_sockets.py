"""
The command client over real sockets against the reference host
(C{python -m containerflare.command.host}) as a child process: TCP and UNIX,
100 concurrent invokes, the host killed mid-flight, reconnection to a
restarted host.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, gatherResults

from containerflare.command import (
    CommandClient,
    CommandEndpoint,
    CommandFailure,
    CommandTimeout,
    ProtocolError,
    TransportClosed,
)

from ._process import ROOT, clean_environ, free_port, wait_for_port

# Reconnect quickly in tests (the default backoff starts near 1 s).
FAST_RETRY = {"retry_policy": lambda attempt: 0.05}


class Host:
    """
    A reference host child on a fixed TCP port or UNIX path, so that it can
    be killed and started again at the same address.
    """

    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.tmp_path = tmp_path
        self.kind = kind
        self.port = free_port() if kind == "tcp" else None
        self.path = tmp_path / "host.sock" if kind == "unix" else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def endpoint(self) -> CommandEndpoint:
        if self.kind == "tcp":
            return CommandEndpoint.parse(f"tcp://127.0.0.1:{self.port}")
        return CommandEndpoint.parse(f"unix://{self.path}")

    def start(self) -> None:
        listen = f"tcp:127.0.0.1:{self.port}" if self.kind == "tcp" else f"unix:{self.path}"
        if self.path is not None and self.path.exists():
            self.path.unlink()  # left behind by a killed host
        self.starts += 1
        err = open(self.tmp_path / f"host-{self.starts}.err", "wb")
        with err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "containerflare.command.host", "--listen", listen],
                cwd=str(ROOT),
                env=clean_environ(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        if self.port is not None:
            wait_for_port(self.port, proc=self.proc)
        else:
            assert self.path is not None
            deadline = time.monotonic() + 20
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("host exited before listening")
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(self.path))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def freeze(self) -> None:
        """
        Stop the host (SIGSTOP): it accepts nothing more and answers nothing.
        """
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_host(tmp_path: Path, kind: str) -> Iterator[Host]:
    host = Host(tmp_path, kind)
    host.start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(params=["tcp", "unix"])
def host(request: Any, tmp_path: Path) -> Iterator[Host]:
    # A short tmp path: UNIX socket paths are limited to ~100 bytes.
    if request.param == "unix" and len(str(tmp_path)) > 80:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="cf") as short, running_host(Path(short), "unix") as h:
            yield h
        return
    with running_host(tmp_path, request.param) as h:
        yield h


@pytest_twisted.ensureDeferred
async def test_hundred_concurrent_invokes(host: Host) -> None:
    client = await CommandClient.connect(host.endpoint, timeout=20)
    try:
        kv = client.kv("KV")
        await gatherResults([kv.put(f"k{i}", f"v{i}") for i in range(50)])
        calls = [client.invoke("ping", {"n": i, "pad": "x" * (i * 37)}) for i in range(50)]
        calls += [kv.get(f"k{i}") for i in range(50)]
        results = await gatherResults(calls)
        assert results[:50] == [{"n": i, "pad": "x" * (i * 37)} for i in range(50)]
        assert results[50:] == [f"v{i}" for i in range(50)]
        row = await client.d1("DB").query("SELECT ? + 1 AS n", [41])
        assert row["results"] == [{"n": 42}]
        with pytest.raises(CommandFailure) as info:
            await client.invoke("kv.frobnicate", {})
        assert info.value.code == "unknown_command"
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_host_killed_mid_flight_then_reconnect(host: Host) -> None:
    client = await CommandClient.connect(host.endpoint, timeout=30, **FAST_RETRY)
    try:
        assert await client.invoke("ping", "before") == "before"
        # Frozen, the host reads nothing and answers nothing: these are in
        # flight when it dies.
        host.freeze()
        in_flight = [client.invoke("ping", i) for i in range(20)]
        await _settle()
        host.kill()
        outcomes = await DeferredList(in_flight, consumeErrors=True)
        for ok, result in outcomes:
            assert not ok
            # At once, as TransportClosed, not after the 30 s timeout.
            assert result.check(TransportClosed), result
        # Made while the host is down: waits for the reconnection.
        waiting = client.invoke("ping", "after", timeout=30)
        host.start()
        assert await waiting == "after"
        assert await client.kv("KV").get("missing") is None
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_oversized_reply_fails_only_its_request(host: Host) -> None:
    """
    A reply line over the client's limit fails the request it answers with
    ProtocolError; the replies around it still reach their own callers over
    the same connection.
    """
    client = await CommandClient.connect(host.endpoint, timeout=20, max_line_length=4096)
    try:
        await client.kv("KV").put("big", "x" * 20_000)
        calls = [client.invoke("ping", i) for i in range(10)]
        big = client.kv("KV").get("big")
        calls += [client.invoke("ping", i) for i in range(10, 20)]
        with pytest.raises(ProtocolError) as info:
            await big
        assert "longer than 4096 bytes" in str(info.value)
        assert await gatherResults(calls) == list(range(20))
        assert await client.invoke("ping", "after") == "after"
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_invoke_without_a_host_times_out_unsent(tmp_path: Path) -> None:
    port = free_port()
    client = CommandClient.for_endpoint(CommandEndpoint.parse(f"tcp://127.0.0.1:{port}"), **FAST_RETRY)
    try:
        with pytest.raises(CommandTimeout) as info:
            await client.invoke("ping", timeout=0.3)
        assert not info.value.sent
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_connect_fails_when_nobody_listens(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(TransportClosed) as info:
        await CommandClient.connect(CommandEndpoint.parse(f"tcp://127.0.0.1:{port}"), timeout=2, **FAST_RETRY)
    assert "refused" in str(info.value).lower()


@pytest_twisted.ensureDeferred
async def test_close_with_invokes_in_flight_fails_them(host: Host) -> None:
    client = await CommandClient.connect(host.endpoint, timeout=30)
    host.freeze()
    in_flight = [client.invoke("ping", i) for i in range(5)]
    await _settle()
    await client.close()
    outcomes = await DeferredList(in_flight, consumeErrors=True)
    assert all(not ok and result.check(TransportClosed) for ok, result in outcomes)


async def _settle() -> None:
    """
    Let the reactor write what is queued.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(3):
        await deferLater(reactor, 0.01, lambda: None)


def test_no_processes_left(tmp_path: Path) -> None:
    """
    The fixture stops the host it started (checked by its PID).
    """
    with running_host(tmp_path, "tcp") as host:
        assert host.proc is not None
        pid = host.proc.pid
    assert host.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
