# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin: C{twistd -n --pidfile= containerflare --app mymodule:app}.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from twisted.python import usage
from twisted.web.resource import IResource

from containerflare._environ import ENVIRONMENT_VARIABLES, ConfigError, RuntimeConfig
from containerflare._service import DEFAULT_GRACE, ContainerService


def _environment_help() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT_VARIABLES)
    lines = [f"  {name.ljust(width)}  {text}" for name, text in ENVIRONMENT_VARIABLES]
    return "\n".join(lines)


def _as_resource(obj: Any, spec: str, *, call: bool = True) -> IResource:
    klein = sys.modules.get("klein")
    if klein is not None and isinstance(obj, klein.Klein):
        return obj.resource()  # type: ignore[no-any-return]
    if IResource.providedBy(obj):
        return obj  # type: ignore[no-any-return]
    if call and callable(obj):
        try:
            made = obj()
        except TypeError as e:
            raise usage.UsageError(
                f"--app {spec!r}: calling it failed ({e}); a factory must take no arguments"
            ) from None
        return _as_resource(made, spec, call=False)
    raise usage.UsageError(
        f"--app {spec!r} is a {type(obj).__module__}.{type(obj).__qualname__}; expected a "
        "klein.Klein, an IResource, or a zero-argument callable returning one"
    )


