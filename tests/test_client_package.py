"""The client package as a user gets it: ``npm pack``, installed into a fresh Vite project.

One test walks the whole path of a new user: pack ``frontend-adapter/`` (its ``prepack`` builds
it), create a project from ``tests/client_app/`` (a Vite + TypeScript app, nothing else), install
the tarball there next to vite and typescript from the npm registry, type-check the app with the
package's declarations, build it with Vite, and open it in headless Chromium against a real
gateway, together with a page that imports the package's browser bundle from a plain
``<script type="module">``. Both must connect and see their ``welcome``.

It needs Node, npm, Chromium and the npm registry (or npm's cache: installs are
``--prefer-offline``); without them it skips, unless ``REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, make_token
from tooling import chromium, missing, tool

CLIENT_DIR = ROOT / "frontend-adapter"
APP_FIXTURE = ROOT / "tests" / "client_app"
SPEC = ROOT / "tests" / "browser" / "client_package.spec.mjs"
OUT_DIR = ROOT / "test-output" / "client-package"
PACKAGE = "@realtime-gateway/client"
STEP_TIMEOUT = 180  # one npm step, a cold install from the registry included


def run(command: list[str], cwd: Path, timings: dict[str, float], step: str, **env: str) -> str:
    started = time.monotonic()
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            env={**os.environ, **env},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{step} did not finish within {STEP_TIMEOUT} s: {command}")
    timings[step] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, f"{step} failed ({command}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def pack(tmp: Path, npm: str, timings: dict[str, float]) -> tuple[Path, list[str]]:
    """``npm pack`` of a copy of the package sources (the checkout's dist/ is left alone)."""
    source = tmp / "client-src"
    shutil.copytree(
        CLIENT_DIR, source, ignore=shutil.ignore_patterns("node_modules", "dist", ".test-build", "test", "*.tgz")
    )
    (source / "node_modules").symlink_to(CLIENT_DIR / "node_modules")
    out = run([npm, "pack", "--json", "--pack-destination", str(tmp)], source, timings, "npm pack")
    [packed] = json.loads(out)
    return tmp / packed["filename"], sorted(f["path"] for f in packed["files"])


def test_packed_client_installs_type_checks_builds_with_vite_and_connects(tmp_path, gateway_factory):
    node = tool("node", "Node.js 20+ runs the client package test")
    npm = tool("npm", "npm packs and installs the client package")
    browser = chromium()
    for needed in (CLIENT_DIR / "node_modules" / "esbuild", ROOT / "console" / "node_modules" / "playwright-core"):
        if not needed.is_dir():
            missing(f"{needed.relative_to(ROOT)} is missing: run `npm ci` in its folder (./scripts/test does)")
    timings: dict[str, float] = {}

    tarball, files = pack(tmp_path, npm, timings)
    assert tarball.name == "realtime-gateway-client-0.1.0.tgz"
    for expected in ("package.json", "README.md", "dist/index.js", "dist/index.d.ts", "dist/browser/index.js"):
        assert expected in files, f"{expected} not in the tarball: {files}"
    assert "dist/pinia/index.js" in files and "dist/pinia/index.d.ts" in files
    assert not [f for f in files if f.startswith(("test/", ".test-build/", "node_modules/"))], files
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/dist/browser/index.js")
        assert member is not None
        bundle = member.read().decode()
    # self-contained: no bare import left for a browser to fail on (socket.io-client is inside)
    assert 'from"socket.io-client"' not in bundle and "from 'socket.io-client'" not in bundle

    app = tmp_path / "app"
    shutil.copytree(APP_FIXTURE, app)
    manifest: dict[str, Any] = json.loads((app / "package.json").read_text())
    manifest["dependencies"] = {PACKAGE: f"file:{tarball}"}
    (app / "package.json").write_text(json.dumps(manifest, indent=2))
    install = [npm, "install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"]
    run(install, app, timings, "npm install")
    installed = app / "node_modules" / "@realtime-gateway" / "client"
    assert json.loads((installed / "package.json").read_text())["name"] == PACKAGE
    assert not (app / "node_modules" / "vue").exists(), "vue and pinia are optional peers: not installed"

    run([node, "node_modules/typescript/bin/tsc", "-p", "."], app, timings, "tsc --noEmit")
    run([node, "node_modules/vite/bin/vite.js", "build", "--logLevel", "warn"], app, timings, "vite build")
    built = (app / "dist" / "index.html").read_text()
    assert "/src/main.ts" not in built, "vite build replaced the entry with its bundle"

    gateway = gateway_factory()
    config = {
        "chromium": browser,
        "gateway": gateway.url,
        "token": make_token("vite-user", "Vite User"),
        "appDir": str(app / "dist"),
        "plainPage": str(app / "plain.html"),
        "bundle": str(installed / "dist" / "browser" / "index.js"),
        "outDir": str(OUT_DIR),
    }
    output = run([node, str(SPEC)], ROOT, timings, "chromium", CLIENT_PACKAGE_TEST=json.dumps(config))
    print(f"client package steps (s): {timings}\n{output}")
