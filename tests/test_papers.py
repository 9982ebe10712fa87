"""``lmconv.findings.papers`` is the one home of the papers' numbers: a leaf module, each number defined once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lmconv.checkpoints import suites
from lmconv.findings import papers

SRC = Path(papers.__file__).parent


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_papers_is_a_leaf_module():
    tree = ast.parse((SRC / "papers.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [getattr(n, "module", None) for n in imports] == ["__future__"]


def test_pythia_final_step_is_typed_once():
    """143000 appears as a number in papers.py only (suites and the lenses import it)."""
    where = [
        f"{f.relative_to(SRC)}:{n.lineno}"
        for f in modules()
        for n in ast.walk(ast.parse(f.read_text()))
        if isinstance(n, ast.Constant) and n.value == papers.PYTHIA_STEPS and type(n.value) is int
    ]
    assert where == [
        "papers.py:"
        + str(
            next(
                i
                for i, line in enumerate((SRC / "papers.py").read_text().splitlines(), 1)
                if line.startswith("PYTHIA_STEPS")
            )
        )
    ]
    assert papers.POLYPYTHIA_STEPS[-1] == papers.PYTHIA_STEPS == suites.parse_revision("main")


def test_no_paper_constant_lives_outside_papers():
    """No module but papers.py assigns a module-level PAPER_*, PYTHIA_* or POLYPYTHIA_* name."""
    prefixes = ("PAPER_", "PYTHIA_", "POLYPYTHIA_")  # (KL_, SOSD_ also name settings of ours)
    found = []
    for f in modules():
        if f.name == "papers.py":
            continue
        for n in ast.parse(f.read_text()).body:
            targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
            names = [e.id for t in targets for e in ast.walk(t) if isinstance(e, ast.Name)]
            found += [f"{f.relative_to(SRC)}:{x}" for x in names if x.startswith(prefixes)]
    assert found == [], found


def test_pythia_schedule_numbers_agree():
    assert set(papers.PYTHIA_LR) == set(papers.POLYPYTHIA_SHAPES) == set(papers.POLYPYTHIA_SIZES)
    assert papers.PYTHIA_WARMUP == papers.PYTHIA_STEPS // 100  # "1% of training"
    ratios = {size: lo / hi for size, (hi, lo) in papers.PYTHIA_LR.items()}
    assert ratios == pytest.approx(dict.fromkeys(papers.PYTHIA_LR, papers.PYTHIA_LR_FINAL_RATIO))
    assert pytest.approx(0.1) == papers.PYTHIA_LR_FINAL_RATIO
    assert len(papers.KL_FREQ_LABELS) == len(papers.KL_FREQ_BIN_EDGES) + 1  # one label per decade bin
    assert papers.KL_ICL_SHORT < papers.KL_ICL_LONG <= papers.KL_CONTEXT
    assert papers.KL_ICL_PLATEAU[0] < papers.KL_ICL_PLATEAU[1]
    assert papers.SOSD_LOSS_END < papers.SOSD_LOSS_START
