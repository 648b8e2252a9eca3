"""The one JSON codec of the gateway: orjson when installed (the ``speed`` extra), else the stdlib.

Socket.IO packets, plain-WS frames and Redis messages are all encoded here, so the same value
always becomes the same bytes. The fan-out path relies on that: it cuts a plain-WS frame out of
the Socket.IO packet it already encoded instead of encoding the envelope twice.
Output is compact and keeps non-ASCII characters as UTF-8 in both implementations.

:func:`strict_dumps` is for what other processes hand to the nodes (the emitters): it refuses,
with ``ValueError``, the values a node could not read back as they were sent (NaN and the
infinities, which orjson would turn into ``null``; integers beyond 64 bits, which it would read
as floats).
"""

from __future__ import annotations

import json
import math
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - exercised when the speed extra is absent
    orjson = None  # type: ignore[assignment]


def _stdlib_dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
"""The integers orjson reads back as integers."""


def _stdlib_strict(obj: Any) -> str:
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ValueError("NaN and Infinity cannot be sent: JSON has no such numbers") from None
    _check_ints(obj)
    return text


def _check_ints(obj: Any) -> None:
    if isinstance(obj, int) and not isinstance(obj, bool):
        if not INT_MIN <= obj <= INT_MAX:
            raise ValueError(f"integer {obj} is outside the 64-bit range the gateway reads")
    elif isinstance(obj, dict):
        for value in obj.values():
            _check_ints(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _check_ints(value)


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

    def strict_dumps(obj: Any) -> str:
        """:func:`dumps`, refusing NaN, infinities and integers beyond 64 bits (ValueError)."""
        try:
            raw = orjson.dumps(obj, option=_OPTIONS)
        except TypeError as exc:
            if "64-bit" in str(exc):
                raise ValueError("an integer is outside the 64-bit range the gateway reads") from None
            raise
        if b"null" in raw and _has_non_finite(obj):  # orjson writes NaN and Infinity as null
            raise ValueError("NaN and Infinity cannot be sent: JSON has no such numbers")
        return raw.decode()

    def loads(data: str | bytes, **_compat: Any) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None

else:

    def dumps(obj: Any, **_compat: Any) -> str:
        return _stdlib_dumps(obj)

    def strict_dumps(obj: Any) -> str:
        return _stdlib_strict(obj)

    def loads(data: str | bytes, **_compat: Any) -> Any:
        return json.loads(data)


def _has_non_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_has_non_finite(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_non_finite(value) for value in obj)
    return False
