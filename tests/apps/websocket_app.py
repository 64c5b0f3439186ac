"""
A WebSocket route for tests/test_websocket_process.py (and the Worker tests).
"""

import json
import os
from pathlib import Path

from klein import Klein

from containerflare import ContainerContext
from containerflare.websocket import (
    WebSocketResource,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)

JOURNAL = Path(os.environ.get("WEBSOCKET_JOURNAL", "ws-journal"))


def note(line):
    with JOURNAL.open("a") as f:
        f.write(line + "\n")


class Echo(WebSocketServerProtocol):
    def onOpen(self):
        ctx = self.container_context
        hello = {"hello": ctx.metadata.to_dict(), "platform": ctx.platform.name}
        self.sendMessage(json.dumps(hello).encode())

    def onMessage(self, payload, isBinary):
        self.sendMessage(b"echo: " + payload, isBinary)

    def onClose(self, wasClean, code, reason):
        note(f"closed clean={wasClean} code={code}")


factory = WebSocketServerFactory()
factory.protocol = Echo
app = Klein()


@app.route("/ws")
def ws(request):
    return WebSocketResource(factory)


@app.route("/")
def index(request):
    return ContainerContext.from_request(request).platform.name
