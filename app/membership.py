"""Server-side membership: a back end puts a user in a room, takes them out, or disconnects them,
on every node.

Back ends decide who is in ``order:7`` or ``admins``: the rooms a client could not join itself
(protected rooms, :mod:`realtime_gateway.access`). Three cluster-wide commands carry those
decisions, published on the client manager (:meth:`~realtime_gateway.transport.fanout.FanoutManager.publish`;
on a cluster, the bus of :mod:`realtime_gateway.cluster.bus`, with its order, exactly-once and outbox
guarantees) by the emitters (:mod:`realtime_gateway.emit.emitter`) and the HTTP API
(:mod:`realtime_gateway.api.membership_api`):

- :data:`JOIN` ``{"user", "room"}``: every connection of the user joins the room, without the
  room rule (the back end decided). The session of each remembers the room as *granted* (in
  Redis too, on a cluster), so a connection that recovers its session keeps it whatever its new
  token says.
- :data:`LEAVE` ``{"user", "room"}``: they leave it.
- :data:`DISCONNECT` ``{"user"}`` or ``{"sid"}``: those connections are closed, and their
  sessions end with them (a disconnected client cannot resume and get its rooms back).

Each node applies a command to its own connections of the user (found through
:meth:`ClientEvents.user_connections`, not by walking every connection). A leave or a
disconnect also reaches the user's *dormant* sessions this node served, those of devices away
for a moment that may still resume: a device that was offline during a leave does not get the
room back on resuming. A join reaches current connections only, and connections the user opens
later are not affected: a new connection's rooms are what its token allows and what it joins.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode

from .envelope import ProtocolError, validate_room_name
from .handlers import ClientEvents
from .recovery import Session
from .transport.closing import disconnect_session

JOIN = "member.join"
LEAVE = "member.leave"
DISCONNECT = "member.disconnect"


def joinable_room(room: Any) -> str:
    """A room a back end may put users in: any valid name but the ``user:`` rooms, which are
    each user's own address. ValueError with the reason otherwise."""
    try:
        return validate_room_name(room, joining=True)
    except ProtocolError as error:
        raise ValueError(error.message) from None


def _text(payload: dict[str, Any], key: str) -> str:
    """A field of a command read from the bus (another process wrote it: checked)."""
    value = payload[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


class Membership:
    """This node's side of the membership commands (registered on the client manager)."""

    def __init__(self, events: ClientEvents) -> None:
        self.events = events
        manager = events.sio.manager
        manager.register(JOIN, self._on_join)
        manager.register(LEAVE, self._on_leave)
        manager.register(DISCONNECT, self._on_disconnect)

    def _dormant(self, user: str) -> list[Session]:
        journal = self.events.journal
        return journal.dormant(user) if journal is not None and self.events.resumable else []

    async def _on_join(self, payload: dict[str, Any]) -> None:
        user, room = _text(payload, "user"), joinable_room(payload["room"])
        for connection in self.events.user_connections(user):
            await self.events.enter_room(connection, room, granted=True)

    async def _on_leave(self, payload: dict[str, Any]) -> None:
        user, room = _text(payload, "user"), joinable_room(payload["room"])
        events, store = self.events, self.events.session_store
        for connection in events.user_connections(user):
            await events.exit_room(connection, room)
        for session in self._dormant(user):
            if room in session.rooms:
                events.journal.left(session, None, room)  # type: ignore[union-attr]
                if store is not None:
                    await store.left(session, room)

    async def _on_disconnect(self, payload: dict[str, Any]) -> None:
        events = self.events
        if "sid" in payload:
            connection = events.connections.get(_text(payload, "sid"))
            targets = [] if connection is None else [connection]
        else:
            user = _text(payload, "user")
            targets = events.user_connections(user)
            for session in self._dormant(user):
                await self._end(session)
        for connection in targets:
            if connection.session is not None:
                await self._end(connection.session)
                connection.session = None  # so the disconnect handler does not keep it for the window
            # the transport too: a client that ignores the disconnect must not stay connected
            await disconnect_session(events.sio, connection.sid, WSCloseCode.POLICY_VIOLATION, "disconnected")

    async def _end(self, session: Session) -> None:
        """No node may resume the session any more."""
        events = self.events
        events.journal.end(session)  # type: ignore[union-attr]
        if events.session_store is not None:
            await events.session_store.ended(session)
