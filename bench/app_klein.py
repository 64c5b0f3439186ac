"""
(b), (c), (d): the same Klein app, bare or under C{twistd containerflare}.

C{make_app(read_metadata=True)} is what twistd serves
(C{--app bench.app_klein:containerflare_app}): the handler builds the body
from C{ContainerContext.from_request(request).metadata} (its host,
user_agent and request_id, which on Cloudflare is the cf-ray header) on
every request; the bare server reads the same three headers itself, with
C{make_app(read_metadata=False)}, so that containerflare is not even
imported there.  Both give the same body.
"""

from __future__ import annotations

from klein import Klein

from bench._body import body


def _h(request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


def make_app(read_metadata: bool, as_str: bool = False) -> Klein:
    """
    @param read_metadata: read the request's containerflare metadata.
    @param as_str: return a C{str} (Klein then answers chunked) instead of
        bytes with a Content-Length: the variant the issue asks to compare.
    """
    app = Klein()
    if read_metadata:
        from containerflare import ContainerContext

    @app.route("/")
    def index(request):
        if read_metadata:
            metadata = ContainerContext.from_request(request).metadata
            data = body(metadata.host, metadata.user_agent, metadata.request_id)
        else:
            data = body(_h(request, b"host"), _h(request, b"user-agent"), _h(request, b"cf-ray"))
        request.setHeader(b"content-type", b"application/json")
        if as_str:
            return data.decode("utf-8")
        request.setHeader(b"content-length", b"%d" % len(data))
        return data

    return app


def containerflare_app() -> Klein:
    return make_app(read_metadata=True)


def raw_headers_app() -> Klein:
    """
    The bare app, for (c0): C{twistd containerflare} serving a handler that
    reads the three headers itself, so that the runtime's own cost is
    measured apart from the metadata's.
    """
    return make_app(read_metadata=False)


def bare_resource():
    """
    The bare app's resource, for C{twistd web --class} (cold start of twistd
    itself).
    """
    return make_app(read_metadata=False).resource()
