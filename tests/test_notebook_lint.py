"""The chapters' code is linted too: each notebook's cells, as jupytext writes them out as a script, must have no
unused import, undefined name or likely bug (pyflakes, bugbear, syntax)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_code_passes_pyflakes_and_bugbear(tmp_path):
    for nb in sorted((ROOT / "notebooks").glob("*.md")):
        jupytext.write(jupytext.read(nb), tmp_path / f"{nb.stem}.py", fmt="py:percent")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--isolated",
            "--select",
            "F,B,E9",
            "--config",
            "builtins = ['display']",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-4000:]
