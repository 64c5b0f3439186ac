# -*- test-case-name: tests.test_command_endpoint -*-
"""
Where the command channel goes: C{CommandEndpoint.parse} reads
C{CF_CMD_ENDPOINT} (or C{--command-endpoint}); C{CommandEndpoint.default}
picks one per platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from attrs import frozen

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint

Kind = Literal["stdio", "tcp", "unix", "http", "disabled"]

CLOUD_RUN_REASON = "host command channel is not available on Google Cloud Run"
TTY_REASON = (
    "stdin is a terminal, so no host is listening on stdio; set CF_CMD_ENDPOINT "
    "(e.g. tcp://127.0.0.1:7878 for `python -m containerflare.command.host --listen tcp:7878`) "
    "or CF_CMD_ENDPOINT=disabled"
)

_FORMS = "stdio, tcp://HOST:PORT, unix:///ABSOLUTE/PATH, http(s)://HOST[:PORT]/PATH, disabled or unavailable"


@frozen
class CommandEndpoint:
    """
    A parsed command endpoint.

    @ivar kind: C{"stdio"}, C{"tcp"}, C{"unix"}, C{"http"} (also HTTPS) or
        C{"disabled"}.
    @ivar host: TCP host (an IPv6 address without brackets), else L{None}.
    @ivar port: TCP port, else L{None}.
    @ivar path: UNIX socket path, else L{None}.
    @ivar url: the HTTP(S) URL, else L{None}.
    @ivar reason: why a C{disabled} endpoint is disabled, else L{None}.
    """

    kind: Kind
    host: str | None = None
    port: int | None = None
    path: str | None = None
    url: str | None = None
    reason: str | None = None

    @classmethod
    def parse(cls, text: str) -> CommandEndpoint:
        """
        Read an endpoint: C{stdio}, C{tcp://host:port} (IPv6 in brackets),
        C{unix:///absolute/path}, C{http://...}, C{https://...},
        C{disabled} or C{unavailable}.

        @raise ValueError: anything else; the message names the value.
        """
        if not isinstance(text, str):
            raise ValueError(f"invalid command endpoint {text!r}: expected a string")
        stripped = text.strip()
        word = stripped.lower()
        if word == "stdio":
            return cls("stdio")
        if word in ("disabled", "unavailable"):
            return cls("disabled", reason=f"the command channel is {word} (endpoint {stripped!r})")
        scheme = word.partition("://")[0] if "://" in word else ""
        try:
            if scheme == "tcp":
                return cls._tcp(stripped)
            if scheme == "unix":
                return cls._unix(stripped)
            if scheme in ("http", "https"):
                return cls._http(stripped)
        except ValueError as e:
            raise ValueError(f"invalid command endpoint {text!r}: {e}") from None
        raise ValueError(f"invalid command endpoint {text!r}: expected {_FORMS}")

    @classmethod
    def _tcp(cls, text: str) -> CommandEndpoint:
        parts = urlsplit(text)
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError("expected tcp://HOST:PORT with nothing after the port")
        host = parts.hostname
        port = parts.port  # ValueError when out of range or not a number
        if not host:
            raise ValueError("no host (write IPv6 addresses in brackets: tcp://[::1]:7878)")
        if port is None or port == 0:
            raise ValueError("no port")
        netloc_host = parts.netloc.rpartition(":")[0]
        if ":" in host and not netloc_host.startswith("["):
            raise ValueError("write IPv6 addresses in brackets: tcp://[::1]:7878")
        return cls("tcp", host=host, port=port)

    @classmethod
    def _unix(cls, text: str) -> CommandEndpoint:
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise ValueError("expected unix:///ABSOLUTE/PATH (three slashes)")
        if "\0" in path:
            raise ValueError("the path contains a NUL byte")
        return cls("unix", path=path)

    @classmethod
    def _http(cls, text: str) -> CommandEndpoint:
        parts = urlsplit(text)
        if not parts.hostname:
            raise ValueError("no host")
        parts.port  # noqa: B018  (raises ValueError for a bad port)
        return cls("http", url=text)

    @classmethod
    def default(cls, platform_name: str, *, stdin_is_tty: bool) -> CommandEndpoint:
        """
        The endpoint to use when none is configured: stdio on Cloudflare;
        disabled on Cloud Run; on any other platform stdio unless stdin is
        a terminal (then nobody can be answering on it).
        """
        if platform_name == "cloudflare":
            return cls("stdio")
        if platform_name == "cloud_run":
            return cls("disabled", reason=CLOUD_RUN_REASON)
        if stdin_is_tty:
            return cls("disabled", reason=TTY_REASON)
        return cls("stdio")

    @classmethod
    def disabled(cls, reason: str) -> CommandEndpoint:
        """
        An endpoint that is disabled for C{reason}.
        """
        return cls("disabled", reason=reason)

    def client_endpoint(self, reactor: object) -> IStreamClientEndpoint:
        """
        The Twisted client endpoint of a C{tcp} or C{unix} endpoint.

        @raise ValueError: for other kinds.
        """
        from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint

        if self.kind == "tcp":
            assert self.host is not None and self.port is not None
            return HostnameEndpoint(reactor, self.host, self.port)  # type: ignore[arg-type]
        if self.kind == "unix":
            assert self.path is not None
            return UNIXClientEndpoint(reactor, self.path)  # type: ignore[arg-type]
        raise ValueError(f"a {self.kind} endpoint has no stream client endpoint")

    def __str__(self) -> str:
        if self.kind == "tcp":
            host = f"[{self.host}]" if self.host and ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        if self.kind == "unix":
            return f"unix://{self.path}"
        if self.kind == "http":
            return str(self.url)
        return self.kind


__all__ = ["CommandEndpoint"]
