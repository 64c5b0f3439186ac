"""
The public names of containerflare are pinned to the private definitions they
re-export (as Klein's C{test_exports.py} does): a name added to, removed from
or moved behind an C{__all__} shows up here, on purpose.

When you add a public name, add a row to L{PUBLIC}.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from zope.interface.verify import verifyObject

import containerflare

PUBLIC: dict[str, dict[str, str]] = {
    "containerflare": {
        "ClientHints": "containerflare._metadata",
        "CloudRunPlatform": "containerflare._platforms",
        "CloudRunProvider": "containerflare._platforms",
        "CloudRunRequestPlatform": "containerflare._metadata",
        "CloudflarePlatform": "containerflare._platforms",
        "CloudflareProvider": "containerflare._platforms",
        "CloudflareRequestPlatform": "containerflare._metadata",
        "ConfigError": "containerflare._environ",
        "ContainerContext": "containerflare._context",
        "GenericPlatform": "containerflare._platforms",
        "GenericProvider": "containerflare._platforms",
        "HookTimeout": "containerflare._lifecycle",
        "IContainerContext": "containerflare.interfaces",
        "IMetadataProvider": "containerflare.interfaces",
        "IPlatform": "containerflare.interfaces",
        "Lifecycle": "containerflare._lifecycle",
        "MAX_HEADER_BYTES": "containerflare._metadata",
        "METADATA_HEADER": "containerflare._metadata",
        "Readiness": "containerflare._lifecycle",
        "RequestMetadata": "containerflare._metadata",
        "RuntimeConfig": "containerflare._environ",
        "SIGNATURE_HEADER": "containerflare._trust",
        "SIGNATURE_MAX_AGE": "containerflare._trust",
        "StartupFailed": "containerflare._lifecycle",
        "TraceContext": "containerflare._metadata",
        "sign_metadata": "containerflare._trust",
        "stream": "containerflare._streaming",
    },
    "containerflare.interfaces": {
        "IContainerContext": "containerflare.interfaces",
        "IMetadataProvider": "containerflare.interfaces",
        "IPlatform": "containerflare.interfaces",
    },
    "containerflare.testing": {
        "FakeHost": "containerflare._testing",
        "HostError": "containerflare.command._host_dispatch",
        "NotFinished": "containerflare._testing",
        "StubContainer": "containerflare._testing",
        "StubResponse": "containerflare._testing",
        "encode_metadata": "containerflare._testing",
    },
    "containerflare.websocket": {
        "GOING_AWAY": "containerflare._websocket",
        "WebSocketResource": "containerflare._websocket",
        "WebSocketServerFactory": "autobahn.twisted.websocket",
        "WebSocketServerProtocol": "autobahn.twisted.websocket",
    },
    "containerflare.command": {
        "CommandClient": "containerflare.command._client",
        "CommandEndpoint": "containerflare.command._endpoint",
        "CommandError": "containerflare.command._errors",
        "CommandFailure": "containerflare.command._errors",
        "CommandProtocol": "containerflare.command._protocol",
        "CommandRequest": "containerflare.command._messages",
        "CommandResponse": "containerflare.command._messages",
        "CommandTimeout": "containerflare.command._errors",
        "D1": "containerflare.command._bindings",
        "DEFAULT_MAX_LINE": "containerflare.command._protocol",
        "DEFAULT_TIMEOUT": "containerflare.command._client",
        "KV": "containerflare.command._bindings",
        "KVValue": "containerflare.command._bindings",
        "ProtocolError": "containerflare.command._errors",
        "Queue": "containerflare.command._bindings",
        "QueueMessage": "containerflare.command._bindings",
        "R2": "containerflare.command._bindings",
        "R2Object": "containerflare.command._bindings",
        "TransportClosed": "containerflare.command._errors",
        "Unavailable": "containerflare.command._errors",
    },
    "containerflare.command.host": {
        "BAD_REQUEST": "containerflare.command._host_dispatch",
        "D1_ERROR": "containerflare.command._host_dispatch",
        "DEFAULT_MAX_LINE": "containerflare.command._host_protocol",
        "FORBIDDEN_BINDING": "containerflare.command._host_dispatch",
        "HostDispatcher": "containerflare.command._host_dispatch",
        "HostError": "containerflare.command._host_dispatch",
        "HostFactory": "containerflare.command._host_protocol",
        "HostLineProtocol": "containerflare.command._host_protocol",
        "HostOptions": "containerflare.command._host_main",
        "HostStore": "containerflare.command._host_store",
        "INTERNAL_ERROR": "containerflare.command._host_dispatch",
        "PROTOCOL_ERROR": "containerflare.command._host_dispatch",
        "PROTOCOL_VERSION": "containerflare.command._host_dispatch",
        "TOO_LARGE": "containerflare.command._host_dispatch",
        "UNKNOWN_BINDING": "containerflare.command._host_dispatch",
        "UNKNOWN_COMMAND": "containerflare.command._host_dispatch",
        "main": "containerflare.command._host_main",
        "serve": "containerflare.command._host_main",
        "server_description": "containerflare.command._host_main",
    },
}

#: Public modules whose names are defined in the module itself: the
#: interfaces, grouped in one module (as in Klein and Twisted).
DEFINED_HERE = {"containerflare.interfaces"}

#: Names re-exported from other projects, on purpose.
THIRD_PARTY = {"autobahn.twisted.websocket"}


def _cases() -> list[tuple[str, str, str]]:
    return [
        (module, name, private)
        for module, names in PUBLIC.items()
        for name, private in names.items()
    ]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_pinned(module: str) -> None:
    """
    C{__all__} lists exactly the pinned names, each once, none private.
    """
    public = importlib.import_module(module)
    exported = list(public.__all__)
    assert len(exported) == len(set(exported)), f"{module}.__all__ has duplicates"
    assert not [name for name in exported if name.startswith("_")]
    assert set(exported) == set(PUBLIC[module]), (
        f"{module}.__all__ changed: new {sorted(set(exported) - set(PUBLIC[module]))}, "
        f"gone {sorted(set(PUBLIC[module]) - set(exported))}; update tests/test_exports.py"
    )


@pytest.mark.parametrize(("module", "name", "private"), _cases())
def test_public_name_is_the_private_definition(module: str, name: str, private: str) -> None:
    public = importlib.import_module(module)
    source = importlib.import_module(private)
    assert getattr(public, name) is getattr(source, name)
    if private in THIRD_PARTY:
        return
    assert private in DEFINED_HERE or private.rsplit(".", 1)[-1].startswith("_"), (
        f"{module}.{name} should be defined in a private module, not {private}"
    )
    if module not in DEFINED_HERE:
        assert private != module, f"{module}.{name} is defined in the public module itself"
    defined_in = getattr(getattr(public, name), "__module__", None)
    if isinstance(getattr(public, name), type) or callable(getattr(public, name)):
        # Defined where the table says, not re-exported from a third place.
        assert defined_in == private, f"{module}.{name} is defined in {defined_in}"


def test_public_modules_are_all_pinned() -> None:
    """
    Every public module of the package (no component starting with C{_})
    that has an C{__all__} is in the table.
    """
    found = set()
    for info in pkgutil.walk_packages(containerflare.__path__, "containerflare."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts):
            continue
        module = importlib.import_module(info.name)
        if hasattr(module, "__all__"):
            found.add(info.name)
    found.add("containerflare")
    assert found == set(PUBLIC), f"public modules not pinned: {sorted(found - set(PUBLIC))}"


def test_interfaces_are_the_same_objects_everywhere() -> None:
    from containerflare import interfaces

    for name in interfaces.__all__:
        assert getattr(containerflare, name) is getattr(interfaces, name)


@pytest.mark.parametrize(
    "provider",
    [containerflare.CloudflareProvider(), containerflare.CloudRunProvider(), containerflare.GenericProvider()],
)
def test_providers_provide_the_interface(provider: object) -> None:
    assert verifyObject(containerflare.IMetadataProvider, provider)


@pytest.mark.parametrize(
    "platform",
    [containerflare.CloudflarePlatform(), containerflare.CloudRunPlatform(), containerflare.GenericPlatform()],
)
def test_platforms_provide_the_interface(platform: object) -> None:
    assert verifyObject(containerflare.IPlatform, platform)
