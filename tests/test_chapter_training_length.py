"""Chapter 10's module on the smoke ladder: every section runs, glues what the page uses, and its numbers are
the profile's, the logs' and the judges' own."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmconv import book, chapters
from lmconv.book import status
from lmconv.chapters import params
from lmconv.chapters import training_length as ch
from lmconv.checkpoints import summaries
from lmconv.errors import LmconvError
from lmconv.findings import scorecard
from lmconv.lenses import ladder as L

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "10_training_length.md"
SECTIONS = book.page_sections(NOTEBOOK)


@pytest.fixture(scope="module")
def d(smoke_ladder):
    return ch.load(params.from_namespace(book.page_parameters(NOTEBOOK, profile="smoke")))


@pytest.fixture(scope="module")
def glued(d):
    return chapters.collect(ch, d, SECTIONS)


def test_sections_glue_what_the_page_uses(glued):
    assert book.unused_glue(NOTEBOOK, glued) == set()


def test_the_design_numbers_are_the_profiles(d, glued):
    prof = d.prof
    assert glued["ladder_profile"] == "smoke-ladder" == L.companion("smoke")
    assert glued["trunk_steps"] == prof.arm("constant").train.steps
    assert glued["lengths_text"] == ", ".join(f"{a.train.steps:,}" for a in prof.arms.values() if a.train.branch_from)
    assert glued["steps_ladder"] == sum(
        a.train.steps - (a.train.branch_from["step"] if a.train.branch_from else 0) for a in prof.arms.values()
    )
    assert glued["train_minutes"] == pytest.approx(status.training_seconds(prof.name) / 60)
    assert glued["train_minutes"] > 0
    pp = summaries.polypythia_tokens_per_parameter()
    assert (glued["pp_tpp_min"], glued["pp_tpp_max"]) == (pp.min(), pp.max())
    assert glued["tpp_max"] < glued["pp_tpp_min"]  # the ladder does not reach the papers' regime, and says so


def test_the_table_holds_every_rung_and_the_judges_outcomes(d, glued):
    tab = glued["tab_ladder"]
    assert len(tab) == len(d.lad.sizes) * len(L.lengths(d.lad)) * 2
    for (size, n, variant), row in tab.iterrows():
        for c in L.CLAIMS:
            assert row[c].startswith(d.lad.verdicts[(n, variant)][c].outcome), (size, n, variant, c)


def test_each_sentence_is_its_answer(d, glued):
    for c, short in ch.SHORT.items():
        a = d.answers[c]
        assert glued[f"says_{short}"] == a.sentence
        assert a.sentence.startswith("Depends" if a.length == "yes" else "No dependence")
        assert ("the decay changes the verdict at" in a.sentence) == (a.decay == "yes")


def test_the_scorecard_column_follows_the_ladder(d, monkeypatch):
    col = scorecard.length_dependence("smoke")
    for c, a in d.answers.items():
        assert col[c].startswith(a.length) and col[c].endswith(a.decay)
    assert {v for k, v in col.items() if k not in L.CLAIMS} == {scorecard.NOT_TESTED}

    def untrained(*a, **k):
        raise LmconvError("the 'smoke-ladder' suite has not been trained", "lmconv train --profile smoke-ladder")

    monkeypatch.setattr(L, "measure", untrained)
    assert set(scorecard.length_dependence("smoke").values()) == {"not measured"}
