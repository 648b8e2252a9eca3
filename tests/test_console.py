"""The console page (``/console``): its routes, the dev-only token endpoint, the committed build,
the packaged assets, and the page itself in headless Chromium against real gateway processes.

The browser scenarios live in ``tests/browser/console.spec.mjs`` (playwright-core, from the
console's devDependencies, driving Debian's ``chromium``); each test here starts the gateways,
runs one scenario and checks its exit status. Screenshots go to ``test-output/console/``.
Without Chromium the browser tests skip, unless ``REQUIRE_BROWSER=1`` (set by ``.ci/run``), which
makes them fail instead.
"""

from __future__ import annotations

import filecmp
import json
import os
import queue
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest
from conftest import ROOT, SECRET, make_token
from tooling import chromium, missing, tool

CONSOLE_DIR = ROOT / "console"
STATIC_DIR = ROOT / "app" / "static" / "console"
SPEC = ROOT / "tests" / "browser" / "console.spec.mjs"
OUT_DIR = ROOT / "test-output" / "console"
ASSETS = {"index.html", "ops.html", "console.js", "ops.js", "console.css"}
BROWSER_TIMEOUT = 100  # below pytest's own timeout (120 s), for a clearer message


def node_tools() -> str:
    node = tool("node", "Node.js 20+ is needed for the console's build and browser tests")
    if not (CONSOLE_DIR / "node_modules" / "esbuild").is_dir():
        missing("the console's npm dependencies are missing: run `npm ci` in console/ (./scripts/test does)")
    return node


