"""The live console page at ``/console``, and its development-only token endpoint.

The page is static: HTML, CSS and one JavaScript bundle built from ``console/`` (TypeScript, with
the frontend-adapter's ``RealtimeClient``) into ``app/static/console/``, which is committed and
shipped in the wheel, so a plain ``pip install`` serves it without Node.

Routes:

- ``GET /console`` redirects to ``/console/`` (relative, so it also works under a proxy prefix);
  ``GET /console/`` is the page, ``GET /console/ops`` the operator page (it reads
  :mod:`realtime_gateway.api.ops_api` with the API key), and ``GET /console/<file>`` their assets.
- ``GET /console/config`` tells the page what this gateway offers: ``{"dev_tokens", "publish_api"}``.
- ``POST /console/dev-token`` ``{"username": "Alice", "user_id"?: "alice"}`` answers
  ``{"token", "user_id", "username", "expires_in"}``: a one-hour token signed with the secret the
  process generated for itself. The route exists only in that development mode (no JWT secret
  configured); with a configured secret it is absent (404), since anyone who can reach it could
  sign in as anybody.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from ..auth import mint_token
from ..config import Settings
from .http_errors import error_response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "console"
DEV_TOKEN_TTL = 3600
MAX_NAME = 64

# The page only talks to the gateway that serves it; nothing inline, nothing from elsewhere
# (https: images are notification icons).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
PAGES = {"/console/": "index.html", "/console/ops": "ops.html"}
"""The HTML pages, by route; every other file of the build is an asset under its own name."""
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png"}


def install_console(app: web.Application, settings: Settings) -> None:
    """Add the console's routes to the gateway application (the dev-token route in dev mode only)."""
    assets = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()} if STATIC_DIR.is_dir() else {}

    def page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            html = assets.get(name)
            if html is None:
                return error_response(404, "console assets are not installed")
            return web.FileResponse(html, headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})

        return serve

    def asset(path: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"

        async def serve(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={**ASSET_HEADERS, "Content-Type": content_type})

        return serve

    async def config(request: web.Request) -> web.Response:
        return web.json_response(
            {"dev_tokens": settings.dev_secret, "publish_api": bool(settings.api_key)},
            headers={"Cache-Control": "no-store"},
        )

    app.router.add_get("/console", redirect_to_slash)
    for route, name in PAGES.items():
        app.router.add_get(route, page(name))
    app.router.add_get("/console/config", config)
    # one route per file: no path from the request ever reaches the file system
    for name, path in sorted(assets.items()):
        if name not in PAGES.values():
            app.router.add_get(f"/console/{name}", asset(path))
    if settings.dev_secret:
        app.router.add_post("/console/dev-token", dev_token_handler(settings))


async def redirect_to_slash(request: web.Request) -> web.Response:
    # relative, so that a proxy serving the gateway under a path prefix keeps it
    raise web.HTTPFound("console/")


def dev_token_handler(settings: Settings) -> Callable[[web.Request], Awaitable[web.Response]]:
    secret = settings.jwt_secret
    assert secret is not None and settings.dev_secret

    async def dev_token(request: web.Request) -> web.Response:
        # JSON only: a cross-site form cannot send it without a CORS preflight, which fails
        if request.content_type != "application/json":
            return _bad("send a JSON body with Content-Type: application/json", status=415)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _bad("body is not valid JSON")
        if not isinstance(body, dict):
            return _bad('body must be {"username": "...", "user_id"?: "..."}')
        username = _name(body.get("username"))
        if username is None:
            return _bad(f"username must be 1 to {MAX_NAME} printable characters")
        user_id = username if body.get("user_id") in (None, "") else _name(body.get("user_id"))
        if user_id is None:
            return _bad(f"user_id must be 1 to {MAX_NAME} printable characters")
        token = mint_token(secret, user_id, username, ttl=DEV_TOKEN_TTL)
        return web.json_response(
            {"token": token, "user_id": user_id, "username": username, "expires_in": DEV_TOKEN_TTL},
            headers={"Cache-Control": "no-store"},
        )

    return dev_token


def _name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not 0 < len(value) <= MAX_NAME or any(unicodedata.category(c).startswith("C") for c in value):
        return None
    return value


def _bad(message: str, status: int = 400) -> web.Response:
    return error_response(status, message)
