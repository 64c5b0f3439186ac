# -*- test-case-name: tests.test_platforms -*-
"""
The seams of containerflare, as zope.interface interfaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.web.iweb import IRequest

    from containerflare._environ import RuntimeConfig
    from containerflare._metadata import RequestMetadata

__all__ = ["IMetadataProvider", "IContainerContext", "IPlatform"]


class IPlatform(Interface):
    """
    What containerflare knows about the platform the process runs on.

    Implementations are frozen attrs values built from the environment.
    """

    name = Attribute('C{"cloudflare"}, C{"cloud_run"} or C{"generic"}.')


class IMetadataProvider(Interface):
    """
    One platform: how to recognise it and how to read a request's metadata on it.
    """

    name = Attribute('The platform name this provider recognises, e.g. C{"cloudflare"}.')

    def detect(environ: Mapping[str, str]) -> IPlatform | None:
        """
        Decide from an environment whether this platform is present.

        @param environ: a mapping of environment variable names to values.
        @return: an L{IPlatform} value carrying what the environment says about
            the platform, or L{None} when this platform is not present.
        """

    def platform(environ: Mapping[str, str]) -> IPlatform:
        """
        Build this provider's L{IPlatform} value from an environment, whether or
        not L{detect} recognised it (used when the platform is forced).
        """

    def request_metadata(
        request: IRequest, config: RuntimeConfig, now: float
    ) -> RequestMetadata:
        """
        Build the L{containerflare.RequestMetadata} of one request.

        @param request: the L{twisted.web.iweb.IRequest} being handled.
        @param config: the process's L{containerflare.RuntimeConfig}.
        @param now: the current POSIX time, for signature freshness.
        @return: a L{containerflare.RequestMetadata}; never raises for bad
            input, which is logged and replaced by fallbacks.
        """


class IContainerContext(Interface):
    """
    What a request handler can reach of the platform, obtained with
    C{IContainerContext(request)} or C{ContainerContext.from_request(request)}.
    """

    platform = Attribute("The L{IPlatform} value of this process.")
    metadata = Attribute(
        "The request's L{containerflare.RequestMetadata}, computed on first use."
    )
    command_client = Attribute(
        "The process-wide L{containerflare.command.CommandClient}."
    )
    readiness = Attribute(
        "The process's L{containerflare.Readiness}: starting, ready, stopping or failed."
    )

    def invoke(
        command: str, payload: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        """
        Send a command to the host through the process's command client.

        @return: a L{Deferred} firing with the reply's payload.
        """
