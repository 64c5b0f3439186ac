"""
containerflare: run Klein (Twisted) apps in Cloudflare Containers and Google
Cloud Run without re-writing the platform glue.

Public names only; the code lives in private modules.
"""

from containerflare._context import ContainerContext
from containerflare._environ import ConfigError, RuntimeConfig
from containerflare._lifecycle import HookTimeout, Lifecycle, Readiness, StartupFailed
from containerflare._metadata import (
    MAX_HEADER_BYTES,
    METADATA_HEADER,
    ClientHints,
    CloudflareRequestPlatform,
    CloudRunRequestPlatform,
    RequestMetadata,
    TraceContext,
)
from containerflare._platforms import (
    CloudflarePlatform,
    CloudflareProvider,
    CloudRunPlatform,
    CloudRunProvider,
    GenericPlatform,
    GenericProvider,
)
from containerflare._streaming import stream
from containerflare._trust import SIGNATURE_HEADER, SIGNATURE_MAX_AGE, sign_metadata
from containerflare.interfaces import IContainerContext, IMetadataProvider, IPlatform

__all__ = [
    "MAX_HEADER_BYTES",
    "METADATA_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_MAX_AGE",
    "ClientHints",
    "CloudRunRequestPlatform",
    "CloudflareRequestPlatform",
    "CloudRunPlatform",
    "CloudRunProvider",
    "CloudflarePlatform",
    "CloudflareProvider",
    "ConfigError",
    "ContainerContext",
    "GenericPlatform",
    "GenericProvider",
    "HookTimeout",
    "IContainerContext",
    "IMetadataProvider",
    "IPlatform",
    "Lifecycle",
    "Readiness",
    "RequestMetadata",
    "RuntimeConfig",
    "StartupFailed",
    "TraceContext",
    "sign_metadata",
    "stream",
]
