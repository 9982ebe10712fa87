"""The chapters' code is linted like the package's: each notebook's code cells, written out as one script, must
pass ruff under the project's own configuration (pyproject.toml), imports after the parameters cell allowed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_code_passes_the_project_ruff_rules(tmp_path):
    for nb in sorted((ROOT / "notebooks").glob("*.md")):
        cells = [c.source for c in jupytext.read(nb).cells if c.cell_type == "code"]
        (tmp_path / f"{nb.stem}.py").write_text("\n\n\n".join(cells) + "\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--config",
            "lint.extend-ignore = ['E402']",  # a page imports after its parameters cell
            "--config",
            "builtins = ['display']",
            "--config",
            "lint.isort.known-first-party = ['lmconv']",
            "--output-format",
            "concise",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


RUN_YOURSELF = "bootstrap.ensure_suite"  # the run-it-yourself cell, the same boilerplate in every chapter
MAX_CODE_LINES = 40
COMPUTING = re.compile(
    r"^\s*(for|while|if|elif|with|def|class)\b|\bpd\.|\bnp\.|\.groupby\(|\blambda\b|\bimport (pandas|numpy)\b"
)


def code_lines(nb_path: Path) -> list[str]:
    """A notebook's code lines, blank lines, comments and the run-it-yourself cell left out."""
    nb = jupytext.read(nb_path)
    lines: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code" and RUN_YOURSELF not in cell.source:
            lines += [ln for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return lines


@pytest.mark.parametrize("nb", sorted(p.name for p in (ROOT / "notebooks").glob("*.md")))
def test_chapter_is_a_thin_page_over_its_module(nb):
    """Parameters, one load, one call per section: no loops, conditionals, pandas or numpy in a chapter."""
    lines = code_lines(ROOT / "notebooks" / nb)
    computing = [ln for ln in lines if COMPUTING.search(ln)]
    assert not computing, f"{nb} computes in the page; move this to lmconv.chapters: {computing[:5]}"
    assert len(lines) <= MAX_CODE_LINES, f"{nb} has {len(lines)} code lines (at most {MAX_CODE_LINES})"
