# -*- test-case-name: tests.test_context -*-
"""
ContainerContext: how a request handler reaches the platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from twisted.logger import Logger
from twisted.python.components import registerAdapter
from twisted.web.iweb import IRequest
from zope.interface import implementer

from containerflare._environ import RuntimeConfig
from containerflare._lazy import request_metadata
from containerflare.interfaces import IContainerContext

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime

    from containerflare._lifecycle import Readiness
    from containerflare._metadata import RequestMetadata
    from containerflare._platforms import Platform
    from containerflare.command import CommandClient

_log = Logger()


class Runtime:
    """
    The process-wide state a request's context refers to: the settings, the
    command client and the clock.  One per process under twistd; the testing
    helpers build their own.
    """

    __slots__ = ("config", "command_client", "clock", "readiness")

    def __init__(
        self,
        config: RuntimeConfig,
        command_client: CommandClient,
        clock: IReactorTime,
        readiness: Readiness | None = None,
    ) -> None:
        self.config = config
        self.command_client = command_client
        self.clock = clock
        self.readiness = readiness


@implementer(IContainerContext)
class ContainerContext:
    """
    The platform as one request's handler sees it.

    Get it with C{ContainerContext.from_request(request)} or
    C{IContainerContext(request)}; both give the same object for the whole
    request.  Its metadata is computed on first use, once.
    """

    __slots__ = ("_runtime", "_request", "_metadata")

    def __init__(self, runtime: Runtime, request: IRequest) -> None:
        self._runtime = runtime
        self._request = request
        self._metadata: RequestMetadata | None = None

    @classmethod
    def from_request(cls, request: IRequest) -> ContainerContext:
        """
        The context of a request served by containerflare.

        A request that containerflare did not serve (a bare Klein test, say)
        gets a generic context whose command client is unavailable.
        """
        try:
            # Set by attach(): an attribute read, not an adapter lookup.
            return request._cf_context  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            return cast(ContainerContext, IContainerContext(request))

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def config(self) -> RuntimeConfig:
        """
        The process's settings.
        """
        return self._runtime.config

    @property
    def platform(self) -> Platform:
        """
        The platform value (C{.name} is C{cloudflare}, C{cloud_run} or C{generic}).
        """
        return self._runtime.config.platform

    @property
    def metadata(self) -> RequestMetadata:
        """
        The request's metadata, built on first use and kept for the request.
        """
        metadata = self._metadata
        if metadata is None:
            runtime = self._runtime
            metadata = self._metadata = request_metadata(
                self._request, runtime.config, runtime.clock.seconds()
            )
        return metadata

    @property
    def readiness(self) -> Readiness | None:
        """
        The process's L{Readiness} (C{.state}: starting, ready, stopping,
        failed), or L{None} outside C{twistd containerflare}.  A handler that
        streams for long can end early once C{.state} is C{stopping}.
        """
        return self._runtime.readiness

    @property
    def command_client(self) -> CommandClient:
        """
        The process-wide command client.
        """
        return self._runtime.command_client

    def invoke(
        self, command: str, payload: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        """
        Send a command to the host; see L{CommandClient.invoke}.
        """
        return self._runtime.command_client.invoke(command, payload, timeout=timeout)


def attach(request: IRequest, runtime: Runtime) -> ContainerContext:
    """
    Give a request its context (done by the resource containerflare wraps
    around the app).
    """
    context = ContainerContext(runtime, request)
    # IContainerContext(request) finds it through _context_for.
    request._cf_context = context  # type: ignore[attr-defined]
    return context


_fallback: Runtime | None = None


def _fallback_runtime() -> Runtime:
    global _fallback
    if _fallback is None:
        from twisted.internet import reactor

        from containerflare.command import CommandClient

        reason = "this request is not served by containerflare (use twistd containerflare or containerflare.testing)"
        _fallback = Runtime(
            RuntimeConfig.from_environ({}), CommandClient.unavailable(reason), reactor  # type: ignore[arg-type]
        )
        _log.warn("ContainerContext asked for a request containerflare does not serve: {reason}", reason=reason)
    return _fallback


def _context_for(request: IRequest) -> ContainerContext:
    attached = getattr(request, "_cf_context", None)
    if attached is not None:
        return attached  # type: ignore[no-any-return]
    return ContainerContext(_fallback_runtime(), request)


registerAdapter(_context_for, IRequest, IContainerContext)