def load_app(spec: str) -> IResource:
    """
    Import C{MODULE:NAME} (or C{MODULE.NAME}) and make a resource of it.

    @raise usage.UsageError: the spec is malformed, the module does not
        import, the name is missing or the object is not usable.
    """
    if ":" in spec:
        module_name, _, attr_path = spec.partition(":")
    else:
        module_name, _, attr_path = spec.rpartition(".")
    if not module_name or not attr_path:
        raise usage.UsageError(
            f"--app {spec!r}: expected MODULE:NAME or MODULE.NAME, e.g. app:app"
        )
    # Like uvicorn and gunicorn: the app lives beside the working directory.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        if getattr(e, "name", None) == module_name:
            raise usage.UsageError(f"--app {spec!r}: no module named {module_name!r}") from None
        raise usage.UsageError(
            f"--app {spec!r}: importing {module_name!r} failed: {type(e).__name__}: {e}"
        ) from None
    except Exception as e:
        raise usage.UsageError(
            f"--app {spec!r}: importing {module_name!r} failed: {type(e).__name__}: {e}"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise usage.UsageError(
                f"--app {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    return _as_resource(obj, spec)


class Options(usage.Options):
    """
    Command-line options of C{twistd containerflare}.
    """

    synopsis = "[options] --app MODULE:NAME"
    longdesc = (
        "Serve a Klein app (or any IResource) the way Cloudflare Containers and "
        "Google Cloud Run expect: on the endpoint derived from the environment, "
        "with request metadata and the host command channel available through "
        "containerflare.ContainerContext, and a graceful drain on SIGTERM.\n\n"
        "Logs go to stderr (stdout may carry the stdio command channel). "
        "Run it in containers as: twistd -n --pidfile= containerflare --app app:app\n\n"
        "A .env file in the working directory overrides the process environment."
    )

    optParameters = [
        ["app", "a", None, "The app: MODULE:NAME or MODULE.NAME naming a klein.Klein, "
         "an IResource, or a zero-argument callable returning one (required)."],
        ["endpoint", "e", None, "Twisted server endpoint string to listen on, "
         "overriding the one derived from PORT / CF_CONTAINER_PORT / CF_CONTAINER_ADDR "
         "(e.g. tcp:8080 or unix:/tmp/app.sock)."],
        ["command-endpoint", "c", None, "Command channel endpoint, overriding "
         "CF_CMD_ENDPOINT: stdio, tcp://HOST:PORT, unix:///PATH, http(s)://HOST/PATH, disabled."],
        ["grace", "g", DEFAULT_GRACE, "Seconds in-flight requests get to finish on "
         "SIGTERM/SIGINT before their connections are cut.", float],
        ["health-path", None, None, "Answer this path (e.g. /healthz) with the built-in "
         "readiness check: 200 once start-up hooks are done, else 503. Overrides "
         "CONTAINERFLARE_HEALTH_PATH."],
    ]
    optFlags = [
        ["no-access-log", None, "Do not log one line per request."],
        ["no-gc-freeze", None, "Leave the objects built at start-up to the garbage "
         "collector (by default they are frozen once ready: gc.freeze)."],
    ]

    def getUsage(self, width: int | None = None) -> str:  # noqa: N802
        # The variables as a table: longdesc would be word-wrapped into mush.
        return (
            super().getUsage(width)
            + "\nEnvironment variables read:\n"
            + _environment_help()
            + "\n"
        )

    def parseOptions(self, options: list[str] | None = None) -> None:  # noqa: N802
        # Importing the app (Klein, the user's modules) creates tens of
        # thousands of long-lived objects, and the collector walks all of
        # them again on each pass: seen costing a ~20 ms full collection, 8%
        # of the time to the first response (docs/benchmarks.md).  Paused
        # for these few hundred milliseconds only, and restored whatever
        # happens.
        enabled = gc.isenabled()
        gc.disable()
        try:
            super().parseOptions(options)
        finally:
            if enabled:
                gc.enable()

    def postOptions(self) -> None:  # noqa: N802
        if not self["app"]:
            raise usage.UsageError("--app is required, e.g. --app app:app")
        if self["grace"] < 0:
            raise usage.UsageError(f"--grace must not be negative, got {self['grace']}")
        # The .env file overrides the process environment for the whole
        # process, so the app sees the same values as the runtime.
        dotenv = Path.cwd() / ".env"
        if dotenv.is_file():
            from dotenv import load_dotenv

            load_dotenv(dotenv, override=True)
        try:
            self["config"] = RuntimeConfig.from_environ(os.environ)
        except ConfigError as e:
            raise usage.UsageError(f"invalid environment: {e}") from None
        if self["endpoint"]:
            from twisted.internet import reactor
            from twisted.internet.endpoints import serverFromString

            try:
                serverFromString(reactor, self["endpoint"])
            except Exception as e:
                raise usage.UsageError(f"--endpoint {self['endpoint']!r}: {e}") from None
        if self["command-endpoint"]:
            from containerflare.command import CommandEndpoint

            try:
                CommandEndpoint.parse(self["command-endpoint"])
            except ValueError as e:
                raise usage.UsageError(f"--command-endpoint: {e}") from None
        # Before the app is imported, so that its import-time records from
        # the logging module are formatted like every other line.
        from containerflare._logging import install_stdlib_bridge, make_observer, stdout_to_log

        remove_bridge = install_stdlib_bridge(self["config"].log_level, keep_early=True)
        try:
            with stdout_to_log():  # stdout may become the stdio command channel
                self["resource"] = load_app(self["app"])
        except usage.UsageError:
            # twistd exits before it starts logging: show what the app logged.
            remove_bridge(replay_to=make_observer(self["config"]))
            raise
        self._lifecycle_options()

    def _lifecycle_options(self) -> None:
        from containerflare._lifecycle import check_health_path, find_lifecycle

        config: RuntimeConfig = self["config"]
        source = "--health-path"
        if not self["health-path"]:
            self["health-path"] = config.environ.get("CONTAINERFLARE_HEALTH_PATH") or None
            source = "CONTAINERFLARE_HEALTH_PATH"
        if self["health-path"]:
            try:
                check_health_path(self["health-path"])
            except ValueError as e:
                raise usage.UsageError(f"{source}: {e}") from None
        self["lifecycle"] = find_lifecycle(self["app"], self["resource"])


def makeService(options: Options) -> ContainerService:  # noqa: N802
    """
    Build the service twistd runs.
    """
    from containerflare._logging import make_observer

    config: RuntimeConfig = options["config"]
    service = ContainerService(
        options["resource"],
        config,
        endpoint=options["endpoint"],
        command_endpoint=options["command-endpoint"],
        grace=options["grace"],
        access_log=not options["no-access-log"],
        log_observer=make_observer(config),
        lifecycle=options.get("lifecycle"),
        health_path=options.get("health-path"),
        freeze_heap=None if options["no-gc-freeze"] else gc.freeze,
    )
    _exit_with_status(service)
    return service


def _exit_with_status(service: ContainerService) -> None:
    # twistd has no way to exit non-zero once the reactor ran: after a failed
    # start-up hook, end the process with the service's status at exit.
    import atexit

    def exit_status() -> None:
        if service.exit_status:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(service.exit_status)

    atexit.register(exit_status)
