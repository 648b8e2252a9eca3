"""The installed package: its import name does not collide with an application's own ``app``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import app, realtime_gateway
from realtime_gateway import Emitter, SyncEmitter, create_app
print(app.OWN, realtime_gateway.__file__)
"""


def test_installs_beside_a_projects_own_app_package(wheel: Path, tmp_path: Path) -> None:
    """A Flask/FastAPI-style project with its own ``app`` package can still import the gateway."""
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("OWN = 'the project app'\n")
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (site / "app").exists(), "the wheel must not install a top-level 'app' package"

    # the editable install of the checkout is looked up after sys.path; dependencies come from this interpreter's
    # site-packages, the gateway itself only from the wheel just installed
    env_path = f"{project}:{site}:{':'.join(p for p in sys.path if p.endswith('site-packages'))}"
    run = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {env_path.split(':')!r}\n{PROBE}"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    own, location = run.stdout.split(" /", 1)
    assert own == "the project app"
    assert Path("/" + location.strip()).is_relative_to(site)
