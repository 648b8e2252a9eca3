"""Connection limits: per node, per client address and per user.

One :class:`ConnectionLimits` per node counts sessions. A transport asks :meth:`~ConnectionLimits.admit`
before it accepts a session (before the WebSocket upgrade, or at an Engine.IO handshake) and
gets a :class:`Ticket`, or a :class:`Refusal` to answer with (HTTP 503 when the node is full,
429 when one address or one user has too many). The user is known before the upgrade on
``/ws``; on Socket.IO it is known at the CONNECT packet, where :meth:`~ConnectionLimits.claim_user`
adds it to the session's ticket (a refusal then becomes a ``connect_error``). The ticket lives in
the session's environ; :class:`~realtime_gateway.server.GatewayServer` releases it
(:meth:`~ConnectionLimits.release`) when the session ends, whichever transport carried it, and a
transport releases it itself when the session never started (the client vanished during the
upgrade).

A limit of 0 means unlimited. Sessions that exist already are never affected by a limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings

NODE_FULL = 503
TOO_MANY = 429


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a session is not admitted: ``status`` is the HTTP status (and the Socket.IO
    ``connect_error`` code)."""

    status: int
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"code": self.status, "message": self.message}


class Ticket:
    """What one admitted session counts against: the node, its address, and its user once known."""

    __slots__ = ("counted", "ip", "user")

    def __init__(self, ip: str | None, user: str | None) -> None:
        self.ip = ip
        self.user = user
        self.counted = True


class ConnectionLimits:
    """Counts sessions and refuses new ones past ``--max-connections``,
    ``--max-connections-per-ip`` and ``--max-connections-per-user``."""

    def __init__(self, settings: Settings) -> None:
        self.max_total = settings.max_connections
        self.max_per_ip = settings.max_connections_per_ip
        self.max_per_user = settings.max_connections_per_user
        self.total = 0
        self.by_ip: dict[str, int] = {}
        self.by_user: dict[str, int] = {}

    def admit(self, ip: str | None, user: str | None = None) -> Ticket | Refusal:
        """Count a new session (``ip`` None: address unknown, not limited by it)."""
        if self.max_total and self.total >= self.max_total:
            return Refusal(NODE_FULL, f"this node is full ({self.max_total} connections); try again later")
        if ip is not None and self.max_per_ip and self.by_ip.get(ip, 0) >= self.max_per_ip:
            return Refusal(TOO_MANY, f"too many connections from this address (limit {self.max_per_ip})")
        refusal = self._user_refusal(user)
        if refusal is not None:
            return refusal
        self.total += 1
        if ip is not None:
            self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        if user is not None:
            self.by_user[user] = self.by_user.get(user, 0) + 1
        return Ticket(ip, user)

    def claim_user(self, ticket: Ticket, user: str) -> Refusal | None:
        """Count the session of ``ticket`` against ``user`` (at Socket.IO CONNECT); a session
        that connects again as another user moves its count."""
        if ticket.user == user or not ticket.counted:
            return None
        refusal = self._user_refusal(user)
        if refusal is not None:
            return refusal
        if ticket.user is not None:
            _decrement(self.by_user, ticket.user)
        ticket.user = user
        self.by_user[user] = self.by_user.get(user, 0) + 1
        return None

    def release(self, ticket: Ticket) -> None:
        """The session has ended (idempotent)."""
        if not ticket.counted:
            return
        ticket.counted = False
        self.total -= 1
        if ticket.ip is not None:
            _decrement(self.by_ip, ticket.ip)
        if ticket.user is not None:
            _decrement(self.by_user, ticket.user)

    def _user_refusal(self, user: str | None) -> Refusal | None:
        if user is not None and self.max_per_user and self.by_user.get(user, 0) >= self.max_per_user:
            return Refusal(TOO_MANY, f"too many connections for this user (limit {self.max_per_user})")
        return None


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
