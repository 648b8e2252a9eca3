"""Starting the gateway: zero configuration, bad configuration, asymmetric keys, the CLI."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import jwt
import pytest
import socketio
from conftest import ROOT, free_port
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JWT_SECRET", "API_KEY", "PORT")}
    return subprocess.run(
        [sys.executable, "-m", "realtime_gateway", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_zero_config_start_prints_a_working_demo_token(gateway_factory, clients):
    server = gateway_factory(env={"JWT_SECRET": ""})
    deadline = time.monotonic() + 10
    match = None
    while match is None and time.monotonic() < deadline:
        match = re.search(r"Demo token \(user 'demo', valid 1 hour\): (\S+)", server.log())
        time.sleep(0.05)
    assert match, server.log()
    log = server.log()
    assert "WARNING: no JWT_SECRET configured" in log
    assert f"ws://127.0.0.1:{server.port}/ws?token=" in log
    token = match.group(1)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert 3500 <= claims["exp"] - time.time() <= 3600
    client = await clients.sio(server.url, token)
    assert client.inbox.of_type("welcome")[0]["content"]["user_id"] == "demo"
    plain = await clients.ws(server.ws_url, token)
    assert plain.inbox.of_type("welcome")[0]["content"]["username"] == "Demo User"


PEM_TEXT = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"
RSA_PUBLIC_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ([], {"REDIS_URL": "redis://127.0.0.1:1/0"}, "no JWT_SECRET"),
        (["--redis-url", "http://nope"], {"JWT_SECRET": "s"}, "is not a Redis URL"),
        (["--redis-url", "redis://host:notaport/0"], {"JWT_SECRET": "s"}, "redis-url"),
        (["--jwt-algorithms", "RS256", "--jwt-public-key", "/nonexistent/key.pem"], {}, "cannot read"),
        (["--jwt-algorithms", "RS256"], {"JWT_SECRET": "s"}, "need --jwt-public-key"),
        (["--jwt-algorithms", "none"], {"JWT_SECRET": "s"}, "unsupported"),
        ([], {"PORT": "eighty"}, "PORT='eighty' is not valid for --port"),
        (["--port", "99999"], {"JWT_SECRET": "s"}, "--port"),
        (["--jwt-algorithms", "HS256,RS256", "--jwt-public-key", PEM_TEXT], {}, "need --jwt-secret"),
        (["--jwt-leeway", "3600"], {"JWT_SECRET": "s"}, "--jwt-leeway"),
        (["--protected-rooms", "x" * 129], {"JWT_SECRET": "s"}, "--protected-rooms"),
        (["--jwt-algorithms", "ES256", "--jwt-public-key", RSA_PUBLIC_PEM], {}, "cannot verify ES256"),
        ([], {"JWT_SECRET": RSA_PUBLIC_PEM}, "cannot verify HS256"),
    ],
    ids=[
        "cluster-without-secret",
        "bad-url",
        "bad-port-in-url",
        "unreadable-key",
        "rs256-without-key",
        "alg-none",
        "non-numeric-env",
        "port-range",
        "hs256-with-public-key-only",
        "leeway-too-large",
        "protected-pattern-too-long",
        "public-key-of-another-family",
        "pem-key-as-hmac-secret",
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(args, env, needle):
    result = run_cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_port_in_use_is_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--host", "127.0.0.1", "--port", str(port), env={"JWT_SECRET": "s"})
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_documents_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in (
        "--host",
        "--port",
        "--redis-url",
        "--jwt-secret",
        "--jwt-algorithms",
        "--jwt-public-key",
        "--jwt-audience",
        "--jwt-issuer",
        "--jwt-leeway",
        "--protected-rooms",
        "--ops-token",
        "--cors-origins",
        "--max-message-bytes",
        "--ping-interval",
        "--ping-timeout",
        "--log-level",
    ):
        assert option in result.stdout
    assert "[JWT_SECRET]" in result.stdout


def test_token_command_mints_a_verifiable_token():
    result = run_cli(
        "token",
        "--user",
        "42",
        "--name",
        "Zed",
        "--ttl",
        "60",
        env={"JWT_SECRET": "cli-secret-0123456789abcdef0123456789"},
    )
    assert result.returncode == 0
    claims = jwt.decode(result.stdout.strip(), "cli-secret-0123456789abcdef0123456789", algorithms=["HS256"])
    assert claims["user_id"] == "42" and claims["username"] == "Zed"
    assert run_cli("token", "--user", "42").returncode == 2


async def test_rs256_public_key_from_file(tmp_path, gateway_factory, clients):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(pem)
    server = gateway_factory(env={"JWT_SECRET": "", "JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": str(key_file)})
    token = jwt.encode({"user_id": "rsa-user", "exp": int(time.time()) + 60}, private, algorithm="RS256")
    client = await clients.sio(server.url, token)
    assert client.inbox.of_type("welcome")[0]["content"]["user_id"] == "rsa-user"
    # an HS256 token signed with the public key text (the classic confusion attack) is refused
    forged = _hs256_by_hand({"user_id": "mallory", "exp": int(time.time()) + 60}, pem)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await clients.sio(server.url, forged)


def _hs256_by_hand(claims: dict, key: bytes) -> str:
    """pyjwt refuses to HMAC-sign with a PEM key, which is what an attacker would do by hand."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_healthz_port_is_free_after_sigterm(gateway_factory):
    port = free_port()
    server = gateway_factory(port=port)
    server.stop()
    assert server.proc.returncode == 0


async def test_sigterm_is_quick_even_with_clients_that_never_hang_up(gateway_factory):
    import asyncio
    import json
    import signal

    import aiohttp
    from conftest import make_token

    server = gateway_factory()
    async with aiohttp.ClientSession() as session:
        # a Socket.IO WebSocket client, a plain one and a long-polling session; none reads again
        engine = await session.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket")
        await engine.receive(timeout=5)
        await engine.send_str("40" + json.dumps({"token": make_token("stuck-1")}))
        plain = await session.ws_connect(f"{server.ws_url}?token={make_token('stuck-2')}")
        async with session.get(f"{server.url}/socket.io/?EIO=4&transport=polling") as response:
            assert response.status == 200
        await asyncio.sleep(0)
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert await asyncio.get_running_loop().run_in_executor(None, server.wait, 15) == 0
        assert time.monotonic() - started < 1.5  # no waiting out the handler grace period
        await engine.close()
        await plain.close()
