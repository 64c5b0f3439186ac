"""
The site's drain and upgraded connections (WebSockets), in memory; the real
thing, with Autobahn and sockets, is in test_websocket_process.py and
tests/e2e/test_worker_websocket.py.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource

import containerflare.websocket as public
from containerflare._site import ContainerSite, _Request
from containerflare._websocket import GOING_AWAY, WebSocketResource


class Connection:
    """
    The site's view of an upgraded connection (what _websocket._Upgraded is).
    """

    def __init__(self) -> None:
        self.closed: Deferred[None] = Deferred()
        self.calls: list[str] = []

    def go_away(self) -> None:
        self.calls.append("go_away")

    def abort(self) -> None:
        self.calls.append("abort")


def upgraded_site() -> tuple[ContainerSite, Clock, Connection]:
    clock = Clock()
    site = ContainerSite(Resource(), clock=clock)
    request: Any = _Request.__new__(_Request)
    request._cf_channel = None
    site._inflight[id(request)] = request
    connection = Connection()
    site.upgraded(request, connection)
    assert site.inflight == 0  # no longer an HTTP request in flight
    return site, clock, connection


def fired(d: Deferred[Any]) -> bool:
    out: list[Any] = []
    d.addBoth(out.append)
    return bool(out)


def test_drain_asks_websockets_to_go_away_and_waits_for_them() -> None:
    site, clock, connection = upgraded_site()
    drained = site.drain(10)
    assert connection.calls == ["go_away"]
    assert not fired(drained)
    connection.closed.callback(None)
    assert fired(drained)
    assert clock.getDelayedCalls() == []


def test_grace_period_aborts_websockets_that_stay_open() -> None:
    site, clock, connection = upgraded_site()
    drained = site.drain(10)
    clock.advance(10)
    assert connection.calls == ["go_away", "abort"]
    assert fired(drained)


def test_websocket_opened_while_draining_goes_away_at_once() -> None:
    clock = Clock()
    site = ContainerSite(Resource(), clock=clock)
    site.drain(10)
    request: Any = _Request.__new__(_Request)
    request._cf_channel = None
    connection = Connection()
    site.upgraded(request, connection)
    assert connection.calls == ["go_away"]
    connection.closed.callback(None)


def test_public_names() -> None:
    assert public.WebSocketResource is WebSocketResource
    assert public.GOING_AWAY == GOING_AWAY == 1001
    from autobahn.twisted.websocket import WebSocketServerFactory

    assert public.WebSocketServerFactory is WebSocketServerFactory