def run_scenario(name: str, on_request: Callable[[str], str] | None = None, **config: Any) -> None:
    """Run one scenario of console.spec.mjs; ``on_request`` answers its ``DRIVER <request>`` lines
    (such as restarting the gateway) on its stdin."""
    node = node_tools()
    browser = chromium()
    config = {
        "chromium": browser,
        "outDir": str(OUT_DIR),
        "python": sys.executable,
        "root": str(ROOT),
        **config,
    }
    env = {**os.environ, "CONSOLE_TEST": json.dumps(config)}
    proc = subprocess.Popen(
        [node, str(SPEC), name],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def pump_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        errors.extend(proc.stderr)

    threads = [threading.Thread(target=pump, daemon=True) for pump in (pump_stdout, pump_stderr)]
    for thread in threads:
        thread.start()
    output: list[str] = []
    deadline = time.monotonic() + BROWSER_TIMEOUT
    try:
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                break
            output.append(line)
            if line.startswith("DRIVER "):
                assert on_request is not None, f"unexpected request from the scenario: {line}"
                assert proc.stdin is not None
                proc.stdin.write(on_request(line.split(" ", 1)[1].strip()) + "\n")
                proc.stdin.flush()
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except (queue.Empty, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(5)
        pytest.fail(f"browser scenario {name} did not finish within {BROWSER_TIMEOUT} s:\n{''.join(output)}")
    finally:
        for thread in threads:
            thread.join(5)
    assert proc.returncode == 0, f"browser scenario {name} failed:\n{''.join(output)}\n{''.join(errors)}"


# ---- routes ------------------------------------------------------------------------------


async def test_console_page_and_assets_are_served(gateway):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/console", allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == "console/"  # relative: survives a path prefix
        async with http.get(f"{gateway.url}/console/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "connect-src 'self'" in csp
            page = await response.text()
            assert '<script type="module" src="console.js">' in page
            assert 'data-testid="admin-form"' in page
        for name, content_type in (("console.js", "text/javascript"), ("console.css", "text/css")):
            async with http.get(f"{gateway.url}/console/{name}") as response:
                assert response.status == 200
                assert response.content_type == content_type
                assert await response.read() == (STATIC_DIR / name).read_bytes()
        async with http.get(f"{gateway.url}/console/ops") as response:
            assert response.status == 200 and response.content_type == "text/html"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            page = await response.text()
            assert '<script type="module" src="ops.js">' in page and 'data-testid="ops-key-form"' in page
        async with http.get(f"{gateway.url}/console/ops.js") as response:
            assert response.status == 200 and response.content_type == "text/javascript"
        for missing in ("nope.js", "index.html", "ops.html", "..%2Fconsole.py"):
            async with http.get(f"{gateway.url}/console/{missing}") as response:
                assert response.status == 404, missing
        async with http.get(f"{gateway.url}/console/config") as response:
            assert await response.json() == {"dev_tokens": False, "publish_api": False}


async def test_dev_token_endpoint_is_absent_when_a_secret_is_configured(gateway_factory):
    node = gateway_factory(env={"API_KEY": "k"})  # JWT_SECRET is configured by the fixture
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{node.url}/console/dev-token", json={"username": "mallory"}) as response:
            assert response.status == 404
        async with http.get(f"{node.url}/console/config") as response:
            assert await response.json() == {"dev_tokens": False, "publish_api": True}


async def test_dev_token_endpoint_mints_working_tokens_in_dev_mode(gateway_factory):
    node = gateway_factory(env={"JWT_SECRET": ""})  # no secret: the process generates one
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.url}/console/config") as response:
            assert await response.json() == {"dev_tokens": True, "publish_api": False}
        async with http.post(f"{node.url}/console/dev-token", json={"username": " Alice "}) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            body = await response.json()
        assert body["user_id"] == "Alice" and body["username"] == "Alice" and body["expires_in"] == 3600
        claims = jwt.decode(body["token"], options={"verify_signature": False})
        assert claims["user_id"] == "Alice" and claims["username"] == "Alice"
        assert claims["exp"] - claims["iat"] == 3600 and claims["jti"]
        # signed with the process's secret: the gateway accepts it, a token signed otherwise is refused
        headers = {"Authorization": f"Bearer {body['token']}"}
        async with http.get(f"{node.url}/ws/online-users", headers=headers) as response:
            assert response.status == 200
        foreign = {"Authorization": f"Bearer {make_token('Alice', secret=SECRET)}"}
        async with http.get(f"{node.url}/ws/online-users", headers=foreign) as response:
            assert response.status == 401

        async with http.post(f"{node.url}/console/dev-token", json={"username": "Bob", "user_id": "42"}) as response:
            assert (await response.json())["user_id"] == "42"
        for bad in ({}, {"username": ""}, {"username": "x" * 65}, {"username": "a\nb"}, {"username": 7}, []):
            async with http.post(f"{node.url}/console/dev-token", json=bad) as response:
                assert response.status == 400, bad
                assert (await response.json())["error"]["code"] == 400
        async with http.post(f"{node.url}/console/dev-token", data='{"username": "Eve"}') as response:
            assert response.status == 415  # JSON only: no token for a cross-site form post
        async with http.post(
            f"{node.url}/console/dev-token", data="{", headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 400


# ---- build and packaging -----------------------------------------------------------------


def test_committed_build_is_up_to_date(tmp_path):
    """`npm run build` in console/ reproduces app/static/console/ byte for byte."""
    node = node_tools()
    out = tmp_path / "console"
    result = subprocess.run([node, "build.mjs", str(out)], cwd=CONSOLE_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    built = {p.name for p in out.iterdir()}
    committed = {p.name for p in STATIC_DIR.iterdir()}
    assert built == committed == ASSETS
    _, mismatch, errors = filecmp.cmpfiles(out, STATIC_DIR, sorted(ASSETS), shallow=False)
    assert not mismatch and not errors, (
        f"app/static/console/ is stale ({mismatch or errors}): run `npm run build` in console/ and commit the result"
    )


def test_console_sources_typecheck():
    node = node_tools()
    tsc = CONSOLE_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    command = [node, str(tsc), "-p", "tsconfig.json", "--noEmit"]
    result = subprocess.run(command, cwd=CONSOLE_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_ships_the_console(wheel):
    """A regular (non-editable) install gets the built assets: they are package data in the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        for name in ASSETS:
            assert archive.read(f"realtime_gateway/static/console/{name}") == (STATIC_DIR / name).read_bytes(), name
        assert "realtime_gateway/api/console.py" in archive.namelist()


# ---- in the browser ----------------------------------------------------------------------


def test_browser_two_users_chat_and_see_each_other_come_and_go(gateway_factory):
    """Dev mode: demo tokens for two names, presence both ways, a room chat, the feed filter."""
    node = gateway_factory(env={"JWT_SECRET": ""})
    run_scenario("chat_presence", urls=[node.url])


def test_browser_admin_panel_notification_reaches_only_its_user(gateway_factory):
    """JWT log-in; notification / system / data_update through POST /api/publish from the page;
    the toast shows on the target's page only; the API key lives in sessionStorage only."""
    node = gateway_factory(env={"API_KEY": "console-test-key"})
    tokens = {user: make_token(user, user.capitalize()) for user in ("alice", "bob", "carol")}
    tokens["forged"] = make_token("alice", "Alice", secret="another-secret-0123456789abcdef0123456789abcdef")
    run_scenario("admin_toast", urls=[node.url], tokens=tokens, apiKey="console-test-key")


def test_browser_cli_notification_reaches_only_its_user_across_nodes(cluster, redis_server):
    """Two nodes on Redis, a page on each: `realtime-gateway emit notification --user bob`."""
    tokens = {user: make_token(user, user.capitalize()) for user in ("alice", "bob")}
    run_scenario("cli_toast", urls=[n.url for n in cluster], tokens=tokens, redisUrl=redis_server.url)


def test_browser_console_reconnects_after_a_gateway_restart(gateway_factory):
    """SIGTERM and a new process on the same port: the page goes reconnecting, then connected,
    with its room joined again and the online list fetched again."""
    node = gateway_factory()
    restarted: list[Any] = []

    def on_request(request: str) -> str:
        assert request == "restart"
        node.stop()
        restarted.append(gateway_factory(port=node.port))
        return "restarted"

    run_scenario("reconnect", on_request, urls=[node.url], tokens={"alice": make_token("alice", "Alice")})
    assert restarted


def test_browser_operator_page_shows_the_cluster_and_disconnects_a_user(redis_server, gateway_factory):
    """Two nodes on Redis: the operator page (API key) lists both nodes with live charts, the
    rooms with their members, carol's connections on both nodes, and disconnects her everywhere;
    with the ops token it shows the same, and disconnecting is refused.
    Its screenshot is test-output/console/operator.png (docs/operator-page.png is a copy)."""
    key, ops_token = "operator-test-key", "operator-test-ops-token"
    env = {"REDIS_URL": redis_server.url, "API_KEY": key, "OPS_TOKEN": ops_token}
    nodes = [gateway_factory(env=env), gateway_factory(env=env)]
    tokens: dict[str, Any] = {user: make_token(user, user.capitalize()) for user in ("alice", "bob", "carol")}
    tokens["extra"] = [make_token(f"user-{n}", f"User {n}") for n in range(4)]
    run_scenario(
        "operator",
        urls=[n.url for n in nodes],
        pids=[n.proc.pid for n in nodes if n.proc],
        tokens=tokens,
        apiKey=key,
        opsToken=ops_token,
    )
