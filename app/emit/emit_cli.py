"""``realtime-gateway emit``: send a message to connected clients from a shell or a cron job.

Each subcommand is one :class:`~realtime_gateway.emit.emitter.SyncEmitter` operation; a message's envelope id
is printed on success (``join``, ``leave`` and ``disconnect`` print nothing). Exit status: 0 sent,
1 Redis could not take it, 2 invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from .emitter import EmitError, SyncEmitter

EXIT_UNREACHABLE = 1
EXIT_USAGE = 2

Operation = Callable[[SyncEmitter, argparse.Namespace], str | None]


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None


def _operations() -> dict[str, Operation]:
    return {
        "system": lambda e, a: e.send_system(a.message, a.level, a.code),
        "notification": lambda e, a: e.send_notification(a.title, a.body, a.icon, a.link, a.user),
        "data-update": lambda e, a: e.send_data_update(a.entity, a.action, a.id, a.json, a.room),
        "room": lambda e, a: e.broadcast_to_room(a.room, a.type, a.json),
        "user": lambda e, a: e.send_to_user(a.user, a.type, a.json),
        "broadcast": lambda e, a: e.broadcast(a.type, a.json),
        "join": lambda e, a: e.join_room(a.user, a.room),
        "leave": lambda e, a: e.leave_room(a.user, a.room),
        "disconnect": lambda e, a: e.disconnect_user(a.user) if a.user is not None else e.disconnect_sid(a.sid),
    }


def build_parser() -> argparse.ArgumentParser:
    redis_help = "the gateway cluster's Redis [REDIS_URL]"
    # accepted before and after the subcommand; SUPPRESS keeps the subcommand from resetting it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", default=argparse.SUPPRESS, help=redis_help)
    parser = argparse.ArgumentParser(
        prog="realtime-gateway emit",
        description="Send a message to connected clients on every node, through the cluster's Redis. "
        "Prints the message id.",
        epilog="example: realtime-gateway emit notification --user 42 --title 'Order shipped' --body 'On its way'",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or None, help=redis_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=help_, description=help_)

    system = command("system", "a system message to everyone")
    system.add_argument("message")
    system.add_argument("--level", default="info", help="info, warning, error... (default: info)")
    system.add_argument("--code", type=int, default=0, help="application code (default: 0)")

    notification = command("notification", "a notification to one user, or to everyone without --user")
    notification.add_argument("--title", required=True)
    notification.add_argument("--body", required=True)
    notification.add_argument("--icon")
    notification.add_argument("--link")
    notification.add_argument("--user", help="user id; omit to notify everyone")

    update = command("data-update", "a data_update to a room, or to everyone without --room")
    update.add_argument("--entity", required=True, help="what changed, e.g. user")
    update.add_argument("--action", required=True, help="how, e.g. create")
    update.add_argument("--id", help="the changed record's id")
    update.add_argument("--json", type=_json, help="the data, as JSON")
    update.add_argument("--room")

    for name, help_, address in (
        ("room", "any message type to a room's members", "--room"),
        ("user", "any message type to every connection of a user", "--user"),
        ("broadcast", "any message type to everyone", None),
    ):
        sub = command(name, help_)
        if address:
            sub.add_argument(address, required=True)
        sub.add_argument("--type", required=True, help="message type (the event name)")
        sub.add_argument("--json", type=_json, default=None, help="content, as JSON (default: null)")

    for name, help_ in (
        ("join", "every current connection of a user, on every node, joins a room (protected ones too)"),
        ("leave", "every current connection of a user, on every node, leaves a room"),
    ):
        sub = command(name, help_)
        sub.add_argument("--user", required=True)
        sub.add_argument("--room", required=True)
    disconnect = command("disconnect", "close every connection of a user, or one connection, on every node")
    target = disconnect.add_mutually_exclusive_group(required=True)
    target.add_argument("--user")
    target.add_argument("--sid", help="one connection, by the sid its welcome message gave")
    return parser


def emit_command(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with usage on bad arguments
    try:
        with SyncEmitter(args.redis_url) as emitter:
            message_id = _operations()[args.command](emitter, args)
    except ValueError as exc:
        parser.exit(EXIT_USAGE, f"realtime-gateway emit: error: {exc}\n")
    except EmitError as exc:
        parser.exit(EXIT_UNREACHABLE, f"realtime-gateway emit: error: {exc}\n")
    if message_id is not None:
        print(message_id)
    return 0
