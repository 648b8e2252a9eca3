"""The official Socket.IO v5 and Engine.IO v4 compliance suites pass 100% against the gateway's
transports (``tests/conformance/server.py``).

The suites are the ``test-suite/`` folders of socketio/socket.io-protocol and
socketio/engine.io-protocol, expected unmodified in ``../shared/conformance/`` beside the
repository (``CONFORMANCE_DIR`` points elsewhere). Each run copies one to a temporary folder,
installs its locked dependencies there (``npm ci``) and runs it with mocha's JSON reporter
against the reference server on 127.0.0.1:3000, the port the suites hard-code; the two runs are
sequential and each first waits for the port to be free. Without the suites the test skips
(``REQUIRE_CONFORMANCE=1``, set by ``.ci/run``, makes that a failure).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

SUITES = Path(os.environ.get("CONFORMANCE_DIR") or ROOT.parent / "shared" / "conformance")
PORT = 3000
EXPECTED = {"socket.io-protocol": ("sio", 32), "engine.io-protocol": ("eio", 24)}
WHERE = (
    "copy the test-suite/ folders of github.com/socketio/socket.io-protocol and "
    "github.com/socketio/engine.io-protocol to ../shared/conformance/<repository name>/ "
    "(or set CONFORMANCE_DIR)"
)


def unavailable(message: str) -> None:
    if os.environ.get("REQUIRE_CONFORMANCE") == "1":
        pytest.fail(f"{message} (REQUIRE_CONFORMANCE=1 makes this a failure)")
    pytest.skip(message)


def port_free() -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", PORT))
        except OSError:
            return False
    return True


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def reference_server(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[bytes]]:
    wait_for(port_free, 120, f"port {PORT} to be free (the suites need it)")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "conformance" / "server.py"), request.param],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"conformance server exited:\n{proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.5).close()
        except OSError:
            return False
        return True

    try:
        wait_for(listening, 30, "the conformance server")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def suite(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A writable copy of one suite with its dependencies installed."""
    source = SUITES / request.param
    if not (source / "test-suite.js").exists():
        unavailable(f"no {request.param} suite in {SUITES}: {WHERE}")
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is needed to run the compliance suites")
    copy = tmp_path / request.param
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("node_modules"))
    for path in [copy, *copy.rglob("*")]:  # the shared copy is read-only
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return copy


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("suite", "reference_server", "expected"),
    [(name, mode, count) for name, (mode, count) in EXPECTED.items()],
    indirect=["suite", "reference_server"],
    ids=list(EXPECTED),
)
def test_compliance_suite_passes_completely(suite: Path, reference_server: subprocess.Popen[bytes], expected: int):
    mocha = suite / "node_modules" / ".bin" / "mocha"
    result = subprocess.run(
        [str(mocha), "--reporter", "json", "test-suite.js"],
        cwd=suite,
        capture_output=True,
        text=True,
        timeout=300,
    )
    start = result.stdout.find("{")
    assert start >= 0, f"no JSON report from mocha:\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout[start:])
    failures = [f"{test['fullTitle']}: {test['err'].get('message')}" for test in report["failures"]]
    assert failures == [], "\n".join(failures)
    assert (report["stats"]["passes"], report["stats"]["tests"]) == (expected, expected)
    assert result.returncode == 0
