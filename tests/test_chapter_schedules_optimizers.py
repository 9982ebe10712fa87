"""Chapter 8's module (``lmconv.chapters.schedules_optimizers``) on the smoke profile's sweep, ``smoke-sweep``:
seven arms, one seed, 96 steps."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmconv import book, chapters
from lmconv.chapters import exercises, params
from lmconv.chapters import schedules_optimizers as ch
from lmconv.lenses import spectral as sp

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "08_schedules_optimizers.md"
SECTIONS = book.page_sections(NOTEBOOK)


@pytest.fixture(scope="module")
def d(smoke_sweep) -> ch.SweepData:
    return ch.load(params.from_namespace(book.page_parameters(NOTEBOOK, profile="smoke")))


@pytest.fixture(scope="module")
def g(d) -> dict:
    return chapters.collect(ch, d, SECTIONS)


def test_sections_glue_every_name_the_page_uses_and_the_page_shows_every_section(g):
    book.unused_glue(NOTEBOOK, g)  # every name the page uses is glued
    defined = {n for n, f in vars(ch).items() if hasattr(f, "__wrapped__") and f.__module__ == ch.__name__}
    assert set(SECTIONS) == defined and len(SECTIONS) == len(defined)


def test_setup_and_the_sweep_describe_the_profile(d, g, smoke_sweep):
    prof = smoke_sweep
    assert (g["sweep_name"], g["n_arms"], g["n_seeds"], g["n_seeds_profile"]) == ("smoke-sweep", 7, 1, 1)
    assert (g["size_name"], g["hidden"], g["layers"], g["steps"]) == ("xs", 16, 1, 96)
    assert (g["base_arm"], g["base_wd"], g["base_lr"]) == ("cosine", 0.1, 3.0e-3)
    assert (g["branch_from"], g["branch_step"]) == ("constant", 77)
    assert g["n_records"] == 96 and g["threads"] == prof.arm().train.threads
    assert list(g["tab_arms"].index) == list(prof.arms) == d.arms
    # two branched arms count for the 19 steps after step 77 each: 5 + 2 × 19/96 run-equivalents
    assert g["run_equiv"] == pytest.approx(5 + 2 * 19 / 96)
    assert g["plan_min"] == pytest.approx(g["run_equiv"] * g["per_run_s"] / 60)
    assert g["took_min"] > 0


def test_final_losses_agree_with_the_exercise(d, g):
    ranked = exercises.final_loss_by_arm(d.val_log)
    assert (g["loss_best_arm"], g["loss_worst_arm"]) == (ranked.index[0], ranked.index[-1])
    assert (g["loss_best"], g["loss_worst"]) == pytest.approx((ranked.iloc[0], ranked.iloc[-1]), rel=1e-12)
    assert g["loss_best"] <= g["loss_base"] <= g["loss_worst"]
    assert g["loss_base"] == pytest.approx(ranked["cosine"], rel=1e-12)


def test_per_arm_events_are_the_runs_medians(d):
    pa = d.per_arm
    assert list(pa.index) == d.arms and list(pa.changes) == [d.factor[a] for a in d.arms]
    for arm in d.arms:
        runs = d.events[d.events.family == arm]
        assert len(runs) == len(d.seeds)
        for col, got in (("t_S", pa.loc[arm, "t_S"]), ("t_L", pa.loc[arm, "t_L"]), ("delta", pa.loc[arm, "delta_med"])):
            want = np.median(runs[col].astype(float))
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want), (arm, col)
        assert (pa.loc[arm, "delta_n"], pa.loc[arm, "runs"]) == (runs.delta.notna().sum(), len(runs))
        last = d.val_log[(d.val_log.family == arm) & (d.val_log.step == 96)]
        assert pa.loc[arm, "final loss"] == pytest.approx(last.val_loss.mean(), rel=1e-12)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_alignment_numbers_agree_with_each_other(d, g):
    deltas = pd.Series({a: g[f"delta_{a}"] for a in d.arms})
    assert g["n_runs"] == len(d.arms) * len(d.seeds)
    assert g["n_found"] == sum(not math.isnan(g[f"ts_{a}"]) for a in d.arms)  # one seed: one run per arm
    assert g["n_arms_later"] == int((deltas > 0).sum())
    assert _same(g["delta_arm_lo"], deltas.min()) and _same(g["delta_arm_hi"], deltas.max())
    if deltas.notna().any():
        assert deltas[g["delta_arm_lo_name"]] == deltas.min() and deltas[g["delta_arm_hi_name"]] == deltas.max()
        assert g["ratio_lo"] == pytest.approx(10 ** deltas.min()) and g["ratio_hi"] == pytest.approx(10 ** deltas.max())
    else:
        assert g["delta_arm_lo_name"] == ch.NOT_SEEN
    a, b = g["delta_constant"], g["delta_cosine"]
    word = "(not comparable" if math.isnan(a) or math.isnan(b) else "later" if a > b else "earlier" if a < b else "at"
    assert g["const_vs_cos"].startswith(word)
    assert list(g["tab_events"].data.index) == d.arms


def test_weight_decay_sentence_reads_the_arms_in_weight_decay_order(d, g):
    by_wd = ["cosine_wd0", "cosine", "cosine_wd1"]  # weight decay 0, 0.1 and 1
    want = sp.weight_decay_sentence(
        [0.0, 0.1, 1.0], [g[f"norm_end_{a}"] for a in by_wd], [g[f"floor_{a}"] for a in by_wd]
    )
    assert g["wd_sentence"] == want
    assert all(g[f"norm_end_{a}"] > 0 and g[f"floor_{a}"] > 0 for a in d.arms)


def test_late_window_is_the_steps_after_the_branch_point(d, g):
    assert ch.decay_fraction(d) == pytest.approx(19 / 96)
    assert g["late_from"] == int(0.6 * 96) and g["lin_width"] == 1
    c = d.curves[d.curves.family == "constant"]
    start = 96 * (1 - 19 / 96)
    late = c[c.step > start].rate.mean()
    before = c[(c.step > start - 19) & (c.step <= start)].rate.mean()
    assert g["late_ratio_constant"] == pytest.approx(late / before, rel=1e-12)


def _within_slope(sub: pd.DataFrame) -> float:
    """Brute force: OLS slope of y on x, both demeaned within each matrix (one run, one optimizer)."""
    x = sub.x_nuclear - sub.groupby("matrix").x_nuclear.transform("mean")
    y = sub.y - sub.groupby("matrix").y.transform("mean")
    return float((x * y).sum() / (x * x).sum())


def test_scaling_slopes_per_run_and_the_one_seed_interval(d, g):
    st = sp.scaling_table(d.prof, d.deltas, d.norms)
    per = ch.run_slopes(d, st)
    assert list(per.arm) == d.arms and set(per.seed) == {1}
    for row in per.itertuples():
        assert row.slope == pytest.approx(_within_slope(st[st.family == row.arm]), rel=1e-9)
    tab = g["tab_slopes"].data
    assert list(tab.index) == d.arms
    assert g["arm_slope_lo"] == per.slope.min() and g["arm_slope_hi"] == per.slope.max()
    # one seed: nothing to resample, so no interval, and the text says so
    assert g["slope_seeds"] == 1 and g["slope_runs"] == len(d.arms)
    assert all(math.isnan(g[f"slope_{k}_{e}"]) for k in ("nuc", "fro", "spec") for e in ("lo", "hi"))
    assert "nothing to resample" in g["slope_interval"]
    assert g["slope_n"] == len(st) and 0 <= g["slope_r2"] <= 1


def test_alignment_where_the_sosd_point_is_found(d):
    """The smoke sweep's 96 steps show no ΔΣ floor (t_S is never found there): the same section on events where
    it is, two seeds per arm, one run of the Muon arm without t_S."""
    t_s = {"cosine": (300, 500), "constant": (200, 200), "wsd": (200, 210), "step": (200, 190)}
    t_s |= {"cosine_wd0": (400, 400), "cosine_wd1": (100, 120), "muon": (None, 800)}
    rows = [
        {"family": a, "size": "xs", "seed": k + 1, "t_S": ts[k], "t_L": 250.0, "peak_over_floor": 10.0 + k}
        for a, ts in t_s.items()
        for k in (0, 1)
    ]
    ev = pd.DataFrame(rows)
    ev["delta"] = [math.log10(r["t_S"] / r["t_L"]) if r["t_S"] else math.nan for r in rows]
    pa = ch.arm_events(ev, d.factor, d.arms, d.final)
    found = dataclasses.replace(d, events=ev, per_arm=pa)
    g = ch.sosd_alignment(found)
    assert g["ts_cosine"] == 400
    # a run without t_S leaves its arm's median t_S undefined, while δ's median is over the runs that have it
    assert math.isnan(g["ts_muon"]) and g["delta_muon"] == pytest.approx(math.log10(800 / 250))
    assert (pa.loc["muon", "delta_n"], pa.loc["muon", "runs"], pa.loc["cosine", "delta_n"]) == (1, 2, 2)
    assert g["delta_cosine"] == pytest.approx((math.log10(300 / 250) + math.log10(500 / 250)) / 2)
    assert g["n_found"] == 13 and g["n_runs"] == 14
    assert (g["delta_arm_lo_name"], g["delta_arm_hi_name"]) == ("cosine_wd1", "muon")
    assert g["delta_arm_hi"] == pytest.approx(math.log10(800 / 250))
    assert g["ratio_lo"] == pytest.approx(math.sqrt(100 * 120) / 250) and g["ratio_hi"] == pytest.approx(800 / 250)
    assert g["n_arms_later"] == 3  # cosine, cosine_wd0, muon
    assert g["const_vs_cos"] == "earlier"
    assert (g["ts_lo"], g["ts_hi"], g["ts_factor"]) == (110, 400, pytest.approx(400 / 110))
    assert g["branch_sentence"].startswith("WSD and step-wise decay share the constant arm's history up to step 77")
    assert "(t_S = 200)" in g["branch_sentence"]
    assert g["tab_events"].data.loc["muon", "peak/floor"] == 10.5
