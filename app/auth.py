"""Token extraction and JWT verification: a request's credentials become an :class:`Identity`.

Both transports (Socket.IO and plain WebSocket) and the HTTP routes authenticate through
:class:`TokenVerifier`, so a token means the same thing wherever it is presented.

Strict by default: a token must carry ``exp``; ``aud``/``iss`` must match when an audience or
issuer is configured; and each algorithm family verifies with its own key (HS* with the shared
secret, RS*/ES*/PS*/EdDSA with the public key), picked from the token header's ``alg`` only
when that algorithm is configured, so a public key can never be used as an HMAC secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from jwt.algorithms import Algorithm

from .envelope import MAX_ROOM_NAME
from .jsoncodec import loads

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

    Every connection presents a token, so verification is on the connect path: the compact JWS
    is split and decoded here, the signature checked with PyJWT's algorithm objects and a key
    prepared once per algorithm (PyJWT's ``jwt.decode`` re-prepares the key, parses the header
    twice and merges its options per call: about 100 µs of a connection's ~700), and the
    registered claims are checked by :meth:`check_claims`, the same way for every algorithm.
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
        self._keys: dict[str, tuple[Algorithm, Any]] = {}
        for name in algorithms:
            key = secret if name.startswith("HS") else public_key
            if name.lower() != "none" and key:
                self._keys[name] = prepared_key(name, key)
        self._audience = audience
        self._issuer = issuer
        self.leeway = leeway

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError("missing token")
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthError("invalid token: not a JWS compact serialization (header.payload.signature)")
        header = _json_segment(parts[0], "header")
        name = header.get("alg")
        entry = self._keys.get(name) if isinstance(name, str) else None
        if entry is None:
            raise AuthError("invalid token: algorithm not allowed")
        if "crit" in header:  # RFC 7515 4.1.11: no extension is understood here
            raise AuthError("invalid token: unsupported critical header parameters (crit)")
        algorithm, key = entry
        signed = f"{parts[0]}.{parts[1]}".encode("ascii")
        signature = _segment(parts[2], "signature")
        digest = _HMAC_DIGESTS.get(name)
        if digest is not None:  # one-shot HMAC: a fifth of what the hmac.HMAC object costs
            valid = hmac.compare_digest(hmac.digest(key, signed, digest), signature)
        else:
            valid = algorithm.verify(signed, key, signature)
        if not valid:
            raise AuthError("invalid token: bad signature")
        claims = _json_segment(parts[1], "payload")
        self.check_claims(claims)
        raw_id = claims.get("user_id", claims.get("sub"))
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or raw_id == "":
            raise AuthError("invalid token: no user_id or sub claim")
        user_id = str(raw_id)
        username = claims.get("username")
        exp = claims["exp"]
        jti = claims.get("jti")
        return Identity(
            user_id=user_id,
            username=str(username) if username not in (None, "") else user_id,
            expires_at=float(exp),
            token_id=jti,
            rooms=_rooms_claim(claims),
        )

    def check_claims(self, claims: dict[str, Any]) -> None:
        """RFC 7519's registered claims: ``exp`` required and in the future; ``nbf`` and ``iat``
        not in the future; ``aud`` and ``iss`` required and matching when configured; ``sub``
        and ``jti`` strings. Time comparisons allow ``leeway`` seconds of clock skew."""
        now = time.time()
        for name in ("exp", *(["aud"] if self._audience else []), *(["iss"] if self._issuer else [])):
            if name not in claims:
                raise AuthError(f"invalid token: no {name!r} claim")
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_number(claims[name]):
                raise AuthError(f"invalid token: the {name!r} claim must be a number (seconds since the epoch)")
        if claims["exp"] <= now - self.leeway:
            raise AuthError("token expired")
        if claims.get("nbf", now) > now + self.leeway:
            raise AuthError("invalid token: not valid yet (nbf)")
        if claims.get("iat", now) > now + self.leeway:
            raise AuthError("invalid token: issued in the future (iat)")
        for name in ("sub", "jti"):
            if name in claims and not isinstance(claims[name], str):
                raise AuthError(f"invalid token: the {name!r} claim must be a string")
        if self._audience is not None:
            audience = claims["aud"]
            audiences = [audience] if isinstance(audience, str) else audience
            if not isinstance(audiences, list) or self._audience not in audiences:
                raise AuthError("invalid token: wrong audience (aud)")
        if self._issuer is not None and claims["iss"] != self._issuer:
            raise AuthError("invalid token: wrong issuer (iss)")


def prepared_key(name: str, key: str) -> tuple[Algorithm, Any]:
    """PyJWT's algorithm ``name`` and ``key`` prepared for it, once; ValueError when the key
    cannot verify that algorithm (PyJWT refuses a PEM key as an HMAC secret, the guard against
    algorithm confusion, and a public key of another family)."""
    algorithm = jwt.get_algorithm_by_name(name)
    try:
        return algorithm, algorithm.prepare_key(key)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise ValueError(f"the key configured for {name} cannot verify {name} tokens ({exc})") from None


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_HMAC_DIGESTS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


def _segment(segment: str, what: str) -> bytes:
    """One base64url segment of a compact JWS, strictly: no padding, no other characters."""
    if not _BASE64URL.fullmatch(segment):
        raise AuthError(f"invalid token: the {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error:
        raise AuthError(f"invalid token: the {what} is not base64url") from None


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = loads(_segment(segment, what))
    except ValueError:  # not JSON, or not UTF-8
        raise AuthError(f"invalid token: the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"invalid token: the {what} is not a JSON object")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
