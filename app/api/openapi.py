"""``GET /api/openapi.json``: the OpenAPI 3.1 document of the gateway's HTTP API.

The document is ``openapi.json`` beside this module, written by hand and shipped as package
data; it is read once, at import, and served as those bytes (no per-request work). Back ends in
other languages can generate their client from it. ``tests/test_openapi.py`` validates it
against the OpenAPI 3.1 schema, checks that every route of the application is in it, and
validates real answers of a running gateway against its response schemas, so it cannot drift
from the code unnoticed: whoever adds a route documents it there.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from aiohttp import web

DOCUMENT_BYTES = resources.files(__package__).joinpath("openapi.json").read_bytes()
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_BYTES)
PATH = "/api/openapi.json"


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=DOCUMENT_BYTES, content_type="application/json", headers={"Cache-Control": "no-cache"})
