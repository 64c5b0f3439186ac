# -*- test-case-name: tests.test_runtime_process -*-
"""
The twistd service: listens where the platform wants, builds the command
client, and shuts down gracefully.
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.web.resource import IResource

from containerflare._context import Runtime
from containerflare._environ import RuntimeConfig
from containerflare._lifecycle import Lifecycle, Readiness, StartupFailed, check_health_path
from containerflare._site import ContainerResource, ContainerSite

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IListeningPort
    from twisted.python.failure import Failure

_log = Logger()

#: Seconds in-flight requests get to finish on shutdown: inside Cloud Run's 10.
DEFAULT_GRACE = 8.0


def _build_command_client(
    config: RuntimeConfig, override: str | None, reactor: Any
) -> Any:
    from containerflare.command import CommandClient, CommandEndpoint

    text = override or config.command_endpoint
    if text is not None:
        endpoint = CommandEndpoint.parse(text)
    else:
        try:
            is_tty = sys.stdin is not None and sys.stdin.isatty()
        except ValueError:  # stdin closed
            is_tty = False
        endpoint = CommandEndpoint.default(config.platform.name, stdin_is_tty=is_tty)
    return CommandClient.for_endpoint(endpoint, reactor=reactor)


class ContainerService(Service):
    """
    Serves one app resource for the lifetime of the process.

    @ivar site: the L{ContainerSite}, once started.
    @ivar port: the listening port, once listening.
    @ivar exit_status: 0, or 1 once a start-up hook failed.
    @ivar freeze_heap: called once when ready to serve, if given: the
        process's owner (the twistd plugin) passes L{gc.freeze}.
    """

    name = "containerflare"

    def __init__(
        self,
        resource: IResource,
        config: RuntimeConfig,
        *,
        endpoint: str | None = None,
        command_endpoint: str | None = None,
        grace: float = DEFAULT_GRACE,
        access_log: bool = True,
        log_observer: ILogObserver | None = None,
        reactor: Any = None,
        lifecycle: Lifecycle | None = None,
        health_path: str | None = None,
        freeze_heap: Callable[[], None] | None = None,
    ) -> None:
        self.resource = resource
        self.config = config
        self.endpoint = endpoint or config.endpoint
        self.command_endpoint = command_endpoint
        self.grace = grace
        self.access_log = access_log
        self.log_observer = log_observer
        self._reactor = reactor
        self.runtime: Runtime | None = None
        self.site: ContainerSite | None = None
        self.port: IListeningPort | None = None
        self.lifecycle = lifecycle
        self.health_path = check_health_path(health_path) if health_path else None
        self.exit_status = 0
        self.freeze_heap = freeze_heap
        self._starting: Deferred[None] | None = None

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def setServiceParent(self, parent: Any) -> None:  # noqa: N802
        # twistd takes the log observer from the application: ours writes to
        # stderr, keeping stdout for the stdio command channel.
        if (
            self.log_observer is not None
            and isinstance(parent, Componentized)
            and parent.getComponent(ILogObserver, None) is None
        ):
            parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def startService(self) -> None:  # noqa: N802
        super().startService()
        if self.log_observer is not None:
            # This service owns the process's logging: the logging module's
            # records go the same way (format, level, request correlation).
            from containerflare._logging import install_stdlib_bridge

            install_stdlib_bridge(self.config.log_level)
        reactor = self.reactor
        client = _build_command_client(self.config, self.command_endpoint, reactor)
        # The port binds at once (the platform's probe sees it); requests get
        # a 503 until the start-up hooks are done.
        readiness = Readiness()
        self.runtime = Runtime(self.config, client, reactor, readiness)
        self.site = ContainerSite(
            ContainerResource(self.resource, self.runtime, health_path=self.health_path),
            clock=reactor,
            access_log=self.access_log,
        )
        listening = serverFromString(reactor, self.endpoint).listen(self.site)
        failures: list[Any] = []
        listening.addCallbacks(self._listening, failures.append)
        if failures:
            # TCP and UNIX ports bind synchronously: fail start-up loudly.
            failures[0].raiseException()
        self._start_hooks(readiness)

    def _ready(self, readiness: Readiness) -> None:
        readiness.mark_ready()
        if self.freeze_heap is not None:
            # What start-up built (modules, the app, what the hooks loaded)
            # lives as long as the process: out of the collector's reach,
            # its full passes no longer walk it again and again under load
            # (~25 ms each, every second or so: docs/benchmarks.md).  O(1);
            # counting the frozen objects is not (~4 ms at start-up).
            self.freeze_heap()

    def _start_hooks(self, readiness: Readiness) -> None:
        lifecycle = self.lifecycle
        if lifecycle is None or not lifecycle.startup_hooks:
            self._ready(readiness)
            return
        lifecycle.runtime = self.runtime
        self._starting = starting = lifecycle.startup(self.reactor)

        def started(_: None) -> None:
            self._starting = None
            self._ready(readiness)
            _log.info("containerflare ready: start-up hooks done")

        def failed(reason: Failure) -> None:
            self._starting = None
            if reason.check(CancelledError):
                return  # stopped while starting: not a failure
            readiness.mark_failed()
            self.exit_status = 1
            cause = reason.value.reason if isinstance(reason.value, StartupFailed) else reason
            _log.failure("Start-up failed", cause)
            _log.critical(
                "containerflare: {message}; not serving, exiting with status 1",
                message=str(reason.value),
            )
            self.reactor.callWhenRunning(self._stop_reactor)

        starting.addCallbacks(started, failed)

    def _stop_reactor(self) -> None:
        from twisted.internet.error import ReactorNotRunning

        try:
            self.reactor.stop()
        except ReactorNotRunning:
            pass

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        _log.info(
            "containerflare serving on {endpoint} (platform {platform})",
            endpoint=self.endpoint,
            platform=self.config.platform.name,
        )

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()
        if self.runtime is not None and self.runtime.readiness is not None:
            self.runtime.readiness.mark_stopping()
        if self._starting is not None:
            self._starting.cancel()
        d: Deferred[Any] = succeed(None)
        if self.port is not None:
            port, self.port = self.port, None
            d = maybeDeferred(port.stopListening)
        site = self.site
        if site is not None:
            d.addCallback(lambda _: site.drain(self.grace))
        lifecycle = self.lifecycle
        if lifecycle is not None and lifecycle.shutdown_hooks:
            # After the drain, before the command channel closes: hooks may
            # still talk to the host.  Never fails; each hook is bounded.
            d.addCallback(lambda _: lifecycle.shutdown(self.reactor))
        runtime = self.runtime
        if runtime is not None:
            d.addCallback(lambda _: runtime.command_client.close())
        d.addErrback(lambda f: _log.failure("Error during shutdown", f))
        d.addCallback(self._clean_exit)
        return d

    def _clean_exit(self, _: object) -> None:
        # twistd re-raises the signal that stopped the reactor once it is
        # done; a drained stop on SIGTERM/SIGINT is a normal exit for a
        # container, so report it as status 0.
        reactor = self.reactor
        if getattr(reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
            reactor._exitSignal = None
        _log.info("containerflare stopped")
