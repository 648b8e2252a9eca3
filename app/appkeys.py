"""Typed keys for what the gateway stores on the aiohttp application, shared by all routes."""

from __future__ import annotations

import socketio
from aiohttp import web

from .config import Settings
from .emit.emitter import InProcessEmitter
from .handlers import ClientEvents
from .transport.limits import ConnectionLimits

SETTINGS_KEY = web.AppKey("settings", Settings)
SIO_KEY = web.AppKey("sio", socketio.AsyncServer)
EVENTS_KEY = web.AppKey("events", ClientEvents)
EMITTER_KEY = web.AppKey("emitter", InProcessEmitter)
"""Send to clients from code inside the gateway: the same operations as :class:`realtime_gateway.Emitter`."""
LIMITS_KEY = web.AppKey("limits", ConnectionLimits)
