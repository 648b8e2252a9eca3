"""``realtime-gateway emit`` as a real subprocess: every subcommand reaches exactly its audience on
both nodes; unreachable Redis and invalid arguments fail with a clear message and no delivery."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from conftest import ROOT, free_port
from delivery import audience, nothing_else, received_once, wait_subscribed


async def emit(*args: str, redis_url: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "realtime_gateway",
        "emit",
        *args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode().strip(), err.decode()


async def test_every_subcommand_reaches_exactly_its_audience_on_both_nodes(cluster, redis_server, clients):
    people = await audience(clients, cluster)
    await wait_subscribed(redis_server.url, nodes=2)
    url = ["--redis-url", redis_server.url]
    commands = {
        "system": ["system", "maintenance soon", "--level", "warning", "--code", "1001", *url],
        "notify_user": ["notification", "--title", "T", "--body", "B", "--icon", "I", "--user", people.user, *url],
        "notify_all": ["notification", "--title", "All", "--body", "everyone", *url],
        "update": ["data-update", "--entity", "user", "--action", "create", "--id", "9", "--json", '{"a": 1}', *url],
        "room": ["room", "--room", people.room, "--type", "room_news", "--json", "[1, 2]", *url],
        "user": ["user", "--user", people.user, "--type", "private", "--json", '"psst"', *url],
        "broadcast": [*url, "broadcast", "--type", "announce"],  # --redis-url before the subcommand too
    }
    commands["update"] += ["--room", people.room]
    results = dict(zip(commands, await asyncio.gather(*(emit(*argv) for argv in commands.values())), strict=True))
    for name, (code, _, err) in results.items():
        assert code == 0, (name, err)
    ids = {name: out for name, (_, out, _) in results.items()}

    system = (await received_once(people.everyone, "system", ids["system"]))[0]
    assert system["content"] == {"message": "maintenance soon", "level": "warning", "code": 1001}
    note = (await received_once(people.devices, "notification", ids["notify_user"]))[1]
    assert note["content"] == {"title": "T", "body": "B", "icon": "I"}
    await received_once(people.everyone, "notification", ids["notify_all"])
    update = (await received_once(people.members, "data_update", ids["update"]))[0]
    assert update["content"] == {"entity": "user", "action": "create", "id": "9", "data": {"a": 1}}
    assert (await received_once(people.members, "room_news", ids["room"]))[1]["content"] == [1, 2]
    assert (await received_once(people.devices, "private", ids["user"]))[0]["content"] == "psst"
    assert (await received_once(people.everyone, "announce", ids["broadcast"]))[0]["content"] is None
    await nothing_else(people.everyone, "system", "notification", "data_update", "room_news", "private", "announce")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["broadcast", "--type", "t"], 1, "cannot publish to Redis at redis://127.0.0.1:"),
        (["broadcast", "--type", "t", "--json", "{nope"], 2, "argument --json: not valid JSON"),
        (["notification", "--title", "T"], 2, "the following arguments are required: --body"),
        (["room", "--room", "", "--type", "t"], 2, "room name must be 1..128 characters"),
        (["user", "--user", "u", "--type", ""], 2, "type must be a non-empty string"),
        (["launch"], 2, "invalid choice: 'launch'"),
    ],
    ids=["unreachable", "bad-json", "missing-arg", "bad-room", "empty-type", "unknown-command"],
)
async def test_errors_exit_non_zero_with_a_clear_message(argv, code, message):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    got, out, err = await emit(*argv, redis_url=dead)
    assert (got, out) == (code, ""), err
    assert message in err


async def test_no_redis_url_is_an_argument_error():
    code, _, err = await emit("broadcast", "--type", "t")
    assert code == 2 and "no Redis URL: pass one" in err
