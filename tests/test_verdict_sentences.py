"""Chapters re-executed on the smoke suite with non-default parameters: every verdict sentence must agree with
the sign and size of the glued numbers it describes (a typed conclusion could not follow them)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lmconv import book

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

RUNS = {
    "02_kl_convergence": {"rel_tol": 0.1},
    "03_what_converges_first": {"kl_boot": 40},
    "05_activations": {"cka_threshold": 0.8, "cka_nearly_all": 0.5},
    "07_spectral_stability": {"sosd_window": 3, "sosd_floor_frac": 0.25},
}


def glued(nb_path: Path) -> dict[str, str]:
    """The glued plain-text values of an executed notebook."""
    out = {}
    for cell in json.loads(nb_path.read_text())["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            text = o.get("data", {}).get("application/papermill.record/text/plain")
            if meta and text is not None:
                out[meta["name"]] = text.strip("'\"")
    return out


@pytest.fixture(scope="module")
def executed(smoke_suite, tmp_path_factory) -> dict[str, dict[str, str]]:
    bdir = tmp_path_factory.mktemp("verdicts") / "book"
    shutil.copytree(ROOT / "book", bdir, ignore=shutil.ignore_patterns("_build", "chapters", "_generated"))
    return {
        name: glued(book.run_chapter(name, {"profile": "smoke", **p}, bdir, quiet=True)) for name, p in RUNS.items()
    }


def test_reconvergence_verdict_follows_the_phase_flags(executed):
    g = executed["02_kl_convergence"]
    small, large = g["re_verdict_small"], g["re_verdict_large"]
    verdict = g["re_claim"].split(":")[0]
    if verdict == "Reproduced":
        assert large == "reconverges" and small == "does not reconverge"
    elif verdict == "Contradicted":
        assert small == "reconverges" and large == "does not reconverge"
    else:
        assert (small == "reconverges") == (large == "reconverges")
    assert "rel_tol" not in g["phase_sens_sentence"] and g["phase_sens_sentence"].startswith("Over the 27 settings")


def test_size_coefficient_words_follow_its_interval(executed):
    g = executed["03_what_converges_first"]
    lo, hi = float(g["delta_lo"]), float(g["delta_hi"])
    words = g["delta_words"]
    if lo > 0:
        assert "agree more" in words
    elif hi < 0:
        assert "disagree more" in words
    else:
        assert "contains zero" in words


def test_stabilisation_verdict_follows_the_shares(executed):
    g = executed["05_activations"]
    v = g["early_verdict"]
    share = float(g["within_attention_large"]), float(g["within_mlp_large"])
    if v.startswith("Reproduced"):
        assert min(share) >= 0.5 - 1e-9
    if v.startswith("Contradicted"):
        assert max(share) < 0.5
    assert g["slower_verdict"].split(":")[0] in ("Reproduced", "Contradicted", "Inconclusive")


def test_timing_sentence_direction_follows_delta(executed):
    g = executed["07_spectral_stability"]
    d = g["timing_delta"]
    m = re.search(r"median ([+−-]?\d+\.\d+) decades", d)
    if m:
        med = float(m.group(1).replace("−", "-"))
        assert ("later than" in d) == (med > 0) and ("earlier than" in d) == (med < 0)
    else:
        assert "cannot be computed" in d
    found = int(g["n_ts_found"])
    assert g["timing_found"].startswith("No run has a SoSD point") == (found == 0)
    assert (g["timing_lr"] == "") == (found == 0)
    v = g["sync_verdict"]
    if v.startswith("Reproduced"):
        assert m and abs(float(m.group(1).replace("−", "-"))) <= 0.2
    if v.startswith("Contradicted"):
        assert found > 0
