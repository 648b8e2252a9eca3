"""The Engine.IO v4 endpoint (``/socket.io/``): every request, every method, one handler.

:func:`handle_engineio` checks a request the way the Engine.IO protocol says (``EIO=4``, a
known ``transport``, a known ``sid``, ``GET`` for a handshake, the allowed origins) and hands it
to the transport that serves it: a new WebSocket-only session or the upgrade of a long-polling
one (:mod:`realtime_gateway.transport.engine_ws`), or a long-polling request
(:mod:`realtime_gateway.transport.engine_polling`). Requests the protocol refuses get 400 with the
gateway's error body (clients only look at the status), never aiohttp's 405. CORS follows
``--cors-origins``: an allowed ``Origin`` is echoed with credentials allowed, any other is
refused with 400, preflights (``OPTIONS``) are answered here. A handshake is counted against the
connection limits first (:func:`realtime_gateway.transport.ws_session.admit`: 429 or 503 when refused).

python-engineio is not on this path: python-socketio's ``AsyncServer`` still creates its
Engine.IO server object, and the gateway uses it only as the session registry
(``eio.sockets``, ``eio.generate_id()``), which python-socketio reads when it sends.
"""

from __future__ import annotations

from aiohttp import web

from ..api.http_errors import ENGINE_IO_PATH, error_response
from ..appkeys import SETTINGS_KEY, SIO_KEY
from ..config import Settings
from .engine_polling import PollingSocket
from .engine_ws import EngineSocket, arm_connect_timeout, refuse_websocket
from .ws_session import admit, minimal_environ
from .ws_transport import detached_response

TRANSPORTS = ("polling", "websocket")


def origin_allowed(origin: str | None, allowed: list[str] | str) -> bool:
    return allowed == "*" or origin is None or origin in allowed


def install_engineio(app: web.Application, path: str = ENGINE_IO_PATH) -> None:
    """Serve Engine.IO at ``path`` (every method: the protocol answers wrong ones with 400)."""
    app.router.add_route("*", path, handle_engineio)


async def handle_engineio(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS_KEY]
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, settings.cors_origins):
        return error_response(400, "origin not allowed")
    cors = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"} if origin else {}
    if request.method == "OPTIONS":
        headers = {**cors, "Access-Control-Allow-Methods": "OPTIONS, GET, POST"}
        if "Access-Control-Request-Headers" in request.headers:
            headers["Access-Control-Allow-Headers"] = request.headers["Access-Control-Request-Headers"]
        return web.Response(status=204, headers=headers)
    response = await _dispatch(request, settings)
    if cors and not response.prepared:  # a WebSocket has sent its headers already
        response.headers.update(cors)
    return response


async def _dispatch(request: web.Request, settings: Settings) -> web.StreamResponse:
    sio = request.app[SIO_KEY]
    query = request.query
    if query.get("EIO") != "4":
        return error_response(400, "unsupported protocol version (EIO=4 expected)")
    transport = query.get("transport")
    if transport not in TRANSPORTS or transport not in settings.transports:
        return error_response(400, f"unknown transport {transport!r}")
    websocket = transport == "websocket"
    if websocket and (request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket"):
        return error_response(400, "transport=websocket needs a WebSocket upgrade request")
    sid = query.get("sid")
    if sid is None:
        if request.method != "GET":
            return error_response(400, "a handshake is a GET request")
        environ = minimal_environ(request)
        if websocket:
            return await EngineSocket.accept(request, sio, environ)
        refusal = admit(request, environ)  # connection limits (WebSocket sessions: in accept)
        if refusal is not None:
            return refusal
        polling = PollingSocket(sio, settings)
        response = await polling.open(environ, ["websocket"] if "websocket" in settings.transports else [])
        arm_connect_timeout(polling)
        return response

    sock = sio.eio.sockets.get(sid)
    if isinstance(sock, PollingSocket):
        sock.check_deadline()
    if sock is None or sock.closed:
        return error_response(400, "unknown session id")
    if not isinstance(sock, PollingSocket):
        if websocket:  # a second WebSocket for an upgraded session
            return await refuse_websocket(request)
        return error_response(400, "this session has upgraded to WebSocket")
    if websocket:
        return await _upgrade(request, sock)
    if request.method == "GET":
        return await sock.poll(request)
    if request.method == "POST":
        return await sock.post(request)
    return error_response(400, f"method {request.method} is not part of Engine.IO long-polling")


async def _upgrade(request: web.Request, polling: PollingSocket) -> web.StreamResponse:
    if polling.upgrading or polling.closing:
        return await refuse_websocket(request)
    polling.upgrading = True
    ws, sock = await EngineSocket.prepare(request, polling.sio, sid=polling.sid)
    if sock is None:
        polling.resume()
        return ws if isinstance(ws, web.StreamResponse) else detached_response()
    return await sock.keep(ws, sock.take_over(polling))
