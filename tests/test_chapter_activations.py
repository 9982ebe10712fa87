"""Chapter 5's module (lmconv.chapters.activations) on the smoke suite: every section returns exactly the names
the page glues, and the numbers and sentences agree with the stabilisation table they summarise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmconv import book, chapters
from lmconv.chapters import activations as ch
from lmconv.chapters import params
from lmconv.chapters.exercises import linear_cka
from lmconv.lenses import activations as act

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_activations.md"
SECTIONS = book.page_sections(NOTEBOOK)


@pytest.fixture(scope="module")
def d(smoke_suite) -> ch.ActivationsData:
    return ch.load(params.from_namespace(book.page_parameters(NOTEBOOK, profile="smoke")))


@pytest.fixture(scope="module")
def g(d) -> dict:
    return chapters.collect(ch, d, SECTIONS)


def test_sections_glue_exactly_the_names_the_page_uses(g):
    used, extra = book.glue_names(NOTEBOOK), book.unused_glue(NOTEBOOK, g)
    # the claim's numbers are glued for both sizes; the prose quotes only some of the smallest size's
    assert {n.replace("_small", "_large") for n in extra} <= used and all("_small" in n for n in extra), extra


def test_parameters_reach_the_page(d, g):
    assert (g["threshold"], g["min_run"], g["nearly_all"]) == (0.9, 2, 0.9)
    assert g["estimator"] == "biased" and g["attn_label"] == act.ATTENTION_LABELS["attn_ov"]
    assert (g["size_small"], g["size_large"]) == ("xs", "s") and g["n_seeds"] == 3


def test_step_at_is_the_last_checkpoint_within_the_paper_fraction(d, g):
    limit = g["within_step"]
    assert g["step_at"] <= limit < min(s for s in d.res.steps if s > g["step_at"])


def test_cka_at_is_the_median_over_seeds_of_the_median_over_layers(d, g):
    at = d.cka[d.cka.step == g["step_at"]]
    for key, size in (("small", d.ends["small"]), ("large", d.ends["large"])):
        for c in act.CIRCUITS:
            sub = at[(at["size"] == size) & (at.circuit == c)]
            per_seed = [float(np.median(s.cka)) for _, s in sub.groupby("seed")]
            assert g[f"cka_at_{c}_{key}"] == pytest.approx(float(np.median(per_seed)))
            assert (g[f"cka_at_{c}_{key}_lo"], g[f"cka_at_{c}_{key}_hi"]) == (min(per_seed), max(per_seed))


def test_claim_numbers_recomputed_from_the_units(d, g):
    for key, size in (("small", d.ends["small"]), ("large", d.ends["large"])):
        for c in act.CIRCUITS:
            u = d.stab[(d.stab["size"] == size) & (d.stab.circuit == c)]
            early = u.fraction <= d.within
            seeds = [float(early[u.seed == s].mean()) for s in sorted(set(u.seed))]
            assert g[f"within_{c}_{key}"] == pytest.approx(float(early.mean()))
            assert (g[f"within_{c}_{key}_lo"], g[f"within_{c}_{key}_hi"]) == (min(seeds), max(seeds))
            holds = early.mean() >= d.P.cka_nearly_all
            assert g[f"claim_{c}_{key}"] == ("holds" if holds else "does not hold")
    both = {size for size in d.res.sizes if all(d.summary.set_index(["size", "circuit"]).loc[size].claim)}
    assert g["claim_sizes"] == (", ".join(s for s in d.res.sizes if s in both) or "none")
    assert g["n_units"] == len(d.res.seeds) * (1 + 2) * len(act.CIRCUITS)  # smoke: sizes of 1 and 2 layers
    assert g["n_never"] == int((d.stab.fraction == np.inf).sum())


def test_early_verdict_follows_the_per_seed_shares(d, g):
    shares = act.early_shares(d.stab, d.within, d.res.sizes)
    larger = [v for s in d.res.sizes[1:] for v in shares[s]]
    v = g["early_verdict"]
    if v.startswith("Reproduced"):
        assert min(larger) >= d.P.cka_nearly_all
    if v.startswith("Contradicted"):
        assert max(larger) < d.P.cka_nearly_all
    assert v.split(":")[0] in ("Reproduced", "Contradicted", "Inconclusive", "Not measured")
    assert g["slower_verdict"].split(":")[0] in ("Reproduced", "Contradicted", "Inconclusive", "Not measured")


def test_layer_order_words_follow_the_interval(g):
    for c in act.CIRCUITS:
        rho, lo, hi = g[f"layer_rho_{c}"], g[f"layer_rho_{c}_lo"], g[f"layer_rho_{c}_hi"]
        words = g[f"layer_order_{c}"]
        if lo > 0:
            assert words == ch.LAYER_ORDER_WORDS["as the paper"]
        elif hi < 0:
            assert words == ch.LAYER_ORDER_WORDS["opposite to the paper"]
        else:
            assert "interval includes 0" in words or "undefined" in words, (rho, lo, hi, words)


def test_highest_passing_threshold_passes_and_higher_ones_fail(d, g):
    for key, size in (("small", d.ends["small"]), ("large", d.ends["large"])):
        for c in act.CIRCUITS:
            holds = {}
            for th in d.P.cka_threshold_sweep:
                st = act.stabilisation(d.cka, d.total_steps, threshold=th, min_run=d.P.cka_min_run)
                u = st[(st["size"] == size) & (st.circuit == c)]
                holds[th] = (u.fraction <= d.within).mean() >= d.P.cka_nearly_all
            passing = [th for th, ok in holds.items() if ok]
            want = f"CKA ≥ {max(passing):g}" if passing else "none of those tried"
            assert g[f"pass_{c}_{key}"] == want


def test_tables_have_one_row_per_size_and_choice(d, g):
    n = len(d.res.sizes)
    assert len(g["tab_stab"]) == n * len(act.CIRCUITS)
    assert len(g["tab_attention"]) == n * len(act.ATTENTION_MODULES)
    assert g["tab_attention"].index.get_level_values("attention")[0] == act.ATTENTION_LABELS["attn_ov"]
    assert len(g["tab_estimator"]) == n * len(act.CIRCUITS) * 4
    assert len(g["tab_sweep"]) == n * len(act.CIRCUITS)


def test_choice_differences_are_consistent(d, g):
    assert g["mad_estimator_max"] >= max(g["mad_estimator_only"], g["mad_variant_only"]) > 0
    assert g["mad_attention_max"] >= max(g["mad_faithful_small"], g["mad_faithful_large"]) > 0
    assert g["mad_attention_size"] in d.res.sizes and 0 <= g["share_range_attention"] <= 1


def test_invariance_example_is_rotation_and_scale_free():
    x, y, q = ch.invariance_example(n=64, width=8, seed=1)
    assert x.shape == y.shape == (64, 8) and np.allclose(q.T @ q, np.eye(8))
    base = linear_cka(x, y)
    assert 0 < base < 1
    assert linear_cka(x, y @ q) == pytest.approx(base) and linear_cka(x, 7 * y) == pytest.approx(base)
