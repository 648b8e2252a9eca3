"""Token extraction and JWT verification: a request's credentials become an :class:`Identity`.

Both transports (Socket.IO and plain WebSocket) and the HTTP routes authenticate through
:class:`TokenVerifier`, so a token means the same thing wherever it is presented.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

import jwt


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

    @property
    def user_room(self) -> str:
        return user_room(self.user_id)


def user_room(user_id: str) -> str:
    """The reserved room every connection of a user joins; how a user is addressed cluster-wide."""
    return f"user:{user_id}"


class TokenVerifier:
    """Verifies tokens against an explicit algorithm list; ``alg: none`` is never accepted."""

    def __init__(self, key: str, algorithms: list[str]) -> None:
        self._key = key
        self._algorithms = [a for a in algorithms if a.lower() != "none"]

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError("missing token")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                options={"require": [], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("invalid token: algorithm not allowed") from None
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
        )


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
