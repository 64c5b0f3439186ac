# -*- test-case-name: tests.test_host -*-
"""
The reference host's HTTP face: POST a request object, get the response
object. Imported only when C{--http} is given, so that importing
L{containerflare.command.host} never loads C{twisted.web.server}.
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from containerflare.command._host_dispatch import (
    PROTOCOL_ERROR,
    HostDispatcher,
    encode_json,
    error_response,
)


class HostResource(Resource):
    """
    Every path answers: POST runs the command, other methods get 405.
    """

    isLeaf = True

    def __init__(self, dispatcher: HostDispatcher, max_body: int) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._max_body = max_body

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        request.setHeader(b"content-type", b"application/json")
        if request.method != b"POST":
            request.setResponseCode(405)
            request.setHeader(b"allow", b"POST")
            return encode_json(error_response(None, PROTOCOL_ERROR, "use POST with a JSON request object"))
        assert request.content is not None
        body = request.content.read(self._max_body + 1)
        if len(body) > self._max_body:
            request.setResponseCode(413)
            reply = self._dispatcher.oversized_response(body[:128], self._max_body)
            return encode_json(reply)
        status, answer = self._dispatcher.handle_body(body)
        request.setResponseCode(status)
        return answer


def http_site(dispatcher: HostDispatcher, max_body: int) -> Site:
    """
    A site serving the HTTP transport of docs/commands.md.
    """
    site = Site(HostResource(dispatcher, max_body))
    site.displayTracebacks = False
    site.noisy = False
    return site
