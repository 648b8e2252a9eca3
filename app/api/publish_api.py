"""The back-end HTTP API: ``POST /api/publish`` sends a message to clients, ``GET /api/history``
reads a room's recent messages; services in any language use it.

Request (``Authorization: Bearer <API_KEY>``)::

    {"target": {"all": true} | {"user": "42"} | {"room": "lobby"}, "type": "order_shipped", "content": ...}

Answers: ``202 {"id"}`` once the message is on its way: in Redis, or in this node's outbox
while Redis is unreachable (:mod:`realtime_gateway.cluster.bus`); ``503`` when the outbox refuses it
(then it was delivered nowhere); ``401`` for a missing or wrong key; ``400`` whose
``error.field`` names the first bad field; ``413`` above ``MAX_MESSAGE_BYTES``.

``GET /api/history?room=lobby&limit=50&before=<offset>`` (same key) answers
``200 {"room", "messages"}``: the room's last messages, oldest first, each with its ``offset``
(``user:<id>`` rooms hold what was sent to that user). The routes exist only when an API key is
configured, so an unconfigured gateway answers 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from ..appkeys import EMITTER_KEY, EVENTS_KEY, SETTINGS_KEY
from ..auth import api_key_matches
from ..emit.emitter import EmitError, InProcessEmitter, check_room, check_type, check_user_id
from ..envelope import BAD_REQUEST, NOT_FOUND, TOO_LARGE, UNAUTHORIZED, UNAVAILABLE
from ..history import BadHistoryRequest, history_request
from ..jsoncodec import loads
from .http_errors import error_response

TARGETS = 'must be one of {"all": true}, {"user": id}, {"room": name}'


class BadField(Exception):
    """A malformed request body; ``field`` names the part to fix (``target.room``, ``type``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def field_value(check: Callable[[Any], Any], field: str, value: Any) -> Any:
    """``check(value)``, its ValueError as a :class:`BadField` naming ``field``."""
    try:
        return check(value)
    except ValueError as exc:
        raise BadField(field, str(exc)) from None


def _sender(emitter: InProcessEmitter, target: Any) -> Callable[[str, Any], Awaitable[str]]:
    """The emitter operation a ``target`` object selects, with its address bound."""
    if isinstance(target, dict) and len(target) == 1:
        if target.get("all") is True:
            return emitter.broadcast
        if "user" in target:
            return partial(emitter.send_to_user, field_value(check_user_id, "target.user", target["user"]))
        if "room" in target:
            return partial(emitter.broadcast_to_room, field_value(check_room, "target.room", target["room"]))
    raise BadField("target", TARGETS)


async def _read_json(request: web.Request, limit: int) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.read()  # enforces client_max_size for bodies sent without a length
    try:
        return loads(raw)  # the gateway codec: no NaN, which no client could read
    except ValueError:
        raise BadField("body", "not valid JSON") from None


async def authorized_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The JSON object a back-end request (``POST``, API key) carries, or the answer refusing
    it: 401 for the key, 400 (field ``body``), 413 above ``MAX_MESSAGE_BYTES``."""
    settings = request.app[SETTINGS_KEY]
    assert settings.api_key is not None  # the routes are only added when a key is configured
    if not api_key_matches(request.headers, settings.api_key):
        return error_response(UNAUTHORIZED, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
    try:
        body = await _read_json(request, settings.max_message_bytes)
    except BadField as bad:
        return bad_request(bad)
    except web.HTTPRequestEntityTooLarge:
        return error_response(TOO_LARGE, f"body larger than {settings.max_message_bytes} bytes")
    if not isinstance(body, dict):
        return bad_request(BadField("body", "must be a JSON object"))
    return body


def bad_request(bad: BadField) -> web.Response:
    return error_response(BAD_REQUEST, str(bad), field=bad.field)


async def accepted(sending: Awaitable[Any], answer: Callable[[Any], dict[str, Any]]) -> web.Response:
    """202 with ``answer(result)`` once the emitter took it; 503 when the cluster bus refused
    it (then it happened nowhere: the caller retries)."""
    try:
        result = await sending
    except EmitError as refused:
        return error_response(UNAVAILABLE, str(refused))
    return web.json_response(answer(result), status=202)


async def publish(request: web.Request) -> web.Response:
    body = await authorized_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        send = _sender(request.app[EMITTER_KEY], body.get("target"))
        type_ = field_value(check_type, "type", body.get("type"))
    except BadField as bad:
        return bad_request(bad)
    return await accepted(send(type_, body.get("content")), lambda message_id: {"id": message_id})


async def history(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    assert settings.api_key is not None
    if not api_key_matches(request.headers, settings.api_key):
        return error_response(UNAUTHORIZED, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
    store = request.app[EVENTS_KEY].history_store
    if store is None:
        return error_response(NOT_FOUND, "history is off on this gateway (--history-size 0)")
    query = request.query
    try:
        limit = int(query["limit"]) if "limit" in query else None
    except ValueError:
        return error_response(BAD_REQUEST, "limit must be an integer", field="limit")
    content: dict[str, Any] = {"room": query.get("room"), "before": query.get("before") or None}
    if limit is not None:
        content["limit"] = limit
    try:
        room, limit, before = history_request(content)
    except BadHistoryRequest as bad:
        return error_response(bad.code, bad.message, field=bad.field)
    try:
        messages = await store.read(room, limit, before)
    except Exception as exc:  # the cluster store is Redis: unreachable is a 503, not a crash
        return error_response(UNAVAILABLE, f"history unavailable: {exc}")
    return web.json_response({"room": room, "messages": messages})
