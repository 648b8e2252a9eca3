"""Settings: read once from command-line flags and environment variables, validated at start.

Every option has a flag and an environment variable; the flag wins. Validation happens here so
that a misconfigured node fails at start with one line naming what to change, instead of at the
first connection.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .auth import prepared_key
from .envelope import MAX_ROOM_NAME

DEFAULT_PORT = 8087
DEFAULT_MAX_MESSAGE_BYTES = 524_288
DEFAULT_JWT_LEEWAY = 5.0
"""Seconds of clock skew tolerated on ``exp``/``nbf``/``iat``: NTP-synchronised hosts differ by
well under a second, a drifting VM by a few; every second more is a second of life added to
each token (connections close that much after ``exp`` too)."""
MAX_JWT_LEEWAY = 300.0
SUPPORTED_ALGORITHMS = {
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
}
PRESENCE_ANNOUNCE_MODES = ("all", "watchers")
REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+sentinel", "valkey", "valkeys"}


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to change."""


@dataclass
class Settings:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    redis_url: str | None = None
    jwt_secret: str | None = None
    jwt_algorithms: list[str] = field(default_factory=lambda: ["HS256"])
    jwt_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = DEFAULT_JWT_LEEWAY
    protected_rooms: list[str] = field(default_factory=list)
    ops_token: str | None = None
    cors_origins: list[str] | str = "*"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    ws_heartbeat_timeout: float = 60.0
    connect_timeout: float = 45.0
    max_rooms_per_connection: int = 100
    rate_limit: float = 50.0
    rate_burst: int = 100
    log_level: str = "INFO"
    log_format: str = "text"
    api_key: str | None = None
    legacy_channels: bool = True
    presence_ttl: float = 30.0
    presence_announce: str = "all"
    bus_max_len: int = 100_000
    bus_max_age: float = 600.0
    outbox_max_bytes: int = 64 << 20
    outbox_max_age: float = 30.0
    ws_compression: bool = False
    send_buffer_limit: int = 1 << 20
    max_connections: int = 0
    max_connections_per_ip: int = 1000
    max_connections_per_user: int = 50
    transports: list[str] = field(default_factory=lambda: ["polling", "websocket"])
    workers: int = 1
    recovery_window: float = 120.0
    history_size: int = 100
    history_ttl: float = 86400.0
    dev_secret: bool = False
    """True when no secret was configured and a random one was generated for this process."""

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}")
        if self.redis_url is not None:
            parsed = urlparse(self.redis_url)
            if parsed.scheme not in REDIS_SCHEMES or not (parsed.netloc or parsed.path):
                raise ConfigError(
                    f"--redis-url/REDIS_URL {self.redis_url!r} is not a Redis URL (expected e.g. redis://host:6379/0)"
                )
            try:
                parsed.port  # noqa: B018 - raises ValueError on a non-numeric port
            except ValueError as exc:
                raise ConfigError(f"--redis-url/REDIS_URL {self.redis_url!r}: {exc}") from None
        unknown = [a for a in self.jwt_algorithms if a not in SUPPORTED_ALGORITHMS]
        if unknown or not self.jwt_algorithms:
            raise ConfigError(
                f"--jwt-algorithms/JWT_ALGORITHMS: unsupported {unknown or 'empty list'}; "
                f"choose from {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
            )
        asymmetric = [a for a in self.jwt_algorithms if not a.startswith("HS")]
        if asymmetric and not self.jwt_public_key:
            raise ConfigError(
                f"--jwt-algorithms lists {', '.join(asymmetric)}, which need "
                "--jwt-public-key/JWT_PUBLIC_KEY (a PEM file path or PEM text)"
            )
        if self.jwt_public_key:
            self.jwt_public_key = _load_key(self.jwt_public_key)
        hs = [a for a in self.jwt_algorithms if a.startswith("HS")]
        if hs and not self.jwt_secret and self.jwt_public_key:
            # each family verifies with its own key: the public key is never an HMAC secret
            raise ConfigError(
                f"--jwt-algorithms lists {', '.join(hs)}, which need --jwt-secret/JWT_SECRET; "
                "the public key verifies RS*/ES*/PS*/EdDSA only (or drop the HS* algorithms)"
            )
        for algorithm in self.jwt_algorithms:
            hmac = algorithm.startswith("HS")
            key = self.jwt_secret if hmac else self.jwt_public_key
            if key:
                try:
                    prepared_key(algorithm, key)
                except ValueError as exc:
                    option = "--jwt-secret/JWT_SECRET" if hmac else "--jwt-public-key/JWT_PUBLIC_KEY"
                    raise ConfigError(f"{option}: {exc}") from None
        if not 0 <= self.jwt_leeway <= MAX_JWT_LEEWAY:
            raise ConfigError(f"--jwt-leeway must be between 0 and {MAX_JWT_LEEWAY:g} seconds")
        self.jwt_audience = self.jwt_audience or None
        self.jwt_issuer = self.jwt_issuer or None
        self.ops_token = self.ops_token or None
        for pattern in self.protected_rooms:
            if len(pattern) > MAX_ROOM_NAME:
                raise ConfigError(f"--protected-rooms: {pattern[:40]!r}... is longer than {MAX_ROOM_NAME} characters")
        if self.jwt_secret is None and self.jwt_public_key is None:
            if self.redis_url:
                raise ConfigError(
                    "REDIS_URL is set but no JWT_SECRET (or JWT_PUBLIC_KEY): every node of a "
                    "cluster must verify tokens with the same key, so set --jwt-secret/JWT_SECRET"
                )
            self.jwt_secret = secrets.token_urlsafe(32)
            self.dev_secret = True
        if self.max_message_bytes < 1024:
            raise ConfigError("--max-message-bytes must be at least 1024")
        if min(self.ping_interval, self.ping_timeout, self.ws_heartbeat_timeout, self.connect_timeout) <= 0:
            raise ConfigError(
                "--ping-interval, --ping-timeout, --ws-heartbeat-timeout and --connect-timeout must be > 0"
            )
        if self.max_rooms_per_connection < 1:
            raise ConfigError("--max-rooms must be at least 1")
        if self.rate_limit <= 0 or self.rate_burst < 1:
            raise ConfigError("--rate-limit must be > 0 and --rate-burst at least 1")
        if self.presence_ttl < 3:
            raise ConfigError("--presence-ttl must be at least 3 seconds")
        if self.presence_announce not in PRESENCE_ANNOUNCE_MODES:
            raise ConfigError("--presence-announce must be 'all' or 'watchers'")
        if self.bus_max_len < 0 or self.bus_max_age < 0 or not (self.bus_max_len or self.bus_max_age):
            raise ConfigError("--bus-max-len and --bus-max-age must be >= 0, not both 0 (unbounded stream)")
        if self.outbox_max_bytes < self.max_message_bytes or self.outbox_max_age <= 0:
            raise ConfigError("--outbox-max-bytes must be at least --max-message-bytes and --outbox-max-age > 0")
        if self.send_buffer_limit < 64 * 1024:
            raise ConfigError("--max-send-buffer must be at least 65536 bytes")
        if min(self.max_connections, self.max_connections_per_ip, self.max_connections_per_user) < 0:
            raise ConfigError(
                "--max-connections, --max-connections-per-ip and --max-connections-per-user must be >= 0 (0: unlimited)"
            )
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.workers > 1:
            # the kernel spreads a client's requests over the workers: no long-polling sessions
            self.transports = ["websocket"]
        if self.workers > 1 and not self.redis_url:
            raise ConfigError(
                "--workers N > 1 needs --redis-url/REDIS_URL: the worker processes share rooms through Redis"
            )
        if self.recovery_window < 0:
            raise ConfigError("--recovery-window must be >= 0 (0 turns connection-state recovery off)")
        if not 0 <= self.history_size <= 10_000:
            raise ConfigError("--history-size must be from 0 (off) to 10000 messages per room")
        if self.history_ttl <= 0:
            raise ConfigError("--history-ttl must be > 0 seconds")
        if self.log_format not in ("text", "json"):
            raise ConfigError("--log-format must be 'text' or 'json'")


