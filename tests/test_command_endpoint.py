"""
L{CommandEndpoint.parse} and L{CommandEndpoint.default}; the public names of
C{containerflare.command}; the package staying off the web side.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.testing import MemoryReactorClock

from containerflare import command
from containerflare.command import (
    CommandEndpoint,
    _bindings,
    _client,
    _endpoint,
    _errors,
    _messages,
    _protocol,
)

from ._process import ROOT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stdio", CommandEndpoint("stdio")),
        ("  STDIO\n", CommandEndpoint("stdio")),
        ("tcp://127.0.0.1:7878", CommandEndpoint("tcp", host="127.0.0.1", port=7878)),
        ("tcp://host.internal:1", CommandEndpoint("tcp", host="host.internal", port=1)),
        ("tcp://[::1]:7878", CommandEndpoint("tcp", host="::1", port=7878)),
        ("tcp://[fe80::1]:65535/", CommandEndpoint("tcp", host="fe80::1", port=65535)),
        ("unix:///run/host.sock", CommandEndpoint("unix", path="/run/host.sock")),
        ("http://containerflare.command/", CommandEndpoint("http", url="http://containerflare.command/")),
        ("https://host.example:8443/cmd", CommandEndpoint("http", url="https://host.example:8443/cmd")),
    ],
)
def test_parse(text: str, expected: CommandEndpoint) -> None:
    assert CommandEndpoint.parse(text) == expected


@pytest.mark.parametrize("word", ["disabled", "unavailable", "Disabled"])
def test_parse_disabled(word: str) -> None:
    endpoint = CommandEndpoint.parse(word)
    assert endpoint.kind == "disabled"
    assert endpoint.reason is not None and word.lower() in endpoint.reason


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tcp",
        "stdio:",
        "tcp:7878",
        "tcp://",
        "tcp://host",
        "tcp://host:0",
        "tcp://host:65536",
        "tcp://host:port",
        "tcp://::1:7878",
        "tcp://:7878",
        "tcp://host:1/path",
        "tcp://user@host:1",
        "unix://relative/path",
        "unix://",
        "http://",
        "http://host:notaport/",
        "ftp://host/",
        "/run/host.sock",
        "enabled",
    ],
)
def test_parse_rejects_junk_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError) as info:
        CommandEndpoint.parse(text)
    assert repr(text) in str(info.value)


@given(st.text(max_size=40))
def test_parse_raises_only_value_error(text: str) -> None:
    try:
        endpoint = CommandEndpoint.parse(text)
    except ValueError as e:
        assert repr(text) in str(e)
    else:
        # What parses prints back as something that parses the same.
        assert CommandEndpoint.parse(str(endpoint)).kind == endpoint.kind


def test_str_round_trips() -> None:
    for text in ["stdio", "tcp://127.0.0.1:1", "tcp://[::1]:2", "unix:///a/b", "http://h/p"]:
        assert str(CommandEndpoint.parse(text)) == text
        assert CommandEndpoint.parse(str(CommandEndpoint.parse(text))) == CommandEndpoint.parse(text)


def test_defaults() -> None:
    assert CommandEndpoint.default("cloudflare", stdin_is_tty=False) == CommandEndpoint("stdio")
    assert CommandEndpoint.default("cloudflare", stdin_is_tty=True) == CommandEndpoint("stdio")
    cloud_run = CommandEndpoint.default("cloud_run", stdin_is_tty=False)
    assert cloud_run.kind == "disabled"
    assert cloud_run.reason == "host command channel is not available on Google Cloud Run"
    assert CommandEndpoint.default("generic", stdin_is_tty=False) == CommandEndpoint("stdio")
    tty = CommandEndpoint.default("generic", stdin_is_tty=True)
    assert tty.kind == "disabled"
    assert tty.reason is not None and "CF_CMD_ENDPOINT" in tty.reason


def test_client_endpoints() -> None:
    reactor = MemoryReactorClock()
    assert isinstance(CommandEndpoint.parse("tcp://[::1]:1").client_endpoint(reactor), HostnameEndpoint)
    assert isinstance(CommandEndpoint.parse("unix:///x").client_endpoint(reactor), UNIXClientEndpoint)
    with pytest.raises(ValueError):
        CommandEndpoint.parse("stdio").client_endpoint(reactor)


def test_public_names_are_the_private_objects() -> None:
    assert command.CommandEndpoint is _endpoint.CommandEndpoint
    assert command.CommandClient is _client.CommandClient
    assert command.CommandRequest is _messages.CommandRequest
    assert command.CommandResponse is _messages.CommandResponse
    assert command.CommandProtocol is _protocol.CommandProtocol
    assert command.KV is _bindings.KV
    for name in ["CommandError", "CommandFailure", "CommandTimeout", "TransportClosed", "Unavailable", "ProtocolError"]:
        assert getattr(command, name) is getattr(_errors, name)
        assert name in command.__all__
    for name in ["CommandFailure", "CommandTimeout", "TransportClosed", "Unavailable", "ProtocolError"]:
        assert issubclass(getattr(command, name), command.CommandError)
    for name in command.__all__:
        assert hasattr(command, name)


def _modules_after(code: str) -> list[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True, check=True)
    return json.loads(out.stdout.decode().splitlines()[-1])  # type: ignore[no-any-return]


def test_import_stays_off_the_web_side() -> None:
    """
    In a fresh interpreter: importing the package and building stdio and
    unavailable clients loads no klein, no twisted.web.server, no treq and no
    TLS.
    """
    modules = _modules_after(
        "import containerflare.command as c\n"
        "from twisted.internet.task import Clock\n"
        "from twisted.internet.testing import StringTransport\n"
        "c.CommandClient.for_endpoint(c.CommandEndpoint.parse('stdio'), reactor=Clock(),\n"
        "    _stdio=lambda proto, reactor: proto.makeConnection(StringTransport()))\n"
        "c.CommandClient.unavailable('x')\n"
    )
    for banned in ("klein", "twisted.web.server", "treq", "OpenSSL", "twisted.internet.ssl"):
        assert banned not in modules, banned


def test_tcp_client_stays_off_the_web_side() -> None:
    """
    A TCP client loads Twisted's endpoints module (which itself imports
    pyOpenSSL when it is installed) but neither klein, twisted.web.server nor
    treq.
    """
    modules = _modules_after(
        "import containerflare.command as c\n"
        "from twisted.internet import reactor\n"
        "c.CommandClient.for_endpoint(c.CommandEndpoint.parse('tcp://127.0.0.1:1'), reactor=reactor)\n"
        "c.CommandClient.for_endpoint(c.CommandEndpoint.parse('unix:///nonexistent'), reactor=reactor)\n"
    )
    for banned in ("klein", "twisted.web.server", "treq"):
        assert banned not in modules, banned


def test_http_endpoint_loads_treq() -> None:
    modules = _modules_after(
        "import containerflare.command as c\n"
        "from twisted.internet import reactor\n"
        "c.CommandClient.for_endpoint(c.CommandEndpoint.parse('http://127.0.0.1:1/'), reactor=reactor)\n"
    )
    assert "treq" in modules
    assert "klein" not in modules and "twisted.web.server" not in modules
