"""The one error body of the gateway's HTTP API.

Every endpoint answers an error the same way, so a client has one thing to parse::

    {"error": {"code": 400, "message": "target.room: ...", "field": "target.room"}}

``code`` is the HTTP status (the same numbers the WebSocket protocol uses in ``error``
envelopes and acks); ``field``, when present, names the part of the request to fix. Errors
aiohttp raises itself (unknown route, wrong method, body too large) take the same shape through
:func:`error_middleware`. The Engine.IO endpoint ``/socket.io/`` is exempt: its error answers are
fixed by the Engine.IO protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

ENGINE_IO_PATH = "/socket.io/"


def error_body(status: int, message: str, field: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": status, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """An HTTP error answer in the documented shape."""
    return web.json_response(error_body(status, message, field), status=status, headers=headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own HTTP errors (404, 405, 413...) as the documented JSON body."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith(ENGINE_IO_PATH):
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return error_response(exc.status, exc.reason, headers=headers)