def _load_key(value: str) -> str:
    """Accept PEM text directly, or a path to a PEM file."""
    if "-----BEGIN" in value:
        return value
    try:
        return Path(value).read_text()
    except OSError as exc:
        raise ConfigError(f"--jwt-public-key/JWT_PUBLIC_KEY: cannot read {value!r}: {exc.strerror}") from None


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _origins(value: str) -> list[str] | str:
    return "*" if value.strip() == "*" else _split(value)


@dataclass(frozen=True)
class Option:
    """One setting as a command-line flag and an environment variable; its default is the
    :class:`Settings` field's."""

    flag: str
    env: str
    field: str
    parse: Callable[[str], Any]
    help: str


OPTIONS = (
    Option("--host", "HOST", "host", str, "interface to listen on"),
    Option("--port", "PORT", "port", int, "TCP port"),
    Option(
        "--redis-url", "REDIS_URL", "redis_url", str, "Redis URL; set it to cluster nodes, unset: one in-memory node"
    ),
    Option("--jwt-secret", "JWT_SECRET", "jwt_secret", str, "HMAC secret for tokens"),
    Option(
        "--jwt-algorithms", "JWT_ALGORITHMS", "jwt_algorithms", _split, "accepted token algorithms, comma-separated"
    ),
    Option(
        "--jwt-public-key",
        "JWT_PUBLIC_KEY",
        "jwt_public_key",
        str,
        "PEM public key (path or text) for RS*/ES*/PS*/EdDSA",
    ),
    Option(
        "--jwt-audience",
        "JWT_AUDIENCE",
        "jwt_audience",
        str,
        "when set, tokens must carry this aud claim; unset: aud is not checked",
    ),
    Option(
        "--jwt-issuer",
        "JWT_ISSUER",
        "jwt_issuer",
        str,
        "when set, tokens must carry this iss claim; unset: iss is not checked",
    ),
    Option("--jwt-leeway", "JWT_LEEWAY", "jwt_leeway", float, "seconds of clock skew tolerated on exp, nbf and iat"),
    Option(
        "--protected-rooms",
        "PROTECTED_ROOMS",
        "protected_rooms",
        _split,
        "glob patterns (comma-separated) of rooms only tokens whose rooms claim matches may join",
    ),
    Option(
        "--ops-token",
        "OPS_TOKEN",
        "ops_token",
        str,
        "bearer token required by /metrics and /ws/stats; unset: they are open",
    ),
    Option(
        "--cors-origins", "CORS_ORIGINS", "cors_origins", _origins, "allowed browser origins, comma-separated, or *"
    ),
    Option("--max-message-bytes", "MAX_MESSAGE_BYTES", "max_message_bytes", int, "largest accepted inbound message"),
    Option("--ping-interval", "PING_INTERVAL", "ping_interval", float, "seconds between heartbeats"),
    Option(
        "--ping-timeout", "PING_TIMEOUT", "ping_timeout", float, "Socket.IO: seconds to wait for a heartbeat answer"
    ),
    Option(
        "--ws-heartbeat-timeout",
        "WS_HEARTBEAT_TIMEOUT",
        "ws_heartbeat_timeout",
        float,
        "plain WebSocket: close after this many seconds of silence",
    ),
    Option(
        "--connect-timeout",
        "CONNECT_TIMEOUT",
        "connect_timeout",
        float,
        "close a session that has not connected to a Socket.IO namespace after this many seconds",
    ),
    Option("--max-rooms", "MAX_ROOMS", "max_rooms_per_connection", int, "rooms one connection may join"),
    Option("--rate-limit", "RATE_LIMIT", "rate_limit", float, "client messages per second per connection, sustained"),
    Option("--rate-burst", "RATE_BURST", "rate_burst", int, "client messages a connection may send in a burst"),
    Option(
        "--api-key", "API_KEY", "api_key", str, "bearer key for the HTTP API (POST /api/publish); unset disables it"
    ),
    Option("--legacy-channels", "LEGACY_CHANNELS", "legacy_channels", _flag, "bridge the websocket:* Redis channels"),
    Option(
        "--presence-ttl", "PRESENCE_TTL", "presence_ttl", float, "seconds until a dead node's users count as offline"
    ),
    Option(
        "--presence-announce",
        "PRESENCE_ANNOUNCE",
        "presence_announce",
        str.lower,
        "who receives user_status: all (every connection; N users cost N^2/2 deliveries) or watchers",
    ),
    Option(
        "--bus-max-len",
        "BUS_MAX_LEN",
        "bus_max_len",
        int,
        "cluster bus: entries the Redis stream keeps, about (0: no length bound)",
    ),
    Option(
        "--bus-max-age",
        "BUS_MAX_AGE",
        "bus_max_age",
        float,
        "cluster bus: seconds the Redis stream keeps entries: how long a node may be away and catch up (0: no bound)",
    ),
    Option(
        "--outbox-max-bytes",
        "OUTBOX_MAX_BYTES",
        "outbox_max_bytes",
        int,
        "bytes of messages a node keeps for Redis while it is unreachable; beyond, senders get 503",
    ),
    Option(
        "--outbox-max-age",
        "OUTBOX_MAX_AGE",
        "outbox_max_age",
        float,
        "seconds a node keeps accepting messages while Redis takes none; beyond, senders get 503",
    ),
    Option(
        "--ws-compression",
        "WS_COMPRESSION",
        "ws_compression",
        _flag,
        "negotiate permessage-deflate (CPU per recipient, ~90 KB per connection)",
    ),
    Option(
        "--max-send-buffer",
        "MAX_SEND_BUFFER",
        "send_buffer_limit",
        int,
        "bytes that may wait for one slow client before it is disconnected",
    ),
    Option(
        "--max-connections",
        "MAX_CONNECTIONS",
        "max_connections",
        int,
        "sessions this node accepts, all transports; more get 503 (0: unlimited)",
    ),
    Option(
        "--max-connections-per-ip",
        "MAX_CONNECTIONS_PER_IP",
        "max_connections_per_ip",
        int,
        "sessions from one client address; more get 429 (0: unlimited; behind a proxy, all share its address)",
    ),
    Option(
        "--max-connections-per-user",
        "MAX_CONNECTIONS_PER_USER",
        "max_connections_per_user",
        int,
        "connections of one user on this node; more get 429 (0: unlimited)",
    ),
    Option(
        "--workers",
        "WORKERS",
        "workers",
        int,
        "processes sharing the port (SO_REUSEPORT, joined through Redis; WebSocket transport only)",
    ),
    Option(
        "--recovery-window",
        "RECOVERY_WINDOW",
        "recovery_window",
        float,
        "seconds a dropped connection can resume with its rooms and missed messages; 0: off",
    ),
    Option("--history-size", "HISTORY_SIZE", "history_size", int, "messages kept per room for history; 0: off"),
    Option("--history-ttl", "HISTORY_TTL", "history_ttl", float, "seconds a message stays in room history"),
    Option("--log-level", "LOG_LEVEL", "log_level", str.upper, "DEBUG, INFO, WARNING or ERROR"),
    Option("--log-format", "LOG_FORMAT", "log_format", str, "text, or json (one object per line)"),
)


