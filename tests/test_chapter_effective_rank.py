"""Chapter 6's module on the smoke suite: every section runs, glues what the page uses, and its numbers agree with
a recomputation from the engine's raw rank table."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmconv import book, chapters
from lmconv.chapters import effective_rank as ch
from lmconv.chapters import params
from lmconv.lenses import activations as act

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_effective_rank.md"
SECTIONS = book.page_sections(NOTEBOOK)
# glued beyond the prose (the same numbers are glued for both sizes): the lowest seed-median weight PER over
# training, and the largest size's gradient peak
UNREAD = {f"pw_{c}_{k}_min" for c in act.CIRCUITS for k in ("small", "large")} | {
    f"pg_{c}_large_max" for c in act.CIRCUITS
}


@pytest.fixture(scope="module")
def d(smoke_suite):
    return ch.load(params.from_namespace(book.page_parameters(NOTEBOOK, profile="smoke", rank_n_boot=100)))


@pytest.fixture(scope="module")
def glued(d):
    return chapters.collect(ch, d, SECTIONS)


def test_sections_glue_what_the_page_uses(glued):
    assert book.unused_glue(NOTEBOOK, glued) == UNREAD


def test_shapes_have_one_row_per_size(d, glued):
    shapes = glued["tab_shapes"]
    assert list(shapes.index) == d.res.sizes
    assert glued["layers_min"] == shapes.layers.min() <= shapes.layers.max() == glued["layers_max"]
    assert (shapes.d_head * shapes.heads == shapes.d_model).all()


def _raw(d, circuits, size, kind="weight"):
    r = d.res.rank
    return r[(r.v_slice == d.P.v_slice) & r.circuit.isin(circuits) & (r["size"] == size) & (r.kind == kind)]


def test_final_pooled_attention_per_is_the_median_over_seeds_of_each_runs_median(d, glued):
    for key, size in d.sizes:
        raw = _raw(d, ["ov_layer", "ov_head"], size)
        per_seed = raw[raw.step == d.last].groupby("seed").per.median()
        assert glued[f"pw_attention_{key}_last"] == pytest.approx(per_seed.median())
        assert glued[f"pw_attention_{key}_lo"] == pytest.approx(per_seed.min())
        assert glued[f"pw_attention_{key}_hi"] == pytest.approx(per_seed.max())
        assert glued[f"pw_attention_{key}_min"] <= glued[f"pw_attention_{key}_last"]
        mlp = _raw(d, ["mlp_out"], size, "grad").groupby(["step", "seed"]).per.median().groupby("step").median()
        assert glued[f"pg_mlp_{key}_max"] == pytest.approx(mlp.max())


def test_order_words_follow_the_final_per(d, glued):
    for c in act.CIRCUITS:
        rises = glued[f"pw_{c}_small_last"] < glued[f"pw_{c}_large_last"]
        if len(d.res.sizes) == 2:
            assert glued[f"order_{c}"] == ("rises" if rises else "does not rise")
        elif not rises:
            assert glued[f"order_{c}"] == "does not rise"


def test_head_spread_is_over_every_head_and_seed_at_the_last_checkpoint(d, glued):
    for key, size in d.sizes:
        raw = _raw(d, ["ov_head"], size)
        final = raw[raw.step == d.last].per
        assert glued[f"head_min_{key}"] == pytest.approx(final.min())
        assert glued[f"head_max_{key}"] == pytest.approx(final.max())
    assert 1 <= glued["n_shown"] <= len(d.res.steps)


def test_verdicts_agree_with_their_intervals(d, glued):
    for c in act.CIRCUITS:
        for scope in ("within", "pooled"):
            rho, lo, hi = (glued[f"rho_{c}_{scope}{s}"] for s in ("", "_lo", "_hi"))
            assert glued[f"verdict_{c}_{scope}"] == act.verdict(rho, lo, hi, -1)
    counts = [glued[f"n_{v.replace(' ', '_')}"] for v in ch.VERDICTS]
    assert sum(counts) == glued["n_tests"] == len(act.CIRCUITS) * len(act.RANK_MEASURES) * 2 * 2
    assert glued["n_runs"] == len(d.res.sizes) * len(d.res.seeds)
    assert glued["n_units"] == glued["tab_shapes"].layers.sum() * len(d.res.seeds)  # a layer of a run each


def test_step_counts_are_nested(d, glued):
    for c in act.CIRCUITS:
        assert glued[f"steps_pos_{c}"] <= glued[f"steps_sig_{c}"] <= glued[f"steps_total_{c}"]
        assert glued[f"steps_total_{c}"] == len(d.res.steps) - 1  # every checkpoint but the last


def test_v_slice_table_and_the_mlp_not_depending_on_it(d, glued):
    tab = glued["tab_vslice"]
    assert len(tab) == 2 * len(d.res.sizes)
    assert glued["vslice_max"] == pytest.approx(tab["max |Δ median| over training"].max(), abs=5e-4)
    r = d.res.rank
    mlp = r[r.circuit == "mlp_out"].pivot_table(
        index=["size", "seed", "step", "layer", "kind"], columns="v_slice", values="per"
    )
    assert mlp["split"].to_numpy() == pytest.approx(mlp["faithful"].to_numpy())
