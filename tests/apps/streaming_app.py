"""
Streaming handlers for tests/test_streaming_process.py.
"""

from pathlib import Path

from klein import Klein
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from containerflare import stream

app = Klein()
progress = {"pulled": 0}


async def wait_for(path):
    # Bounded: a test that forgets the file fails instead of hanging forever.
    for _ in range(600):
        if path.exists():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise TimeoutError(f"{path} never appeared")


@app.route("/stream")
def streamed(request):
    """
    The helper: the second chunk waits until the file ?gate= exists.
    """
    gate = Path(request.args[b"gate"][0].decode())

    async def chunks():
        yield b"first chunk\n"
        await wait_for(gate)
        yield b"second chunk\n"

    return stream(request, chunks(), content_type="text/plain")


@app.route("/manual")
def manual(request):
    """
    No helper: request.write, then a Deferred chain finishes the body.
    """
    gate = Path(request.args[b"gate"][0].decode())
    request.write(b"first chunk\n")
    d = task.deferLater(reactor, 0, lambda: None)
    d.addCallback(lambda _: Deferred.fromCoroutine(wait_for(gate)))
    d.addCallback(lambda _: b"second chunk\n")
    return d


@app.route("/big")
def big(request):
    """
    256 MiB from a generator; /progress tells how much of it was produced.
    """
    piece = b"x" * 65536
    progress["pulled"] = 0

    def chunks():
        for _ in range(4096):
            progress["pulled"] += len(piece)
            yield piece

    return stream(request, chunks(), content_type="application/octet-stream")


@app.route("/progress")
def report(request):
    return str(progress["pulled"])
