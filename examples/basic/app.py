"""
The containerflare example app: one Klein app for Cloudflare Containers and
Google Cloud Run.

Run it with C{twistd -n --pidfile= containerflare --app app:app}.

Routes:
  - C{GET /}: C{{"message": "it works!", "platform": ..., "metadata": ...}}
  - C{GET /healthz}: liveness, no command involved
  - C{GET /kv/<key>}, C{PUT /kv/<key>} (body: the value, UTF-8 text; C{?ttl=}
    seconds, at least 60): Workers KV
  - C{GET /d1?prefix=...}, C{POST /d1} (body C{{"text": ...}}): a notes table
    in D1, with bound parameters
  - C{GET /r2/<key>}, C{PUT /r2/<key>} (body: any bytes): R2 objects
  - C{POST /queue} (body: any JSON): sends it to the Queue

The storage routes reach the Worker's bindings through the command channel
(C{ctx.invoke}); where there is none (Cloud Run, or no C{CF_CMD_ENDPOINT}
locally) they answer 503 with the reason.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from containerflare import ContainerContext
from containerflare.command import CommandError, CommandFailure, Unavailable

# Binding names, as in wrangler.jsonc (and CONTAINERFLARE_ALLOWED_BINDINGS there).
KV = "KV"
DB = "DB"
BUCKET = "BUCKET"
QUEUE = "QUEUE"

MAX_BODY = 1024 * 1024

app = Klein()


def _bytes(request: IRequest, data: bytes, content_type: bytes) -> bytes:
    # With a Content-Length the answer is sent in one piece, not chunked.
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % len(data))
    return data


def _json(request: IRequest, body: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    return _bytes(request, json.dumps(body).encode("utf-8"), b"application/json")


def _body(request: IRequest) -> bytes:
    return request.content.read(MAX_BODY + 1)  # type: ignore[attr-defined,no-any-return]


Handler = Callable[..., Awaitable[bytes]]


def _commands(handler: Handler) -> Handler:
    """
    Turn command channel errors into JSON answers: 503 when there is no
    channel (the reason says why), 502 when the host refused the command.
    """

    @functools.wraps(handler)
    async def wrapper(request: IRequest, *args: Any, **kwargs: Any) -> bytes:
        try:
            return await handler(request, *args, **kwargs)
        except Unavailable as e:
            return _json(request, {"error": "commands unavailable", "reason": e.reason}, 503)
        except CommandFailure as e:
            return _json(
                request,
                {"error": "command failed", "command": e.command, "code": e.code, "diagnostic": e.diagnostic},
                502,
            )
        except CommandError as e:
            return _json(request, {"error": "command channel error", "reason": str(e)}, 503)

    return wrapper


@app.route("/", methods=["GET", "HEAD"])
def index(request: IRequest) -> bytes:
    ctx = ContainerContext.from_request(request)
    return _json(
        request,
        {"message": "it works!", "platform": ctx.platform.name, "metadata": ctx.metadata.to_dict()},
    )


@app.route("/healthz", methods=["GET", "HEAD"])
def healthz(request: IRequest) -> bytes:
    return _json(request, {"status": "ok"})


@app.route("/kv/<path:key>", methods=["GET"])
@_commands
async def kv_get(request: IRequest, key: str) -> bytes:
    ctx = ContainerContext.from_request(request)
    reply = await ctx.invoke("kv.get", {"binding": KV, "key": key})
    if reply["value"] is None:
        return _json(request, {"error": "not found", "key": key}, 404)
    return _json(request, {"key": key, "value": reply["value"], "metadata": reply["metadata"]})


@app.route("/kv/<path:key>", methods=["PUT"])
@_commands
async def kv_put(request: IRequest, key: str) -> bytes:
    ctx = ContainerContext.from_request(request)
    raw = _body(request)
    if len(raw) > MAX_BODY:
        return _json(request, {"error": f"value over {MAX_BODY} bytes"}, 413)
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _json(request, {"error": "the value must be UTF-8 text"}, 400)
    payload: dict[str, Any] = {"binding": KV, "key": key, "value": value}
    ttl = request.args.get(b"ttl")  # type: ignore[attr-defined]
    if ttl:
        try:
            payload["expiration_ttl"] = int(ttl[0])
        except ValueError:
            return _json(request, {"error": "ttl must be an integer (seconds, at least 60)"}, 400)
    await ctx.invoke("kv.put", payload)
    return _json(request, {"key": key, "stored": True})


_NOTES_TABLE = (
    "CREATE TABLE IF NOT EXISTS notes ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL)"
)


@app.route("/d1", methods=["GET"])
@_commands
async def d1_list(request: IRequest) -> bytes:
    ctx = ContainerContext.from_request(request)
    prefix = request.args.get(b"prefix", [b""])[0].decode("utf-8", "replace")  # type: ignore[attr-defined]
    results = await ctx.invoke(
        "d1.batch",
        {
            "binding": DB,
            "statements": [
                {"sql": _NOTES_TABLE},
                {
                    "sql": "SELECT id, text FROM notes WHERE substr(text, 1, length(?1)) = ?1 ORDER BY id",
                    "params": [prefix],
                },
            ],
        },
    )
    return _json(request, {"notes": results[1]["results"]})


@app.route("/d1", methods=["POST"])
@_commands
async def d1_add(request: IRequest) -> bytes:
    ctx = ContainerContext.from_request(request)
    try:
        note = json.loads(_body(request))
    except ValueError:
        note = None
    if not isinstance(note, dict) or not isinstance(note.get("text"), str):
        return _json(request, {"error": 'expected a JSON body {"text": "..."}'}, 400)
    results = await ctx.invoke(
        "d1.batch",
        {
            "binding": DB,
            "statements": [
                {"sql": _NOTES_TABLE},
                {"sql": "INSERT INTO notes (text) VALUES (?)", "params": [note["text"]]},
            ],
        },
    )
    return _json(request, {"id": results[1]["meta"]["last_row_id"], "text": note["text"]}, 201)


@app.route("/r2/<path:key>", methods=["GET"])
@_commands
async def r2_get(request: IRequest, key: str) -> bytes:
    ctx = ContainerContext.from_request(request)
    obj = await ctx.invoke("r2.get", {"binding": BUCKET, "key": key})
    if obj is None:
        return _json(request, {"error": "not found", "key": key}, 404)
    try:
        data = base64.b64decode(obj["body_base64"], validate=True)
    except (binascii.Error, KeyError, TypeError):
        return _json(request, {"error": "the host sent an invalid object body"}, 502)
    request.setHeader(b"etag", f'"{obj["etag"]}"'.encode("ascii"))
    return _bytes(request, data, (obj.get("content_type") or "application/octet-stream").encode("latin-1"))


@app.route("/r2/<path:key>", methods=["PUT"])
@_commands
async def r2_put(request: IRequest, key: str) -> bytes:
    ctx = ContainerContext.from_request(request)
    data = _body(request)
    if len(data) > MAX_BODY:
        return _json(request, {"error": f"object over {MAX_BODY} bytes"}, 413)
    content_type = request.getHeader(b"content-type")
    description = await ctx.invoke(
        "r2.put",
        {
            "binding": BUCKET,
            "key": key,
            "body_base64": base64.b64encode(data).decode("ascii"),
            "content_type": content_type.decode("latin-1") if content_type else None,
        },
    )
    return _json(request, description)


@app.route("/queue", methods=["POST"])
@_commands
async def queue_send(request: IRequest) -> bytes:
    ctx = ContainerContext.from_request(request)
    try:
        body = json.loads(_body(request))
    except ValueError:
        return _json(request, {"error": "the body must be JSON"}, 400)
    await ctx.invoke("queue.send", {"binding": QUEUE, "body": body})
    return _json(request, {"queued": True}, 202)
