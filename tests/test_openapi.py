"""``GET /api/openapi.json``: the document is valid OpenAPI 3.1, covers every route the application
has, and describes what a running gateway really answers.

Adding a route? Document it in ``app/api/openapi.json`` (every status it answers, error statuses with
``#/components/responses/...``), and exercise each documented status in
:func:`test_real_answers_match_the_documented_schemas`: the tests below fail until both are done.
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from importlib import metadata
from typing import Any

import aiohttp
from conftest import ROOT, SECRET, WAIT, make_token
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from realtime_gateway.api.console import PAGES, STATIC_DIR
from realtime_gateway.api.openapi import DOCUMENT, PATH
from realtime_gateway.config import Settings
from realtime_gateway.server import create_app
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC: dict[str, Any] = json.loads((ROOT / "app" / "api" / "openapi.json").read_text())
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
KEY = "openapi-test-key"
OPS = "openapi-ops-token"
URI = "urn:realtime-gateway:openapi"
REGISTRY = Registry().with_resource(URI, Resource.from_contents(SPEC, default_specification=DRAFT202012))
# Not part of the HTTP API: Engine.IO's own endpoint (its protocol specifies it) and the console's
# static page and assets (HTML, JavaScript, CSS for a browser; its JSON endpoints are documented).
UNDOCUMENTED = {"/socket.io/", "/console", *PAGES} | {f"/console/{p.name}" for p in STATIC_DIR.iterdir()}


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in SPEC["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def resolve(pointer: str) -> tuple[dict[str, Any], str]:
    """The object at a JSON pointer into the document, following a ``$ref`` it consists of."""
    node: Any = SPEC
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        return resolve(node["$ref"][1:])
    return node, pointer


def schema_errors(pointer: str, instance: Any) -> list[str]:
    """Validation errors of ``instance`` against the schema at ``pointer`` (``$ref``s resolved)."""
    validator = Draft202012Validator({"$ref": f"{URI}#{pointer}"}, registry=REGISTRY)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(instance)]


def template_of(path: str) -> str:
    """The documented path a request path falls under (``/api/ops/users/42`` -> ``.../{user_id}``)."""
    parts = path.split("/")
    for template in SPEC["paths"]:
        pieces = template.split("/")
        if len(pieces) == len(parts) and all(
            piece == part or (piece.startswith("{") and piece.endswith("}") and part)
            for piece, part in zip(pieces, parts, strict=True)
        ):
            return template
    raise AssertionError(f"{path} is not in the document")


def application_routes() -> set[tuple[str, str]]:
    """(path, method) of every route, under settings that switch every optional route on: an API
    key, development mode (the dev-token route) or a configured secret, clustered or not."""
    found: set[tuple[str, str]] = set()
    for options in (
        {"api_key": KEY},
        {"api_key": KEY, "jwt_secret": SECRET, "redis_url": "redis://127.0.0.1:1/0"},
    ):
        settings = Settings(**options)
        settings.validate()
        for route in create_app(settings).router.routes():
            path = route.resource.canonical if route.resource else ""
            # aiohttp answers HEAD for every GET route by itself
            if route.method != "HEAD" and path not in UNDOCUMENTED:
                found.add((path, route.method.lower()))
    return found


# ---- the document itself -----------------------------------------------------------------


def test_document_is_valid_openapi_3_1():
    validate(SPEC)  # the OpenAPI 3.1 meta-schema, and the schemas against the JSON Schema 2020-12 dialect
    assert SPEC["openapi"].startswith("3.1.")
    assert SPEC["info"]["version"] == metadata.version("realtime-gateway")
    ids = [op["operationId"] for op in operations().values()]
    assert len(ids) == len(set(ids)), f"operationIds must be unique (client generators name methods after them): {ids}"
    assert DOCUMENT == SPEC, "the package serves app/api/openapi.json"


def test_every_error_answer_is_the_shared_error_body():
    """Each documented status >= 400 has the one JSON body, ``#/components/schemas/Error``."""
    for (path, method), operation in operations().items():
        for status in operation["responses"]:
            if int(status) < 400:
                continue
            response, _ = resolve(f"/paths/{escape(path)}/{method}/responses/{status}")
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
    assert set(SPEC["components"]["securitySchemes"]) >= {"apiKey", "clientJwt", "clientJwtQuery"}


