"""Chapter 7's module on the smoke suite: its sections glue exactly the names the page uses, and the numbers
they glue agree with the tables they summarise and with recomputations from the engine's raw tables."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from lmconv import book, chapters
from lmconv.chapters import params
from lmconv.chapters import spectral_stability as ch
from lmconv.lenses import spectral as sp

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_spectral_stability.md"
SECTIONS = book.page_sections(NOTEBOOK)
# glued since before the chapter had a module (the baseline keeps them), though its prose does not read them
UNREAD = {"size_small", "n_steps"}
P = params.from_namespace(book.page_parameters(NOTEBOOK, profile="smoke"))


@pytest.fixture(scope="module")
def d(smoke_suite) -> ch.SpectralData:
    return ch.load(P)


@pytest.fixture(scope="module")
def g(d) -> dict:
    return chapters.collect(ch, d, SECTIONS)


def test_sections_glue_exactly_the_names_the_page_reads(g):
    read = book.glue_names(NOTEBOOK)
    assert read <= set(g), f"the page reads names no section glues: {read - set(g)}"
    assert set(g) - read == UNREAD
    public = {n for n, f in inspect.getmembers(ch, inspect.isfunction) if f.__module__ == ch.__name__}
    assert public - {"load", "spectral_records"} - {n for n in public if n.startswith("_")} == set(SECTIONS)


def test_counts_follow_the_runs(d, g, smoke_suite):
    prof = smoke_suite.profile
    runs = len(prof.sizes) * len(prof.seeds)
    assert (g["n_sizes"], g["n_seeds"], g["n_runs"]) == (len(prof.sizes), len(prof.seeds), runs)
    assert g["tab_events"].data.shape[0] == runs
    assert list(g["tab_saturation"].data.index) == list(prof.sizes)
    assert g["tab_kinds"].data.shape[0] == len(prof.sizes) * len(sp.LAYER_KINDS)
    assert g["n_ts_found"] == int(g["tab_events"].data["t_S"].notna().sum())
    assert g["n_ts_found"] + g["n_split_cross"] <= runs
    assert 0 <= g["sat_earlier"] <= runs and 0 <= g["mlp_lower"] <= runs


def test_numbers_match_recomputations_from_the_raw_tables(d, g, smoke_suite):
    """Records per run, checkpoint gaps and singular-value counts, recomputed without the lens."""
    n = [len(smoke_suite.spectra_records(d.res.family, s, seed)[0]) for s in d.sizes for seed in d.res.seeds]
    assert g["n_records"] == int(np.median(n))
    steps = sorted(d.res.steps)
    assert (g["gap_min"], g["gap_max"]) == (min(np.diff(steps)), max(np.diff(steps)))
    hidden = smoke_suite.profile.sizes
    assert (g["r_small"], g["r_large"]) == (hidden[d.sizes[0]].hidden, hidden[d.sizes[-1]].hidden)
    assert g["dist_steps"].split(", ")[0] == "0" and g["dist_steps"].split(", ")[-1] == str(steps[-1])


def test_top_share_is_the_mean_largest_singular_value_share(d, g):
    w = d.res.weights
    w = w[(w["size"] == d.sizes[-1]) & w.kind.isin(sp.ATTENTION_KINDS)]
    for step, name in ((0, "p1_att_0"), (max(d.res.steps), "p1_att_T")):
        shares = [float(np.max(sv) / np.sum(sv)) for sv in w[w.step == step].sv]
        assert g[name] == pytest.approx(np.mean(shares), rel=1e-6)  # float32 singular values


def test_mirsky_bound_holds_and_ranges_are_ordered(g):
    assert g["bound_held"] == 1.0 and g["bound_held_l1"] == 1.0
    assert 0 <= g["bound_ratio_med"] <= g["bound_ratio_max"] <= 1
    assert g["sat_sigma_lo"] <= g["sat_sigma_hi"] and g["peak_step_lo"] <= g["peak_step_hi"]
    assert g["mlp_ratio_lo"] <= g["mlp_ratio_med"] <= g["mlp_ratio_hi"]
    if g["mlp_ratio_hi"] < 1:
        assert g["mlp_lower"] == g["n_runs"]


def test_sentences_agree_with_their_numbers(g):
    assert g["timing_found"].startswith("No run has a SoSD point") == (g["n_ts_found"] == 0)
    assert (g["timing_lr"] == "") == (g["n_ts_found"] == 0)
    for name in ("sat_verdict", "falls_verdict", "mlp_verdict", "sync_verdict"):
        assert g[name].split(":")[0] in ("Reproduced", "Contradicted", "Inconclusive"), name
    if g["n_ts_found"] == 0:
        assert not g["sync_verdict"].startswith(("Reproduced", "Contradicted"))
    assert set(ch.ELBOW_WORDS) == set(sp.ELBOW_RULES)
    assert g["elbow_rule"] == ch.ELBOW_WORDS[P.sosd_elbow_rule]


def test_spectral_records_defaults_to_every_size_and_seed(d, smoke_suite):
    """Without sizes or seeds, spectral_records reads every run of the profile: chapter 7's runs here."""
    rec = ch.spectral_records(smoke_suite, d.res.family, d.rule)
    assert rec.events[["size", "seed"]].equals(d.rec.events[["size", "seed"]])
    assert set(rec.val_log["size"]) == set(d.sizes) and set(rec.val_log.seed) == set(d.res.seeds)
