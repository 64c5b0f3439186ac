"""
containerflare: run Klein (Twisted) apps in Cloudflare Containers and Google
Cloud Run without re-writing the platform glue.

Public names only; the code lives in private modules.
"""

from containerflare._context import ContainerContext
from containerflare._environ import ConfigError, RuntimeConfig
from containerflare._metadata import RequestMetadata
from containerflare._platforms import (
    CloudflarePlatform,
    CloudflareProvider,
    CloudRunPlatform,
    CloudRunProvider,
    GenericPlatform,
    GenericProvider,
)
from containerflare.interfaces import IContainerContext, IMetadataProvider, IPlatform

__all__ = [
    "CloudRunPlatform",
    "CloudRunProvider",
    "CloudflarePlatform",
    "CloudflareProvider",
    "ConfigError",
    "ContainerContext",
    "GenericPlatform",
    "GenericProvider",
    "IContainerContext",
    "IMetadataProvider",
    "IPlatform",
    "RequestMetadata",
    "RuntimeConfig",
]
