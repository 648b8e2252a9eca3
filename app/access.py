"""Who may join which room: the one rule every room-scoped feature asks.

Rooms matching ``--protected-rooms`` (glob patterns, :func:`fnmatch.fnmatchcase`) are open only
to tokens whose ``rooms`` claim has a pattern matching the room. A token that carries a
``rooms`` claim is confined to the rooms it matches, protected or not; a token without one joins
any unprotected room, as clients always could (``join_room "chat:room001"`` with a plain token).

Joining is where the rule is applied: posting to a room and receiving from it need membership,
so a refused client gets nothing from the room. Features that read a room without joining it
(history, room presence) must ask :meth:`RoomAccess.may_join` too. Memberships a back end
grants are the back end's decision and bypass the rule.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from .auth import Identity


class RoomAccess:
    """The room rule for one configuration of protected patterns."""

    def __init__(self, protected: list[str]) -> None:
        self.protected = tuple(protected)

    def is_protected(self, room: str) -> bool:
        return any(fnmatchcase(room, pattern) for pattern in self.protected)

    def may_join(self, identity: Identity, room: str) -> str | None:
        """None when ``identity`` may join ``room``, else the reason (for a 403), naming the rule."""
        if identity.rooms is not None:
            if any(fnmatchcase(room, pattern) for pattern in identity.rooms):
                return None
            return f"room {room!r} is not in the token's rooms claim"
        if self.is_protected(room):
            return f"room {room!r} is protected: it needs a token whose rooms claim matches it"
        return None
