"""Every HTTP error of the gateway has the one documented body: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

from typing import Any

import aiohttp

KEY = "error-shape-key"


async def request(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def test_every_error_has_the_documented_shape(gateway_factory):
    node = gateway_factory(env={"API_KEY": KEY})
    key = {"Authorization": f"Bearer {KEY}"}
    cases = [
        ("GET", "/ws", {}, 401),
        ("GET", "/ws?token=not-a-jwt", {}, 401),
        ("GET", "/ws/online-users", {}, 401),
        ("POST", "/api/publish", {}, 401),
        ("POST", "/api/publish", {"headers": key, "data": b"{"}, 400),
        ("POST", "/api/revoke", {}, 401),
        ("POST", "/api/revoke", {"headers": key, "json": {"jti": 5}}, 400),
        ("GET", "/no/such/route", {}, 404),
        ("DELETE", "/api/publish", {}, 405),
    ]
    for method, path, kwargs, status in cases:
        got, body = await request(method, node.url + path, **kwargs)
        assert got == status, (method, path, body)
        assert isinstance(body, dict) and set(body) == {"error"}, (path, body)
        error = body["error"]
        assert error["code"] == status and isinstance(error["message"], str) and error["message"], (path, body)
        assert set(error) <= {"code", "message", "field"}, (path, body)
