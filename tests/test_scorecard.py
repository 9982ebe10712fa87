"""The scorecard: per-token effects against their definitions, and every claim judged on the smoke suite."""

from __future__ import annotations

import numpy as np
import pytest

from lmconv.findings import claims, scorecard
from lmconv.lenses.kl import Cube


def cube(y: np.ndarray, pairs) -> Cube:
    """A one-step cube of KL = −y (values[step, pair, token])."""
    return Cube("s", np.array([10]), tuple(pairs), "pairs", -y[None])


PAIRS = [(i, j) for i in (1, 2, 3) for j in (1, 2, 3) if i != j]


def test_token_slope_is_the_pairs_mean_least_squares_slope():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 4, 300)
    slopes = np.linspace(0.01, 0.03, len(PAIRS))
    y = slopes[:, None] * x[None] + rng.normal(0, 0.01, (len(PAIRS), x.size))
    docs = np.repeat(np.arange(30), 10)
    e = scorecard.token_effects(cube(y, PAIRS), x, docs, n_boot=200)
    ref = np.mean([np.polyfit(x, row, 1)[0] for row in y])
    assert e.value == pytest.approx(ref, rel=1e-9)
    assert e.interval.lo < e.value < e.interval.hi
    assert "30 documents" in e.interval.method and len(e.units) == len(PAIRS)


def test_token_group_difference_and_a_null_case():
    rng = np.random.default_rng(1)
    n = 400
    groups = np.array(["a", "b", None, "a"] * (n // 4), dtype=object)
    docs = np.repeat(np.arange(40), 10)
    y = rng.normal(0, 0.05, (len(PAIRS), n)) + 0.2 * (groups == "a")[None]
    e = scorecard.token_effects(cube(y, PAIRS), np.zeros(n), docs, groups, n_boot=200)
    ref = np.mean([row[groups == "a"].mean() - row[groups == "b"].mean() for row in y])
    assert e.value == pytest.approx(ref)
    assert e.interval.lo > 0.1
    null = rng.normal(0, 0.05, (len(PAIRS), n))
    z = scorecard.token_effects(cube(null, PAIRS), np.zeros(n), docs, groups, n_boot=200)
    assert z.interval.lo < 0 < z.interval.hi


def test_scorecard_on_the_smoke_suite(smoke_results):
    ev = scorecard.evidence("smoke")
    verdicts = scorecard.collect(ev)
    assert [v.claim for v in verdicts] == [c.id for c in claims.CLAIMS]
    assert all(v.outcome in claims.OUTCOMES and v.reason for v in verdicts)
    assert sum(scorecard.counts(verdicts).values()) == len(claims.CLAIMS)
    md = scorecard.markdown(verdicts, "smoke")
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "{cite:p}" in ln]
    items = [ln for ln in md.splitlines() if ln.startswith("- **")]
    assert len(rows) == len(items) == len(verdicts) and "{ref}`ch-spectral`" in md
    assert "nan" not in scorecard.headline(verdicts, "smoke").lower()
    tab = scorecard.table(verdicts, "smoke")
    assert not tab["value [interval]"].str.contains("nan").any()
    assert "tokens per parameter" in scorecard.setting("smoke")["spectra"]
    # the page over it: the names its prose uses, counts that add up, the settings table one row per lens
    from lmconv import book, chapters
    from lmconv.chapters import params
    from lmconv.chapters import scorecard as page

    nb = book.notebook_source("scorecard")
    g = chapters.collect(
        page, page.load(params.from_namespace(book.page_parameters(nb, profile="smoke"))), book.page_sections(nb)
    )
    assert book.glue_names(nb) <= set(g)
    assert g["n_reproduced"] + g["n_contradicted"] + g["n_inconclusive"] == g["n_claims"] == len(claims.CLAIMS)
    assert list(g["tab_setting"].index) == list(scorecard.setting("smoke"))


def test_an_unfinished_sweep_leaves_its_claims_inconclusive(monkeypatch):
    from lmconv.errors import LmconvError
    from lmconv.lenses import spectral as sp

    monkeypatch.setattr(scorecard.analysis.Suite, "open", classmethod(lambda cls, name: object()))

    def unfinished(suite):
        raise LmconvError("no seed of the 'sweep' suite has finished in every arm")

    monkeypatch.setattr(sp, "complete_seeds", unfinished)
    ev = scorecard._sweep_evidence("default")
    assert ev == {"sosd.across_schedules": (None,), "sosd.norm_floor": (None,)}
    assert claims.judge("sosd.across_schedules", *ev["sosd.across_schedules"]).outcome == claims.INCONCLUSIVE
