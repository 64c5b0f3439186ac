# -*- test-case-name: tests.test_platforms -*-
"""
The platforms containerflare runs on, each an L{IMetadataProvider}.

Detection order: Cloudflare's own container variables, then Cloud Run's, then
the variables the reference runtime used for Cloudflare, else generic.  The
variables a platform really sets win over conventions a user may also set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Union

from attrs import frozen
from zope.interface import implementer

from containerflare._sources import build_metadata
from containerflare.interfaces import IMetadataProvider, IPlatform

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

    from containerflare._environ import RuntimeConfig
    from containerflare._metadata import RequestMetadata


def _get(environ: Mapping[str, str], name: str) -> str | None:
    # An empty value counts as unset: container tooling often writes NAME=.
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = _get(environ, name)
        if value is not None:
            return value
    return None


def _int(environ: Mapping[str, str], name: str) -> int | None:
    value = _get(environ, name)
    if value is None:
        return None
    try:
        return int(value, 10)
    except ValueError:
        return None


@implementer(IPlatform)
@frozen
class CloudflarePlatform:
    """
    A Cloudflare Container, beside a Durable Object of a C{Container} class.
    """

    worker_name: str | None = None
    application_id: str | None = None
    durable_object_id: str | None = None
    location: str | None = None
    region: str | None = None
    country: str | None = None
    name: str = "cloudflare"


@implementer(IPlatform)
@frozen
class CloudRunPlatform:
    """
    A Google Cloud Run service (or job).
    """

    service: str | None = None
    revision: str | None = None
    configuration: str | None = None
    project_id: str | None = None
    region: str | None = None
    job: str | None = None
    execution: str | None = None
    task_index: int | None = None
    task_count: int | None = None
    task_attempt: int | None = None
    name: str = "cloud_run"


@implementer(IPlatform)
@frozen
class GenericPlatform:
    """
    Anywhere else: a laptop, a plain container, a test.
    """

    name: str = "generic"


Platform = Union[CloudflarePlatform, CloudRunPlatform, GenericPlatform]

_CLOUDFLARE_RUNTIME_VARS = (
    "CLOUDFLARE_APPLICATION_ID",
    "CLOUDFLARE_DURABLE_OBJECT_ID",
    "CLOUDFLARE_LOCATION",
    "CLOUDFLARE_REGION",
    "CLOUDFLARE_COUNTRY_A2",
)
_CLOUDFLARE_REFERENCE_VARS = (
    "CONTAINERFLARE_WORKER",
    "CF_CONTAINER_PORT",
    "CF_CONTAINER_ADDR",
    "CF_CMD_ENDPOINT",
)
_CLOUD_RUN_VARS = ("K_SERVICE", "K_REVISION", "K_CONFIGURATION", "CLOUD_RUN_JOB")


@implementer(IMetadataProvider)
@frozen
class CloudflareProvider:
    """
    Cloudflare Containers.
    """

    name: str = "cloudflare"

    def detect(self, environ: Mapping[str, str]) -> CloudflarePlatform | None:
        if any(_get(environ, n) for n in _CLOUDFLARE_RUNTIME_VARS + _CLOUDFLARE_REFERENCE_VARS):
            return self.platform(environ)
        return None

    def platform(self, environ: Mapping[str, str]) -> CloudflarePlatform:
        return CloudflarePlatform(
            worker_name=_get(environ, "CONTAINERFLARE_WORKER"),
            application_id=_get(environ, "CLOUDFLARE_APPLICATION_ID"),
            durable_object_id=_get(environ, "CLOUDFLARE_DURABLE_OBJECT_ID"),
            location=_get(environ, "CLOUDFLARE_LOCATION"),
            region=_get(environ, "CLOUDFLARE_REGION"),
            country=_get(environ, "CLOUDFLARE_COUNTRY_A2"),
        )

    def request_metadata(
        self, request: IRequest, config: RuntimeConfig, now: float
    ) -> RequestMetadata:
        return build_metadata(request, config, now, "cloudflare")


@implementer(IMetadataProvider)
@frozen
class CloudRunProvider:
    """
    Google Cloud Run services and jobs.
    """

    name: str = "cloud_run"

    def detect(self, environ: Mapping[str, str]) -> CloudRunPlatform | None:
        # PORT alone is not Cloud Run: every container platform sets it.
        if any(_get(environ, n) for n in _CLOUD_RUN_VARS):
            return self.platform(environ)
        return None

    def platform(self, environ: Mapping[str, str]) -> CloudRunPlatform:
        return CloudRunPlatform(
            service=_get(environ, "K_SERVICE"),
            revision=_get(environ, "K_REVISION"),
            configuration=_get(environ, "K_CONFIGURATION"),
            project_id=_first(environ, "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"),
            region=_first(environ, "GOOGLE_CLOUD_REGION", "REGION"),
            job=_get(environ, "CLOUD_RUN_JOB"),
            execution=_get(environ, "CLOUD_RUN_EXECUTION"),
            task_index=_int(environ, "CLOUD_RUN_TASK_INDEX"),
            task_count=_int(environ, "CLOUD_RUN_TASK_COUNT"),
            task_attempt=_int(environ, "CLOUD_RUN_TASK_ATTEMPT"),
        )

    def request_metadata(
        self, request: IRequest, config: RuntimeConfig, now: float
    ) -> RequestMetadata:
        return build_metadata(request, config, now, "cloud_run")


@implementer(IMetadataProvider)
@frozen
class GenericProvider:
    """
    Anything that is neither Cloudflare nor Cloud Run.
    """

    name: str = "generic"

    def detect(self, environ: Mapping[str, str]) -> GenericPlatform:
        return GenericPlatform()

    def platform(self, environ: Mapping[str, str]) -> GenericPlatform:
        return GenericPlatform()

    def request_metadata(
        self, request: IRequest, config: RuntimeConfig, now: float
    ) -> RequestMetadata:
        return build_metadata(request, config, now, "generic")


CLOUDFLARE = CloudflareProvider()
CLOUD_RUN = CloudRunProvider()
GENERIC = GenericProvider()

#: The providers, by name lookup order.
PROVIDERS: tuple[IMetadataProvider, ...] = (CLOUDFLARE, CLOUD_RUN, GENERIC)


def detect_provider(environ: Mapping[str, str]) -> tuple[IMetadataProvider, Platform]:
    """
    Find the platform an environment belongs to.

    @return: the provider and its platform value.
    """
    if any(_get(environ, n) for n in _CLOUDFLARE_RUNTIME_VARS):
        return CLOUDFLARE, CLOUDFLARE.platform(environ)
    found = CLOUD_RUN.detect(environ)
    if found is not None:
        return CLOUD_RUN, found
    cloudflare = CLOUDFLARE.detect(environ)
    if cloudflare is not None:
        return CLOUDFLARE, cloudflare
    return GENERIC, GENERIC.platform(environ)
