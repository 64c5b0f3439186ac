"""
Tests for platform detection and the plugin's discovery.
"""

from __future__ import annotations

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin, getPlugins
from zope.interface.verify import verifyObject

from containerflare import (
    CloudflarePlatform,
    CloudflareProvider,
    CloudRunPlatform,
    CloudRunProvider,
    GenericPlatform,
    GenericProvider,
    IMetadataProvider,
    IPlatform,
)


@pytest.mark.parametrize("provider", [CloudflareProvider(), CloudRunProvider(), GenericProvider()])
def test_providers_provide_the_interface(provider: IMetadataProvider) -> None:
    assert verifyObject(IMetadataProvider, provider)
    assert verifyObject(IPlatform, provider.platform({}))
    assert provider.platform({}).name == provider.name


@pytest.mark.parametrize(
    "value", [CloudflarePlatform(), CloudRunPlatform(), GenericPlatform()]
)
def test_platform_values(value: IPlatform) -> None:
    assert verifyObject(IPlatform, value)
    with pytest.raises(AttributeError):
        value.name = "x"  # type: ignore[misc]


def test_detect() -> None:
    assert CloudflareProvider().detect({}) is None
    assert CloudflareProvider().detect({"CLOUDFLARE_REGION": "ENAM"}) == CloudflarePlatform(region="ENAM")
    assert CloudRunProvider().detect({"PORT": "8080"}) is None
    assert CloudRunProvider().detect({"K_SERVICE": "s"}) == CloudRunPlatform(service="s")
    assert GenericProvider().detect({}) == GenericPlatform()


def test_plugin_is_discovered() -> None:
    from twisted import plugins

    makers = {p.tapname: p for p in getPlugins(IServiceMaker, plugins)}
    assert "containerflare" in makers
    maker = makers["containerflare"]
    assert verifyObject(IServiceMaker, maker)
    assert IPlugin.providedBy(maker)
    assert maker.module == "containerflare._tap"
    assert callable(maker.options) and hasattr(maker, "makeService")
