"""The commands the documentation gives run on any checkout, not only on the machine they were written on."""

from __future__ import annotations

import re

from conftest import ROOT

DOCS = ["README.md", "bench/README.md", "docs/benchmarks.md", "bench/run.py"]
# an interpreter named by an absolute path (/work/venv/bin/python, /usr/local/bin/python3...)
ABSOLUTE_PYTHON = re.compile(r"(?<![\w.])/[\w./-]*/bin/python[\d.]*\b")


def test_docs_run_the_projects_venv_not_an_absolute_interpreter():
    found = {name: hits for name in DOCS if (hits := ABSOLUTE_PYTHON.findall((ROOT / name).read_text()))}
    assert not found, f"use .venv/bin/python (relative to the repository root): {found}"
    assert ".venv/bin/python bench/run.py" in (ROOT / "docs" / "benchmarks.md").read_text()
