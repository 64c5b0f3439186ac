"""
(a) A bare twisted.web resource.
"""

from __future__ import annotations

from twisted.web.resource import Resource

from bench._body import body


def _h(request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


class Index(Resource):
    isLeaf = True

    def render_GET(self, request):  # noqa: N802
        data = body(_h(request, b"host"), _h(request, b"user-agent"), _h(request, b"cf-ray"))
        request.setHeader(b"content-type", b"application/json")
        # twisted.web adds Content-Length to a bytes return.
        return data


resource = Index()
