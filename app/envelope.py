"""The envelope every message travels in, validation of client input, and the error codes.

An envelope is ``{"type", "content", "timestamp", "id"}`` plus the optional ``from``,
``from_name``, ``room`` and ``to``. It is the one shape that reaches clients, whatever produced
the message (a client, a back end, the server itself) and whatever transport carries it.
"""

from __future__ import annotations

import itertools
import os
import re
import time
import unicodedata
from typing import Any

from .jsoncodec import dumps

Envelope = dict[str, Any]

OPTIONAL_FIELDS = ("from", "from_name", "room", "to")
USER_ROOM_PREFIX = "user:"
MAX_ROOM_NAME = 128
SID_SHAPED = re.compile(r"[A-Za-z0-9+/]{20}")
"""What python-engineio's ids look like (base64 of 15 bytes). python-socketio keeps every
connection in a room named by its sid and refuses to let others join it; refusing every name of
that shape, rather than only live sids, keeps the answer from telling which sids exist."""
SID_ROOM_MESSAGE = "room names of 20 base64 characters are reserved for connection ids"

BAD_REQUEST = 400
UNAUTHORIZED = 401
FORBIDDEN = 403
NOT_FOUND = 404
TOO_LARGE = 413
TOO_MANY = 429
UNAVAILABLE = 503


_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count()


def new_id() -> str:
    """A unique message id: a random per-process prefix and a counter (no syscall per message,
    unlike uuid4). The prefix is re-drawn in forked worker processes, see :func:`reseed_ids`."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


def reseed_ids() -> None:
    global _ID_PREFIX, _id_counter
    _ID_PREFIX = os.urandom(8).hex()
    _id_counter = itertools.count()


os.register_at_fork(after_in_child=reseed_ids)


class ProtocolError(Exception):
    """Client input the server refuses; sent back as ``{"code", "message"}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def make_envelope(type_: str, content: Any = None, **optional: Any) -> Envelope:
    """Build an envelope with a fresh id and the current time; ``None`` optionals are left out."""
    envelope: Envelope = {
        "type": type_,
        "content": content,
        "timestamp": int(time.time()),
        "id": new_id(),
    }
    for key, value in optional.items():
        if value is not None:
            envelope[key.rstrip("_")] = value
    return envelope


def error_envelope(error: ProtocolError) -> Envelope:
    return make_envelope("error", error.as_dict())


def complete_envelope(message: Any) -> Envelope:
    """Accept an envelope produced elsewhere (a back end): check it, fill in ``timestamp`` and ``id``.

    Raises ProtocolError naming the problem when it is not an object with a string ``type``.
    """
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, "message must be a JSON object")
    type_ = message.get("type")
    if not isinstance(type_, str) or not type_:
        raise ProtocolError(BAD_REQUEST, "message needs a non-empty string 'type'")
    envelope = dict(message)
    envelope.setdefault("content", None)
    if not isinstance(envelope.get("timestamp"), (int, float)):
        envelope["timestamp"] = int(time.time())
    if not isinstance(envelope.get("id"), str) or not envelope["id"]:
        envelope["id"] = new_id()
    return envelope


def validate_room_name(room: Any, *, joining: bool = False) -> str:
    """A room name: 1..128 characters, no control characters; ``user:`` rooms are reserved."""
    if not isinstance(room, str):
        raise ProtocolError(BAD_REQUEST, "room must be a string")
    if not 1 <= len(room) <= MAX_ROOM_NAME:
        raise ProtocolError(BAD_REQUEST, f"room name must be 1..{MAX_ROOM_NAME} characters")
    # printable ASCII has no control characters: only other names need the per-character check
    if not (room.isascii() and room.isprintable()) and any(unicodedata.category(ch) == "Cc" for ch in room):
        raise ProtocolError(BAD_REQUEST, "room name must not contain control characters")
    if joining and room.startswith(USER_ROOM_PREFIX):
        raise ProtocolError(FORBIDDEN, f"rooms starting with '{USER_ROOM_PREFIX}' are reserved")
    if joining and SID_SHAPED.fullmatch(room):
        raise ProtocolError(FORBIDDEN, SID_ROOM_MESSAGE)
    return room


def require_object(content: Any, event: str) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise ProtocolError(BAD_REQUEST, f"{event}: content must be an object")
    return content


def require_text(content: dict[str, Any], event: str) -> str:
    text = content.get("text")
    if not isinstance(text, str):
        raise ProtocolError(BAD_REQUEST, f"{event}: content.text must be a string")
    return text


def require_user_id(value: Any, event: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise ProtocolError(BAD_REQUEST, f"{event}: content.to must be a user id")
    return str(value)


def encode(envelope: Envelope) -> str:
    """Serialise for the wire (compact, non-ASCII kept as UTF-8)."""
    return dumps(envelope)


def event_as_envelope_text(event: str, args: list[Any]) -> str:
    """A Socket.IO event as envelope JSON: the envelope itself when the event carries one
    (the gateway's own emits), else an envelope built around the arguments."""
    payload = args[0] if len(args) == 1 else (args or None)
    if isinstance(payload, dict) and payload.get("type") == event:
        return encode(payload)
    return encode(make_envelope(event, payload))
