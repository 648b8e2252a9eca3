"""Who is told about a user's ``user_status``: everyone, or only the connections watching them.

Announcing every transition to every connection (``--presence-announce all``, the default) costs
one delivery per connection per transition, so N distinct users connecting cost N²/2
deliveries: fine for a few thousand users, minutes of server time at 15,000. With
``--presence-announce watchers`` a transition reaches only the connections that asked for it:

- ``watch_presence`` with a list of user ids (or ``presence`` with ``{"users": [...], "watch":
  true}``): that connection then receives those users' ``user_status`` envelopes;
- ``watch_presence`` with ``"*"``: every user's (what a console listing everybody wants; each such
  connection costs one delivery per transition, as every connection does in ``all`` mode).

A watch is a membership of an internal per-user room, so an announcement is an ordinary room
emit: O(watchers), cluster-wide through the client manager, and the watch ends with the
connection (python-socketio removes a closed sid from every room). The rooms' names start with
a control character, which :func:`~realtime_gateway.envelope.validate_room_name` refuses, so no
client can join, leave or publish to them by name.

Watches are accepted in both modes (a client written for ``watchers`` works unchanged against an
``all`` node, and receives each transition once).
"""

from __future__ import annotations

from typing import Any

import socketio

from .config import PRESENCE_ANNOUNCE_MODES
from .connection import Connection
from .envelope import BAD_REQUEST, FORBIDDEN, ProtocolError

MAX_WATCHED = 1000
"""User ids one connection may watch (a room membership each)."""
EVERYONE = "*"
_ROOM_PREFIX = "\x1fpresence:"
EVERYONE_ROOM = "\x1fpresence*"
"""Watchers of every user (not ``_ROOM_PREFIX + "*"``: ``*`` is a valid user id)."""


def watch_room(user_id: str) -> str:
    return _ROOM_PREFIX + user_id


def parse_user_ids(content: Any, event: str, allow_everyone: bool = False) -> list[str] | None:
    """A list of at most ``MAX_WATCHED`` user ids (None for ``"*"`` when allowed)."""
    if allow_everyone and content == EVERYONE:
        return None
    if not isinstance(content, list) or not all(isinstance(u, (str, int)) and not isinstance(u, bool) for u in content):
        hint = ', or "*" for everyone' if allow_everyone else ""
        raise ProtocolError(BAD_REQUEST, f"{event}: content must be a list of user ids{hint}")
    if len(content) > MAX_WATCHED:
        raise ProtocolError(BAD_REQUEST, f"{event}: at most {MAX_WATCHED} user ids per request")
    return [str(u) for u in content]


class PresenceWatches:
    """This node's watch lists, kept as memberships of the internal presence rooms."""

    def __init__(self, sio: socketio.AsyncServer, announce: str) -> None:
        if announce not in PRESENCE_ANNOUNCE_MODES:
            raise ValueError(f"presence announce mode must be one of {PRESENCE_ANNOUNCE_MODES}, got {announce!r}")
        self.sio = sio
        self.announce = announce
        self._watching: dict[str, set[str]] = {}
        """sid -> the presence rooms it is in, to enforce the limit and to unwatch."""

    def targets(self, user_id: str) -> list[str] | None:
        """Where a transition of ``user_id`` is emitted: None (everyone) or the watcher rooms."""
        if self.announce == "all":
            return None
        return [watch_room(user_id), EVERYONE_ROOM]

    async def watch(self, connection: Connection, user_ids: list[str] | None) -> None:
        """Start watching ``user_ids`` (None: everyone); FORBIDDEN past ``MAX_WATCHED``."""
        watched = self._watching.setdefault(connection.sid, set())
        new = _rooms(user_ids) - watched
        if len((watched | new) - {EVERYONE_ROOM}) > MAX_WATCHED:
            raise ProtocolError(FORBIDDEN, f"watch limit reached ({MAX_WATCHED} users per connection)")
        for room in new:
            await self.sio.enter_room(connection.sid, room)
        watched |= new

    async def unwatch(self, connection: Connection, user_ids: list[str] | None) -> None:
        """Stop watching ``user_ids`` (None: stop watching everyone; single watches stay)."""
        watched = self._watching.get(connection.sid, set())
        for room in watched & _rooms(user_ids):
            await self.sio.leave_room(connection.sid, room)
            watched.discard(room)

    def forget(self, sid: str) -> None:
        """The connection closed (its room memberships go with it)."""
        self._watching.pop(sid, None)


def _rooms(user_ids: list[str] | None) -> set[str]:
    return {EVERYONE_ROOM} if user_ids is None else {watch_room(u) for u in user_ids}
