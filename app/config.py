"""Settings: read once from command-line flags and environment variables, validated at start.

Every option has a flag and an environment variable; the flag wins. Validation happens here so
that a misconfigured node fails at start with one line naming what to change, instead of at the
first connection.
"""

from __future__ import annotations

import argparse
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_PORT = 8087
DEFAULT_MAX_MESSAGE_BYTES = 524_288
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
    cors_origins: list[str] | str = "*"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    ws_heartbeat_timeout: float = 60.0
    max_rooms_per_connection: int = 100
    rate_limit: float = 50.0
    rate_burst: int = 100
    log_level: str = "INFO"
    log_format: str = "text"
    api_key: str | None = None
    legacy_channels: bool = True
    presence_ttl: float = 30.0
    ws_compression: bool = False
    send_buffer_limit: int = 1 << 20
    transports: list[str] = field(default_factory=lambda: ["polling", "websocket"])
    workers: int = 1
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
        if self.ping_interval <= 0 or self.ping_timeout <= 0 or self.ws_heartbeat_timeout <= 0:
            raise ConfigError("--ping-interval, --ping-timeout and --ws-heartbeat-timeout must be > 0")
        if self.max_rooms_per_connection < 1:
            raise ConfigError("--max-rooms must be at least 1")
        if self.rate_limit <= 0 or self.rate_burst < 1:
            raise ConfigError("--rate-limit must be > 0 and --rate-burst at least 1")
        if self.presence_ttl < 3:
            raise ConfigError("--presence-ttl must be at least 3 seconds")
        if self.send_buffer_limit < 64 * 1024:
            raise ConfigError("--max-send-buffer must be at least 65536 bytes")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.workers > 1 and not self.redis_url:
            raise ConfigError(
                "--workers N > 1 needs --redis-url/REDIS_URL: the worker processes share rooms through Redis"
            )
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


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
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
    add = parser.add_argument
    add("--host", default=env("HOST", "0.0.0.0"), help="interface to listen on [HOST]")
    add("--port", type=int, default=int(env("PORT", DEFAULT_PORT)), help="TCP port [PORT]")
    add(
        "--redis-url",
        default=env("REDIS_URL") or None,
        help="Redis URL; set it to cluster nodes, leave unset for a single in-memory node [REDIS_URL]",
    )
    add("--jwt-secret", default=env("JWT_SECRET") or None, help="HMAC secret for tokens [JWT_SECRET]")
    add(
        "--jwt-algorithms",
        default=env("JWT_ALGORITHMS", "HS256"),
        help="comma-separated list of accepted token algorithms [JWT_ALGORITHMS]",
    )
    add(
        "--jwt-public-key",
        default=env("JWT_PUBLIC_KEY") or None,
        help="PEM public key (file path or text) for RS*/ES*/PS*/EdDSA tokens [JWT_PUBLIC_KEY]",
    )
    add(
        "--cors-origins",
        default=env("CORS_ORIGINS", "*"),
        help="comma-separated allowed origins, or * [CORS_ORIGINS]",
    )
    add(
        "--max-message-bytes",
        type=int,
        default=int(env("MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES)),
        help="largest accepted inbound message [MAX_MESSAGE_BYTES]",
    )
    add(
        "--ping-interval",
        type=float,
        default=float(env("PING_INTERVAL", 25)),
        help="seconds between heartbeats [PING_INTERVAL]",
    )
    add(
        "--ping-timeout",
        type=float,
        default=float(env("PING_TIMEOUT", 20)),
        help="Socket.IO: seconds to wait for a heartbeat answer [PING_TIMEOUT]",
    )
    add(
        "--ws-heartbeat-timeout",
        type=float,
        default=float(env("WS_HEARTBEAT_TIMEOUT", 60)),
        help="plain WebSocket: close after this many seconds of silence [WS_HEARTBEAT_TIMEOUT]",
    )
    add(
        "--max-rooms",
        type=int,
        default=int(env("MAX_ROOMS", 100)),
        help="rooms one connection may join [MAX_ROOMS]",
    )
    add(
        "--rate-limit",
        type=float,
        default=float(env("RATE_LIMIT", 50)),
        help="client messages per second per connection, sustained [RATE_LIMIT]",
    )
    add(
        "--rate-burst",
        type=int,
        default=int(env("RATE_BURST", 100)),
        help="client messages a connection may send in a burst [RATE_BURST]",
    )
    add(
        "--api-key",
        default=env("API_KEY") or None,
        help="bearer key for POST /api/publish; unset disables the HTTP publish API [API_KEY]",
    )
    add(
        "--no-legacy-channels",
        action="store_true",
        default=not _env_flag("LEGACY_CHANNELS", True),
        help="do not subscribe to the websocket:* Redis channels [LEGACY_CHANNELS=0]",
    )
    add(
        "--presence-ttl",
        type=float,
        default=float(env("PRESENCE_TTL", 30)),
        help="seconds after which a dead node's users are considered offline [PRESENCE_TTL]",
    )
    add(
        "--ws-compression",
        action="store_true",
        default=_env_flag("WS_COMPRESSION", False),
        help="negotiate permessage-deflate (costs CPU per recipient and ~90 KB per connection) [WS_COMPRESSION=1]",
    )
    add(
        "--max-send-buffer",
        type=int,
        default=int(env("MAX_SEND_BUFFER", 1 << 20)),
        help="bytes that may wait for one slow client before it is disconnected [MAX_SEND_BUFFER]",
    )
    add(
        "--workers",
        type=int,
        default=int(env("WORKERS", 1)),
        help="worker processes sharing the port (SO_REUSEPORT, joined through Redis; WebSocket transport only) "
        "[WORKERS]",
    )
    add("--log-level", default=env("LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING, ERROR [LOG_LEVEL]")
    add("--log-format", default=env("LOG_FORMAT", "text"), help="text or json [LOG_FORMAT]")
    return parser


def settings_from_args(argv: list[str] | None = None) -> Settings:
    """Parse flags (falling back to the environment) into validated Settings."""
    try:
        args = build_parser().parse_args(argv)
    except ValueError as exc:  # a non-numeric value in a numeric environment variable
        raise ConfigError(f"invalid number in the environment: {exc}") from None
    cors = args.cors_origins.strip()
    settings = Settings(
        host=args.host,
        port=args.port,
        redis_url=args.redis_url,
        jwt_secret=args.jwt_secret,
        jwt_algorithms=_split(args.jwt_algorithms),
        jwt_public_key=args.jwt_public_key,
        cors_origins="*" if cors == "*" else _split(cors),
        max_message_bytes=args.max_message_bytes,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        ws_heartbeat_timeout=args.ws_heartbeat_timeout,
        max_rooms_per_connection=args.max_rooms,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        log_level=args.log_level.upper(),
        log_format=args.log_format,
        api_key=args.api_key,
        legacy_channels=not args.no_legacy_channels,
        presence_ttl=args.presence_ttl,
        ws_compression=args.ws_compression,
        send_buffer_limit=args.max_send_buffer,
        workers=args.workers,
        transports=["websocket"] if args.workers > 1 else ["polling", "websocket"],
    )
    settings.validate()
    return settings
