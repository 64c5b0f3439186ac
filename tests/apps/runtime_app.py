"""
A small Klein app for the runtime's process tests.
"""

import gc
import json
from pathlib import Path

from klein import Klein
from twisted.internet import reactor, task
from twisted.web.resource import Resource

from containerflare import ContainerContext

app = Klein()


@app.route("/")
def index(request):
    ctx = ContainerContext.from_request(request)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(
        {
            "platform": ctx.platform.name,
            "same_context": ctx is ContainerContext.from_request(request),
            "path": ctx.metadata.path,
        }
    ).encode()


@app.route("/gc")
def gc_state(request):
    """
    How many objects the runtime froze out of the collector's reach.
    """
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"frozen": gc.get_freeze_count()}).encode()


@app.route("/slow")
def slow(request):
    """
    Answers after the file named by ?wait= exists, so a test can send
    SIGTERM while this request is certainly in flight; the body is large
    enough to need several writes.
    """
    marker = Path(request.args[b"wait"][0].decode())
    started = Path(request.args[b"started"][0].decode())
    started.write_text("in flight")

    def poll():
        if marker.exists():
            return b"x" * 200_000
        return task.deferLater(reactor, 0.05, poll)

    return poll()


def factory():
    """
    A zero-argument callable returning a resource.
    """
    root = Resource()
    root.putChild(b"", _Plain())
    return root


class _Plain(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"plain resource"


plain = _Plain()
not_an_app = 42
