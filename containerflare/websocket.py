"""
WebSockets under C{twistd containerflare}, with Autobahn.

Needs the C{websocket} extra: C{pip install 'containerflare[websocket]'}.
See docs/lifecycle.md.
"""

try:
    from autobahn.twisted.websocket import (
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "containerflare.websocket needs Autobahn: pip install 'containerflare[websocket]'"
    ) from e

from containerflare._websocket import GOING_AWAY, WebSocketResource

__all__ = [
    "GOING_AWAY",
    "WebSocketResource",
    "WebSocketServerFactory",
    "WebSocketServerProtocol",
]
