# -*- test-case-name: tests.test_environ -*-
"""
Reading the environment, once, into one immutable settings value.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast

from attrs import field, frozen

from containerflare._platforms import (
    PROVIDERS,
    Platform,
    _get,
    detect_provider,
)
from containerflare.interfaces import IMetadataProvider

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warn", "error"]

#: Every environment variable the runtime reads, with what it means.  The
#: twistd plugin's --help and the configuration reference are built from it.
ENVIRONMENT_VARIABLES: tuple[tuple[str, str], ...] = (
    ("PORT", "listen port (Cloud Run sets it); wins over CF_CONTAINER_PORT"),
    ("CF_CONTAINER_PORT", "listen port when PORT is unset; default 8787, 8080 on Cloud Run"),
    ("CF_CONTAINER_ADDR", "listen interface, IPv4 or IPv6; default 0.0.0.0"),
    ("CF_CMD_ENDPOINT", "command channel: stdio, tcp://H:P, unix:///PATH, http(s)://..., disabled"),
    ("CONTAINERFLARE_PLATFORM", "force the platform: cloudflare, cloud_run or generic"),
    ("CONTAINERFLARE_WORKER", "the Worker's name (Cloudflare)"),
    ("CONTAINERFLARE_METADATA_SECRET", "HMAC secret the Worker signs the metadata header with"),
    ("CONTAINERFLARE_TRUSTED_HOPS", "trusted proxies appending to X-Forwarded-For: client_ip is the N-th address from the right, 0 = the TCP peer; default 1"),
    ("CONTAINERFLARE_LOG_FORMAT", "text or json; default json on Cloud Run, text elsewhere"),
    ("CONTAINERFLARE_LOG_LEVEL", "debug, info, warn or error; default info"),
    ("CONTAINERFLARE_HEALTH_PATH", "built-in readiness check path, e.g. /healthz; --health-path wins"),
    ("CLOUDFLARE_APPLICATION_ID", "set by Cloudflare in a container"),
    ("CLOUDFLARE_DURABLE_OBJECT_ID", "set by Cloudflare in a container"),
    ("CLOUDFLARE_LOCATION", "set by Cloudflare: the container's location"),
    ("CLOUDFLARE_REGION", "set by Cloudflare: the container's region"),
    ("CLOUDFLARE_COUNTRY_A2", "set by Cloudflare: the container's country"),
    ("K_SERVICE, K_REVISION, K_CONFIGURATION", "set by Cloud Run for services"),
    ("CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_*", "set by Cloud Run for jobs"),
    ("GOOGLE_CLOUD_PROJECT (GCLOUD_PROJECT)", "Google Cloud project id"),
    ("GOOGLE_CLOUD_REGION (REGION)", "Google Cloud region"),
)


class ConfigError(ValueError):
    """
    An environment variable has a value the runtime cannot use.

    @ivar variable: the variable's name.
    @ivar value: the offending value.
    """

    def __init__(self, variable: str, value: str, reason: str) -> None:
        self.variable = variable
        self.value = value
        self.reason = reason
        super().__init__(f"{variable}={value!r}: {reason}")


def _parse_port(name: str, value: str) -> int:
    try:
        port = int(value, 10)
    except ValueError:
        raise ConfigError(name, value, "not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(name, value, "port must be between 1 and 65535")
    return port


def _parse_address(name: str, value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(name, value, "not an IPv4 or IPv6 address") from None


def _choice(environ: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _get(environ, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered == "warning":
        lowered = "warn"
    if lowered not in allowed:
        raise ConfigError(name, value, "expected one of " + ", ".join(allowed))
    return lowered


def listen_endpoint(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    """
    The Twisted server endpoint string for an address and port.
    """
    if address.version == 6:
        escaped = str(address).replace(":", "\\:")
        return f"tcp6:port={port}:interface={escaped}"
    return f"tcp:port={port}:interface={address}"


def read_environ(
    environ: Mapping[str, str], dotenv_path: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """
    Merge a C{.env} file over an environment, as the reference runtime does.

    @param environ: the process environment (or a plain dict in tests).
    @param dotenv_path: a C{.env} file; missing files are ignored.
    @return: a new dict; C{environ} is not modified.
    """
    merged = dict(environ)
    if dotenv_path is not None and Path(dotenv_path).is_file():
        from dotenv import dotenv_values

        for key, value in dotenv_values(dotenv_path).items():
            if value is not None:
                merged[key] = value
    return merged


@frozen
class RuntimeConfig:
    """
    Everything the runtime takes from the environment, read once at start.

    Build it with L{RuntimeConfig.from_environ}; every other part of
    containerflare takes this value instead of reading C{os.environ}.
    """

    environ: Mapping[str, str] = field(repr=False)
    provider: IMetadataProvider
    platform: Platform
    listen_address: str
    listen_port: int
    endpoint: str
    command_endpoint: str | None
    metadata_secret: str | None = field(repr=False)
    trusted_hops: int
    log_format: LogFormat
    log_level: LogLevel

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        dotenv_path: str | os.PathLike[str] | None = None,
    ) -> RuntimeConfig:
        """
        Read the settings from an environment.

        @param environ: the variables; L{os.environ} when L{None}.
        @param dotenv_path: a C{.env} file whose values override C{environ}.
        @raise ConfigError: a variable has an unusable value; the error names
            the variable and its value.
        """
        source = read_environ(os.environ if environ is None else environ, dotenv_path)
        frozen_environ = MappingProxyType(source)

        forced = _get(source, "CONTAINERFLARE_PLATFORM")
        if forced is not None:
            names = {p.name: p for p in PROVIDERS}
            key = forced.lower().replace("-", "_")
            if key == "cloudrun":
                key = "cloud_run"
            if key not in names:
                raise ConfigError(
                    "CONTAINERFLARE_PLATFORM", forced, "expected cloudflare, cloud_run or generic"
                )
            provider = names[key]
            # The built-in providers make the built-in platform values.
            platform = cast(Platform, provider.platform(frozen_environ))
        else:
            provider, platform = detect_provider(frozen_environ)

        port_value = _get(source, "PORT")
        port_name = "PORT"
        if port_value is None:
            port_value = _get(source, "CF_CONTAINER_PORT")
            port_name = "CF_CONTAINER_PORT"
        if port_value is None:
            port = 8080 if platform.name == "cloud_run" else 8787
        else:
            port = _parse_port(port_name, port_value)

        addr_value = _get(source, "CF_CONTAINER_ADDR")
        address = _parse_address("CF_CONTAINER_ADDR", addr_value or "0.0.0.0")

        hops_value = _get(source, "CONTAINERFLARE_TRUSTED_HOPS")
        if hops_value is None:
            hops = 1
        else:
            try:
                hops = int(hops_value, 10)
            except ValueError:
                hops = -1
            if not 0 <= hops <= 32:
                raise ConfigError(
                    "CONTAINERFLARE_TRUSTED_HOPS", hops_value, "expected an integer from 0 to 32"
                )

        log_format = _choice(
            source,
            "CONTAINERFLARE_LOG_FORMAT",
            ("text", "json"),
            "json" if platform.name == "cloud_run" else "text",
        )
        log_level = _choice(
            source, "CONTAINERFLARE_LOG_LEVEL", ("debug", "info", "warn", "error"), "info"
        )

        return cls(
            environ=frozen_environ,
            provider=provider,
            platform=platform,
            listen_address=str(address),
            listen_port=port,
            endpoint=listen_endpoint(address, port),
            command_endpoint=_get(source, "CF_CMD_ENDPOINT"),
            metadata_secret=source.get("CONTAINERFLARE_METADATA_SECRET") or None,
            trusted_hops=hops,
            log_format=log_format,  # type: ignore[arg-type]
            log_level=log_level,  # type: ignore[arg-type]
        )
