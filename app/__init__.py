"""realtime-gateway: a Socket.IO-compatible realtime gateway (python-socketio on aiohttp).

Run it with ``realtime-gateway`` (or ``python -m realtime_gateway``); embed it with :func:`create_app`.
"""

from .emit.emitter import EmitError, Emitter, SyncEmitter
from .server import create_app

__version__ = "0.1.0"
__all__ = ["EmitError", "Emitter", "SyncEmitter", "__version__", "create_app"]
