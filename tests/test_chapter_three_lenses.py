"""Chapter 9's module on the smoke suite: every section runs, glues what the page uses, and its counts, gaps and
sentences agree with the events they summarise."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from lmconv import book, chapters
from lmconv.chapters import params
from lmconv.chapters import three_lenses as ch
from lmconv.lenses import synthesis as syn

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "09_three_lenses.md"
SECTIONS = book.page_sections(NOTEBOOK)
UNREAD = {"n_sizes", "n_seeds", "total"}  # glued (as before), unused in the prose


@pytest.fixture(scope="module")
def d(smoke_suite):
    return ch.load(params.from_namespace(book.page_parameters(NOTEBOOK, profile="smoke")))


@pytest.fixture(scope="module")
def glued(d):
    return chapters.collect(ch, d, SECTIONS)


def test_sections_glue_what_the_page_uses(glued):
    assert book.unused_glue(NOTEBOOK, glued) == UNREAD


def test_every_seed_pair_and_run_contributes_its_events(d, glued):
    assert glued["n_pairs"] == len(d.res.seeds) * (len(d.res.seeds) - 1)
    assert glued["total"] == d.res.suite.profile.arm().train.steps
    for size, g in d.events.groupby("size"):
        kl = g[g.event.str.startswith("kl_")]
        assert kl.unit.nunique() == glued["n_pairs"], size
        assert (g[g.event == "cka_attention"].unit.nunique()) == glued["n_seeds"], size
    assert glued["align_factor"] == pytest.approx(10 ** glued["align_tol"])


def test_event_table_has_every_size_and_event(d, glued):
    tab = glued["tab_events"]
    assert len(tab) == len(d.res.sizes) * len(syn.EVENTS)
    assert (tab.seen <= tab.units).all()
    seen = tab.dropna(subset=["median"])
    assert ((seen["min"] <= seen["median"]) & (seen["median"] <= seen["max"])).all()


def _median(d, size, event):
    s = d.events[(d.events["size"] == size) & (d.events.event == event)].step.dropna().astype(float)
    s = s[s.map(math.isfinite)]
    return s.median() if len(s) else float("nan")


def test_peak_to_attention_gap_is_the_log_ratio_of_the_medians(d, glued):
    for key in ("small", "large"):
        size = glued[f"size_{key}"]
        want = math.log10(_median(d, size, "cka_attention")) - math.log10(_median(d, size, "kl_peak"))
        got = glued[f"peak_cka_{key}"]
        assert got == pytest.approx(want, nan_ok=True)
    assert math.isnan(ch.gap(d.gap_table, "kl_peak", "no such event", d.res.sizes[0]))


def test_aligned_count_and_list_agree(d, glued):
    listed = [] if glued["aligned_list"] == "none" else glued["aligned_list"].split("; ")
    assert glued["n_pairs_aligned_everywhere"] == len(listed)
    tab = glued["tab_gaps"]
    assert len(tab) == glued["n_event_pairs"]
    assert (tab.sizes_aligned <= tab.sizes_measured).all()
    for a_and_b in listed:
        row = tab.loc[a_and_b.replace(" and ", "  ↔  ", 1)]
        assert row.sizes_aligned == row.sizes_measured > 0
        assert all(abs(row[s]) <= d.P.align_tol for s in d.res.sizes if not math.isnan(row[s]))


def test_decay_sentence_counts_the_late_events_seen(d, glued):
    seen = sum(not math.isnan(_median(d, size, event)) for size in d.res.sizes for event in syn.LATE_EVENTS)
    m = re.search(r"(\d+) late events", glued["says_decay"])
    assert (int(m.group(1)) if m else 0) == seen
    assert list(glued["tab_order"].columns) == d.res.sizes