def test_every_route_of_the_application_is_documented():
    routes = application_routes()
    documented = set(operations())
    missing = sorted(routes - documented)
    assert not missing, f"routes without an operation in app/api/openapi.json (document them): {missing}"
    stale = sorted(documented - routes)
    assert not stale, f"app/api/openapi.json documents routes the application does not have: {stale}"


# ---- real answers ------------------------------------------------------------------------


class Answers:
    """Sends requests to gateways and validates each answer against the document: its status must
    be documented for the operation, its media type too, and its body must match the schema."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.seen: set[tuple[str, str, str]] = set()

    async def check(self, base: str, method: str, path: str, status: int, **kwargs: Any) -> Any:
        template = template_of(path.split("?", 1)[0])
        async with self.http.request(method, base + path, **kwargs) as response:
            body = await response.read()
            media = response.content_type
            got = response.status
        assert got == status, f"{method} {path}: {got} {body[:300]!r}"
        operation = SPEC["paths"][template][method.lower()]
        assert str(status) in operation["responses"], f"{method} {template} answers {status}: not documented"
        spec, pointer = resolve(f"/paths/{escape(template)}/{method.lower()}/responses/{status}")
        assert media in spec["content"], f"{method} {path} {status}: {media} is not documented"
        value = json.loads(body) if media == "application/json" else body.decode()
        errors = schema_errors(f"{pointer}/content/{escape(media)}/schema", value)
        assert not errors, f"{method} {path} {status} does not match the document: {errors}\n{value}"
        self.seen.add((template, method.lower(), str(status)))
        return value

    async def generic_error(self, base: str, method: str, path: str, status: int, **kwargs: Any) -> None:
        """An answer of no operation (an unknown route, an absent optional route): the Error body."""
        async with self.http.request(method, base + path, **kwargs) as response:
            assert response.status == status, (method, path, response.status)
            errors = schema_errors("/components/schemas/Error", await response.json())
        assert not errors, (method, path, errors)

    async def websocket_upgrade(self, ws_url: str, token: str) -> None:
        """``GET /ws`` with a good token switches protocols (101) and sends the welcome."""
        async with self.http.ws_connect(f"{ws_url}?token={token}") as ws:
            welcome = await ws.receive_json(timeout=WAIT)
            assert welcome["type"] == "welcome"
        self.seen.add(("/ws", "get", "101"))


async def until(probe: Any, timeout: float = WAIT) -> None:
    """Wait, bounded, for a state the gateway reaches by itself (noticing that Redis is gone)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, "the gateway did not get there in time"
        await asyncio.sleep(0.1)


