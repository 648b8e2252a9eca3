"""The back-end HTTP API of server-side membership (:mod:`realtime_gateway.membership`).

Requests (``Authorization: Bearer <API_KEY>``, JSON bodies)::

    POST /api/rooms/join   {"user": "42", "room": "order:7"}
    POST /api/rooms/leave  {"user": "42", "room": "order:7"}
    POST /api/disconnect   {"user": "42"}  or  {"sid": "<a connection's sid>"}

Every current connection of the user (or the one connection), on every node, joins, leaves or
is closed. Answers: ``202`` with the request's user/room/sid once the command is applied on this
node and on its way to the others (in Redis, or in this node's outbox while Redis is
unreachable); ``503`` when the cluster bus refuses it (then it was applied nowhere); ``401`` for
a missing or wrong key; ``400`` whose ``error.field`` names the bad field. The routes exist only
when an API key is configured.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..appkeys import EMITTER_KEY
from ..emit.emitter import check_sid, check_user_id
from ..membership import joinable_room
from .publish_api import BadField, accepted, authorized_body, bad_request, field_value

ONE_TARGET = 'must be {"user": id} or {"sid": sid}'


async def join(request: web.Request) -> web.Response:
    return await _room_command(request, leave=False)


async def leave(request: web.Request) -> web.Response:
    return await _room_command(request, leave=True)


async def _room_command(request: web.Request, leave: bool) -> web.Response:
    body = await authorized_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        user = field_value(check_user_id, "user", body.get("user"))
        room = field_value(joinable_room, "room", body.get("room"))
    except BadField as bad:
        return bad_request(bad)
    emitter = request.app[EMITTER_KEY]
    command = emitter.leave_room if leave else emitter.join_room
    return await accepted(command(user, room), lambda _: {"user": user, "room": room})


async def disconnect(request: web.Request) -> web.Response:
    body = await authorized_body(request)
    if isinstance(body, web.Response):
        return body
    emitter = request.app[EMITTER_KEY]
    answer: dict[str, Any]
    try:
        if ("user" in body) == ("sid" in body):
            raise BadField("body", ONE_TARGET)
        if "user" in body:
            answer = {"user": field_value(check_user_id, "user", body["user"])}
            command = emitter.disconnect_user(answer["user"])
        else:
            answer = {"sid": field_value(check_sid, "sid", body["sid"])}
            command = emitter.disconnect_sid(answer["sid"])
    except BadField as bad:
        return bad_request(bad)
    return await accepted(command, lambda _: answer)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/rooms/join", join),
        web.post("/api/rooms/leave", leave),
        web.post("/api/disconnect", disconnect),
    ]
