"""The one JSON codec of the gateway: orjson when installed (the ``speed`` extra), else the stdlib.

Socket.IO packets, plain-WS frames and Redis messages are all encoded here, so the same value
always becomes the same bytes. The fan-out path relies on that: it cuts a plain-WS frame out of
the Socket.IO packet it already encoded instead of encoding the envelope twice.
Output is compact and keeps non-ASCII characters as UTF-8 in both implementations.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - exercised when the speed extra is absent
    orjson = None  # type: ignore[assignment]


def _stdlib_dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


if orjson is not None:
    _OPTIONS = orjson.OPT_NON_STR_KEYS

    def dumps(obj: Any, **_compat: Any) -> str:
        """Serialise compactly. Extra keyword arguments (``separators=`` from python-socketio) are
        accepted and ignored: the output is always compact."""
        try:
            return orjson.dumps(obj, option=_OPTIONS).decode()
        except TypeError:
            # integers beyond 64 bits and other values orjson refuses: same text from the stdlib
            return _stdlib_dumps(obj)

    def loads(data: str | bytes, **_compat: Any) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None

else:

    def dumps(obj: Any, **_compat: Any) -> str:
        return _stdlib_dumps(obj)

    def loads(data: str | bytes, **_compat: Any) -> Any:
        return json.loads(data)