async def test_real_answers_match_the_documented_schemas(gateway_factory, redis_server, clients):
    single = gateway_factory(env={"API_KEY": KEY, "MAX_MESSAGE_BYTES": "2048"})
    dev = gateway_factory(env={"JWT_SECRET": "", "OPS_TOKEN": OPS})  # development mode, no API key
    clustered = gateway_factory(env={"API_KEY": KEY, "REDIS_URL": redis_server.url, "OUTBOX_MAX_AGE": "1"})
    key = {"Authorization": f"Bearer {KEY}"}
    token = make_token("openapi-user", "OpenAPI User")
    bearer = {"Authorization": f"Bearer {token}"}

    async with aiohttp.ClientSession() as http:
        answers = Answers(http)
        check = answers.check
        await clients.sio(single.url, token)
        await clients.ws(single.ws_url, token)

        # operations
        await check(single.url, "GET", "/healthz", 200)
        await check(single.url, "GET", "/readyz", 200)
        stats = await check(single.url, "GET", "/ws/stats", 200)
        assert stats["scope"] == "node" and stats["node"]["transports"] == {"socket.io": 1, "websocket": 1}
        metrics = await check(single.url, "GET", "/metrics", 200)
        assert "gateway_connections" in metrics
        for path in ("/ws/stats", "/metrics"):  # behind --ops-token
            await check(dev.url, "GET", path, 401)
            await check(dev.url, "GET", path, 200, headers={"Authorization": f"Bearer {OPS}"})
        served = await check(single.url, "GET", PATH, 200)
        assert served == SPEC

        # clients
        users = await check(single.url, "GET", "/ws/online-users", 200, headers=bearer)
        assert {"user_id": "openapi-user", "user_name": "OpenAPI User"} in users["users"]
        await check(single.url, "GET", f"/ws/online-users?token={token}", 200)
        await check(single.url, "GET", "/ws/online-users", 401)
        await check(single.url, "GET", "/ws/online-users", 401, headers={"Authorization": "Bearer nope"})
        await answers.websocket_upgrade(single.ws_url, token)
        await check(single.url, "GET", "/ws", 401)
        await check(single.url, "GET", f"/ws?token={make_token('late', ttl=-10)}", 401)
        await check(single.url, "GET", f"/ws?token={token}", 400)  # a plain GET, no upgrade
        # refused before the upgrade: origin, connection limits (user, then node)
        limited = gateway_factory(
            env={"CORS_ORIGINS": "https://ok.example", "MAX_CONNECTIONS": "2", "MAX_CONNECTIONS_PER_USER": "1"}
        )
        evil = {"Origin": "https://evil.example"}
        await check(limited.url, "GET", f"/ws?token={token}", 403, headers=evil)
        await clients.ws(limited.ws_url, token)
        await check(limited.url, "GET", f"/ws?token={token}", 429)
        await clients.ws(limited.ws_url, make_token("openapi-other"))
        await check(limited.url, "GET", f"/ws?token={make_token('openapi-third')}", 503)

        # back end
        message = {"target": {"user": "openapi-user"}, "type": "notification", "content": {"title": "t"}}
        await check(single.url, "POST", "/api/publish", 202, json=message, headers=key)
        await check(single.url, "POST", "/api/publish", 202, json={"target": {"all": True}, "type": "x"}, headers=key)
        bad = await check(single.url, "POST", "/api/publish", 400, json={**message, "target": {}}, headers=key)
        assert bad["error"]["field"] == "target"
        await check(single.url, "POST", "/api/publish", 400, data=b"{", headers=key)
        await check(single.url, "POST", "/api/publish", 401, json=message)
        await check(single.url, "POST", "/api/publish", 413, json={**message, "content": "x" * 4096}, headers=key)
        member = {"user": "openapi-member", "room": "admins"}
        for path in ("/api/rooms/join", "/api/rooms/leave"):
            assert await check(single.url, "POST", path, 202, json=member, headers=key) == member
            bad = await check(single.url, "POST", path, 400, json={"user": "openapi-member"}, headers=key)
            assert bad["error"]["field"] == "room"
            await check(single.url, "POST", path, 401, json=member)
            await check(single.url, "POST", path, 413, json={**member, "pad": "x" * 4096}, headers=key)
        for target in ({"user": "openapi-member"}, {"sid": "no-such-sid"}):
            assert await check(single.url, "POST", "/api/disconnect", 202, json=target, headers=key) == target
        bad = await check(single.url, "POST", "/api/disconnect", 400, json={}, headers=key)
        assert bad["error"]["field"] == "body"
        await check(single.url, "POST", "/api/disconnect", 401, json={"user": "openapi-member"})
        await check(single.url, "POST", "/api/disconnect", 413, json={"sid": "x" * 4096}, headers=key)
        await check(single.url, "GET", "/api/history?room=user:openapi-user&limit=5", 200, headers=key)
        bad = await check(single.url, "GET", "/api/history?room=lobby&limit=0", 400, headers=key)
        assert bad["error"]["field"] == "limit"
        await check(single.url, "GET", "/api/history?room=lobby", 401)
        await check(single.url, "POST", "/api/revoke", 200, json={"jti": "j-1", "expires_at": 2e9}, headers=key)
        await check(single.url, "POST", "/api/revoke", 400, json={"jti": ""}, headers=key)
        bad = await check(single.url, "POST", "/api/revoke", 400, data=b'{"jti": "j", "expires_at": NaN}', headers=key)
        assert bad["error"]["field"] == "expires_at"
        await check(single.url, "POST", "/api/revoke", 401, json={"jti": "j-1"})
        await check(dev.url, "POST", "/api/revoke", 403, json={"jti": "j-1"}, headers=key)

        # console
        assert await check(single.url, "GET", "/console/config", 200) == {"dev_tokens": False, "publish_api": True}
        minted = await check(dev.url, "POST", "/console/dev-token", 200, json={"username": "Alice"})
        assert minted["user_id"] == "Alice"
        await check(dev.url, "POST", "/console/dev-token", 400, json={"username": ""})
        await check(dev.url, "POST", "/console/dev-token", 415, data=b'{"username": "Eve"}')

        # answers of no operation: absent optional routes, unknown routes, wrong methods
        await answers.generic_error(single.url, "POST", "/console/dev-token", 404, json={"username": "Mallory"})
        await answers.generic_error(dev.url, "POST", "/api/publish", 404, json=message, headers=key)
        await answers.generic_error(single.url, "GET", "/no/such/route", 404)
        await answers.generic_error(single.url, "DELETE", "/api/publish", 405)

        # operator API
        alice = make_token("openapi-alice", "Alice")
        await clients.sio(clustered.url, alice)
        nodes = await check(clustered.url, "GET", "/api/ops/nodes", 200, headers=key)
        assert nodes["scope"] == "cluster" and len(nodes["nodes"]) == 1
        await check(single.url, "GET", "/api/ops/nodes", 200, headers=key)  # single node: scope "node"
        await check(clustered.url, "GET", "/api/ops/rooms?prefix=chat&limit=5", 200, headers=key)
        await check(clustered.url, "GET", "/api/ops/rooms?limit=0", 400, headers=key)
        user = await check(clustered.url, "GET", "/api/ops/users/openapi-alice", 200, headers=key)
        assert user["online"] and user["connections"][0]["engineio"] == "websocket"
        await check(clustered.url, "GET", "/api/ops/users/nobody", 200, headers=key)
        closed = gateway_factory()  # neither an API key nor an ops token
        for path in ("/api/ops/nodes", "/api/ops/rooms", "/api/ops/users/openapi-alice"):
            await check(single.url, "GET", path, 401)
            await check(dev.url, "GET", path, 200, headers={"Authorization": f"Bearer {OPS}"})
            await check(closed.url, "GET", path, 403, headers=key)

        # a cluster node, then the same node once its Redis is gone
        stats = await check(clustered.url, "GET", "/ws/stats", 200)
        assert stats["scope"] == "cluster" and "error" not in stats
        redis_server.kill()
        await check(clustered.url, "GET", "/readyz", 503)
        await check(clustered.url, "GET", "/ws/online-users", 503, headers=bearer)

        async def stats_degraded() -> bool:  # cluster figures are reused for up to a second
            async with http.get(f"{clustered.url}/ws/stats") as response:
                return (await response.json())["scope"] == "node"

        await until(stats_degraded)
        stats = await check(clustered.url, "GET", "/ws/stats", 200)
        assert stats["scope"] == "node" and stats["error"]
        degraded = await check(clustered.url, "GET", "/api/ops/nodes", 200, headers=key)
        assert degraded["scope"] == "node" and degraded["error"]

        async def publish_refused() -> bool:
            async with http.post(f"{clustered.url}/api/publish", json=message, headers=key) as response:
                return response.status == 503

        await until(publish_refused)
        await check(clustered.url, "POST", "/api/publish", 503, json=message, headers=key)
        await check(clustered.url, "GET", "/api/history?room=lobby", 503, headers=key)  # history is in Redis
        for path in ("/api/rooms/join", "/api/rooms/leave"):
            await check(clustered.url, "POST", path, 503, json=member, headers=key)
        await check(clustered.url, "POST", "/api/disconnect", 503, json={"user": "openapi-member"}, headers=key)

    documented = {(path, method, status) for (path, method), op in operations().items() for status in op["responses"]}
    unchecked = sorted(documented - answers.seen)
    assert not unchecked, f"documented answers this test never produced (add a request for each): {unchecked}"


def test_wheel_ships_the_document(wheel):
    """A regular install serves the document: it is package data in the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        assert json.loads(archive.read("realtime_gateway/api/openapi.json")) == SPEC
