"""Where the Node and browser tools the browser tests need are, or a clear skip without them.

Without Node or Chromium such tests skip, unless ``REQUIRE_BROWSER=1`` (set by ``.ci/run``),
which makes them fail instead: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest


def browser_required() -> bool:
    return os.environ.get("REQUIRE_BROWSER") == "1"


def missing(message: str) -> NoReturn:
    """Skip, or fail where the browser tests are mandatory (CI)."""
    if browser_required():
        pytest.fail(f"{message} (REQUIRE_BROWSER=1 makes this a failure)")
    pytest.skip(message)


def tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not on PATH: {hint}")
    return found


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        missing("headless Chromium is not installed: `apt-get install chromium` runs the browser tests")
    return str(found)
