"""Token extraction and JWT verification: a request's credentials become an :class:`Identity`.

Both transports (Socket.IO and plain WebSocket) and the HTTP routes authenticate through
:class:`TokenVerifier`, so a token means the same thing wherever it is presented.

Strict by default: a token must carry ``exp``; ``aud``/``iss`` must match when an audience or
issuer is configured; and each algorithm family verifies with its own key (HS* with the shared
secret, RS*/ES*/PS*/EdDSA with the public key), picked from the token header's ``alg`` only
when that algorithm is configured, so a public key can never be used as an HMAC secret.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt

from .envelope import MAX_ROOM_NAME

MAX_ROOM_PATTERNS = 100
"""Most entries a token's ``rooms`` claim may list (each a room name or glob pattern)."""


class AuthError(Exception):
    """A connection or request is refused; ``message`` says why (missing / invalid / expired)."""

    code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on the other end of a connection, as asserted by a verified token."""

    user_id: str
    username: str
    expires_at: float | None = None
    token_id: str | None = None
    rooms: tuple[str, ...] | None = None
    """The token's ``rooms`` claim (glob patterns of the rooms it may join); None without one."""

    @property
    def user_room(self) -> str:
        return user_room(self.user_id)


def user_room(user_id: str) -> str:
    """The reserved room every connection of a user joins; how a user is addressed cluster-wide."""
    return f"user:{user_id}"


class TokenVerifier:
    """Verifies tokens against an explicit algorithm list; ``alg: none`` is never accepted.

    ``leeway`` (seconds) absorbs clock skew between the token issuer and this node, for ``exp``,
    ``nbf`` and ``iat`` alike; :class:`~realtime_gateway.expiry.TokenGuard` closes connections
    with the same allowance.
    """

    def __init__(
        self,
        algorithms: list[str],
        secret: str | None = None,
        public_key: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        self._keys: dict[str, str] = {}
        for algorithm in algorithms:
            key = secret if algorithm.startswith("HS") else public_key
            if algorithm.lower() != "none" and key:
                self._keys[algorithm] = key
        self._audience = audience
        self._issuer = issuer
        self.leeway = leeway
        self._options: dict[str, Any] = {
            "require": ["exp", *(["aud"] if audience else []), *(["iss"] if issuer else [])],
            "verify_aud": audience is not None,
        }

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError("missing token")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
            if key is None:
                raise AuthError("invalid token: algorithm not allowed")
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self.leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"invalid token: no {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise AuthError("invalid token: wrong audience (aud)") from None
        except jwt.InvalidIssuerError:
            raise AuthError("invalid token: wrong issuer (iss)") from None
        except jwt.InvalidSignatureError:
            raise AuthError("invalid token: bad signature") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        raw_id = claims.get("user_id", claims.get("sub"))
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or raw_id == "":
            raise AuthError("invalid token: no user_id or sub claim")
        user_id = str(raw_id)
        username = claims.get("username")
        exp = claims.get("exp")
        jti = claims.get("jti")
        return Identity(
            user_id=user_id,
            username=str(username) if username not in (None, "") else user_id,
            expires_at=float(exp) if isinstance(exp, (int, float)) else None,
            token_id=str(jti) if jti is not None else None,
            rooms=_rooms_claim(claims),
        )


def _rooms_claim(claims: dict[str, Any]) -> tuple[str, ...] | None:
    """The ``rooms`` claim, checked: a token that says something unreadable about its rooms is
    refused rather than read as "no restriction"."""
    if "rooms" not in claims:
        return None
    rooms = claims["rooms"]
    if (
        not isinstance(rooms, list)
        or len(rooms) > MAX_ROOM_PATTERNS
        or not all(isinstance(p, str) and 1 <= len(p) <= MAX_ROOM_NAME for p in rooms)
    ):
        raise AuthError(
            f"invalid token: the rooms claim must be a list of at most {MAX_ROOM_PATTERNS} "
            f"room names or patterns of 1..{MAX_ROOM_NAME} characters"
        )
    return tuple(rooms)


def mint_token(
    secret: str,
    user_id: str,
    username: str | None = None,
    ttl: float = 3600,
    algorithm: str = "HS256",
) -> str:
    """Issue an HMAC token (for the development demo token and the ``token`` CLI command)."""
    now = int(time.time())
    claims = {
        "user_id": user_id,
        "username": username or user_id,
        "iat": now,
        "exp": now + int(ttl),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=algorithm)


def token_from_request(auth: object, query_string: str, headers: Mapping[str, str]) -> str | None:
    """Find the token: Socket.IO ``auth`` payload, then ``?token=``, then ``Authorization: Bearer``."""
    if isinstance(auth, Mapping):
        token = auth.get("token")
        if isinstance(token, str) and token:
            return token
    values = parse_qs(query_string).get("token")
    if values and values[0]:
        return values[0]
    header = headers.get("Authorization") or headers.get("HTTP_AUTHORIZATION") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def api_key_matches(headers: Mapping[str, str], api_key: str) -> bool:
    """``Authorization: Bearer <api_key>``, compared in constant time: a near miss takes as long
    as a wild guess, so the key cannot be probed byte by byte."""
    scheme, _, given = headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), api_key.encode())
