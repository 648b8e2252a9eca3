"""Operating the gateway: readiness, metrics, structured logs, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time

import aiohttp
import pytest
from conftest import make_token, uid


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
        return response.status, await response.text()


async def wait_status(url: str, expected: int, timeout: float = 10) -> str:
    """Poll an endpoint until it answers ``expected`` (a state flip, not an event, so polling)."""
    deadline = time.monotonic() + timeout
    while True:
        code, text = await get(url)
        if code == expected:
            return text
        assert time.monotonic() < deadline, f"{url} still {code}: {text}"
        await asyncio.sleep(0.2)


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in text exposition format (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" (\S+)"
    found = re.search(rf"^{pattern}$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_readyz_follows_redis(redis_server, gateway_factory):
    node = gateway_factory(env={"REDIS_URL": redis_server.url})
    assert json.loads(await wait_status(f"{node.url}/readyz", 200)) == {"status": "ready"}
    redis_server.kill()
    body = json.loads(await wait_status(f"{node.url}/readyz", 503))
    assert body["error"]["code"] == 503 and "redis" in body["error"]["message"]
    assert (await get(f"{node.url}/healthz"))[0] == 200  # alive, just not ready
    redis_server.start()
    await wait_status(f"{node.url}/readyz", 200)


async def test_readyz_single_node_is_ready(gateway):
    assert await get(f"{gateway.url}/readyz") == (200, '{"status": "ready"}')


async def test_metrics_move_with_traffic(gateway_factory, clients):
    node = gateway_factory()
    sio = await clients.sio(node.url, make_token(uid()))
    await clients.ws(node.ws_url, make_token(uid()))
    assert (await sio.call("join_room", "metrics-room"))["ok"]
    code, before = await get(f"{node.url}/metrics")
    assert code == 200
    assert sample(before, "gateway_connections", transport="socket.io") == 1
    assert sample(before, "gateway_connections", transport="websocket") == 1
    assert sample(before, "gateway_rooms") == 1
    await sio.call("ping")
    await sio.call("join_room", "user:someone")  # reserved: a 403
    _, after = await get(f"{node.url}/metrics")
    assert sample(after, "gateway_messages_received_total", type="ping") == 1
    assert sample(after, "gateway_messages_sent_total", type="pong") == 1
    assert sample(after, "gateway_errors_total", code="403") == 1
    assert sample(after, "gateway_event_handling_seconds_count", type="ping") == 1
    assert sample(after, "gateway_messages_sent_total", type="user_status") >= 2
    for name in ("gateway_redis_publish_failures_total", "gateway_bridge_dropped_total"):
        assert f"# TYPE {name} counter" in after


async def test_json_logs_never_contain_tokens(gateway_factory, clients):
    node = gateway_factory(args=["--log-format", "json"])
    token = make_token(uid())
    client = await clients.sio(node.url, token)
    await clients.ws(node.ws_url, make_token(uid()))
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/ws/online-users?token={token}") as response:
        assert response.status == 200
    await client.close()
    node.stop()
    records = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    assert {"connected", "disconnected"} <= {r["message"].split()[0] for r in records}
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert token not in node.log() and token.split(".")[2] not in node.log()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_graceful_shutdown_closes_clients_and_announces_offline(cluster, clients, signum):
    node1, node2 = cluster
    alice, bob = uid(), uid()
    survivor = await clients.sio(node2.url, make_token(uid()))
    sio = await clients.sio(node1.url, make_token(alice))
    ws = await clients.ws(node1.ws_url, make_token(bob))
    for user in (alice, bob):
        await survivor.inbox.next("user_status", content={"user_id": user, "user_name": user, "status": "online"})
    started = time.monotonic()
    node1.signal(signum)
    await asyncio.wait_for(sio.disconnected.wait(), 10)
    await asyncio.wait_for(ws.closed.wait(), 10)
    assert ws.ws.close_code in (1000, 1001)
    for user in (alice, bob):
        await survivor.inbox.next("user_status", content={"user_id": user, "user_name": user, "status": "offline"})
    assert await asyncio.get_running_loop().run_in_executor(None, node1.wait, 10) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 10
    print(f"shutdown with 2 clients: {elapsed:.2f}s")
    assert survivor.sio.connected


async def test_shutdown_is_bounded_while_redis_is_down(redis_server, gateway_factory, clients):
    node = gateway_factory(env={"REDIS_URL": redis_server.url})
    client = await clients.ws(node.ws_url, make_token(uid()))
    redis_server.kill()
    started = time.monotonic()
    node.signal(signal.SIGTERM)
    await asyncio.wait_for(client.closed.wait(), 10)
    assert await asyncio.get_running_loop().run_in_executor(None, node.wait, 10) == 0
    print(f"shutdown with Redis down: {time.monotonic() - started:.2f}s")
    assert time.monotonic() - started < 10
