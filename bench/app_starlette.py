"""
(e) The same endpoint in Starlette, served by uvicorn (asyncio loop, h11).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench._body import body


async def index(request: Request) -> Response:
    h = request.headers
    data = body(h.get("host"), h.get("user-agent"), h.get("cf-ray"))
    return Response(data, media_type="application/json")


app = Starlette(routes=[Route("/", index)])