def _default(option: Option, defaults: Settings) -> Any:
    """The environment variable when set (an empty one counts as unset), else the field default."""
    value = os.environ.get(option.env, "")
    if not value:
        return getattr(defaults, option.field)
    try:
        return option.parse(value)
    except ValueError:
        raise ConfigError(f"{option.env}={value!r} is not valid for {option.flag}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime-gateway",
        description=(
            "Socket.IO-compatible realtime gateway (Socket.IO at /socket.io/, plain WebSocket at /ws). "
            "Every option can also be set through the environment variable named in brackets. "
            "Other commands: 'realtime-gateway emit --help', 'realtime-gateway token --help', "
            "'realtime-gateway revoke --help'."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = Settings()
    for option in OPTIONS:
        kwargs: dict[str, Any] = {
            "dest": option.field,
            "metavar": option.env,
            "default": _default(option, defaults),
            "help": f"{option.help} [{option.env}]",
        }
        if option.parse is _flag:
            parser.add_argument(option.flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(option.flag, type=option.parse, **kwargs)
    return parser


def settings_from_args(argv: list[str] | None = None) -> Settings:
    """Parse flags (falling back to the environment) into validated Settings."""
    args = build_parser().parse_args(argv)
    settings = Settings(**{option.field: getattr(args, option.field) for option in OPTIONS})
    settings.validate()
    return settings
