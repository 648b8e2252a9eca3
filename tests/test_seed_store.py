"""The seed guide's Pinia store, run verbatim in Node, works against the gateway unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_token

NODE_DIR = Path(__file__).parent / "node"


def test_seed_store_chats_through_plain_websocket(gateway):
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules").exists():
        pytest.fail("Node.js and tests/node dependencies are required: run `npm ci` in tests/node (scripts/test does)")
    env = {
        "PATH": str(Path(node).parent),
        "GATEWAY_PORT": str(gateway.port),
        "TOKEN_A": make_token("seed-alice", "Alice"),
        "TOKEN_B": make_token("seed-bob", "Bob"),
    }
    result = subprocess.run([node, "seed_store.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    alice, bob = report["alice"], report["bob"]

    welcome = next(m for m in alice if m["type"] == "welcome")
    assert welcome["content"]["user_id"] == "seed-alice"
    assert [m["type"] for m in alice].count("pong") == 1
    chat = [(m["from_name"], m["content"]["text"], m["room"]) for m in alice if m["type"] == "room_message"]
    assert chat == [("Alice", "hello from alice", "chat:room001"), ("Bob", "hi alice", "chat:room001")]
    assert [m["content"]["text"] for m in bob if m["type"] == "room_message"] == ["hello from alice", "hi alice"]
    assert not [m for m in alice + bob if m["type"] == "error"]
    # the application's handleMessage hook saw every message the store pushed
    assert len(report["handled"]) == len(alice) + len(bob)
