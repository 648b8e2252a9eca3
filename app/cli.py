"""The ``realtime-gateway`` command: run the server (default), or one of the tool commands."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable

from . import logs
from .auth import mint_token
from .config import ConfigError, settings_from_args

EXIT_CONFIG = 2


def _fail(message: str) -> int:
    print(f"realtime-gateway: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def run_server(argv: list[str]) -> int:
    from .runner import serve

    try:
        settings = settings_from_args(argv)
    except ConfigError as exc:
        return _fail(str(exc))
    logs.configure(settings.log_level, settings.log_format)
    try:
        _install_speedups()
        asyncio.run(serve(settings))
    except ConfigError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


def _install_speedups() -> None:
    """Use uvloop when it is installed (the ``speed`` extra); it is a drop-in event loop."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def token_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="realtime-gateway token", description="Print an HS256 token for a user (for tests and tools)."
    )
    parser.add_argument("--user", required=True, help="user id (the user_id claim)")
    parser.add_argument("--name", help="display name (the username claim); defaults to the user id")
    parser.add_argument("--ttl", type=float, default=3600, help="seconds until the token expires")
    parser.add_argument("--jwt-secret", default=os.environ.get("JWT_SECRET"), help="secret [JWT_SECRET]")
    args = parser.parse_args(argv)
    if not args.jwt_secret:
        return _fail("no secret: pass --jwt-secret or set JWT_SECRET")
    print(mint_token(args.jwt_secret, args.user, args.name, ttl=args.ttl))
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {"token": token_command}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if args and args[0] == "serve":
        args = args[1:]
    return run_server(args)


if __name__ == "__main__":
    sys.exit(main())
