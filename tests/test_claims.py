"""Claims and their judges: a constructed case where the claim holds gives *reproduced*, a reversed one
*contradicted*, noise or missing data *inconclusive*; the small-sample statistics against brute force."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from lmconv.errors import LmconvError
from lmconv.findings import claims
from lmconv.findings.claims import CONTRADICTED, INCONCLUSIVE, REPRODUCED, Estimate
from lmconv.metrics import stats

RNG = np.random.default_rng(0)


def est(values):
    return claims.estimate(values)


# ------------------------------------------------------------------------------------------ statistics


def test_exact_bootstrap_enumerates_every_distinct_resample():
    counts, probs = stats._multisets(4)
    assert len(counts) == stats.n_distinct_resamples(4) == 35
    assert probs.sum() == pytest.approx(1.0)
    # brute force: all 4**4 ordered resamples, each with probability 1/256
    v = np.array([0.1, 0.5, 0.2, 0.9])
    means = sorted(np.mean(v[list(idx)]) for idx in itertools.product(range(4), repeat=4))
    iv = stats.mean_interval(v, level=0.8)
    assert iv.lo == pytest.approx(means[int(np.ceil(0.1 * 256)) - 1])
    assert iv.hi == pytest.approx(means[int(np.ceil(0.9 * 256)) - 1])
    assert "35 distinct resamples" in iv.method


def test_interval_degenerate_and_large_samples():
    assert stats.mean_interval([2.0]).lo == 2.0
    assert math.isnan(stats.mean_interval([]).lo)
    iv = stats.mean_interval(RNG.normal(1.0, 0.1, 40))
    assert "BCa" in iv.method and iv.lo < 1.0 < iv.hi + 0.05
    with pytest.raises(LmconvError):
        stats.mean_interval([1, 2], stat="mode")


def test_sign_test_cannot_pass_five_percent_with_four_seeds():
    t = stats.sign_test([1, 2, 3, 4])
    assert (t.n_pos, t.n_neg, t.p_pos) == (4, 0, 1 / 16)
    assert stats.sign_test([1, -1, 0, np.nan]).n == 2


def test_trend_test_exact_matches_brute_force():
    groups = [[1.0, 2.0], [3.0, 2.5], [5.0, 4.0]]
    t = stats.trend_test(groups)
    y = np.concatenate(groups)
    x = np.repeat([0.0, 1.0, 2.0], 2)
    rho = stats._spearman(x, y)
    perms = {tuple(p) for p in itertools.permutations(x)}
    hits = sum(abs(stats._spearman(np.array(p), y)) >= abs(rho) - 1e-12 for p in perms)
    assert t.rho == pytest.approx(rho) and t.p == pytest.approx(hits / len(perms))
    assert "exact" in t.method and len(perms) == 90


def test_seed_pair_weights_follow_seed_counts():
    pairs = [(i, j) for i in (1, 2, 3) for j in (1, 2, 3) if i != j]
    w = stats.seed_pair_weights(pairs, 200, seed=1)
    assert w.shape == (200, 6)
    # a pair and its reverse always weigh the same; a resample of one repeated seed weighs nothing
    assert np.array_equal(w[:, pairs.index((1, 2))], w[:, pairs.index((2, 1))])
    assert ((w.sum(axis=1) == 0) | (w.sum(axis=1) >= 2)).all()


# ------------------------------------------------------------------------------------------ generic rule


def test_directional_rule_three_ways():
    holds = {"s": est([0.5, 0.6, 0.55, 0.52]), "l": est([0.8, 0.9, 0.85, 0.82])}
    rev = {"s": est([-0.5, -0.6, -0.55, -0.52]), "l": est([-0.8, -0.9, -0.85, -0.82])}
    noise = {"s": est([-0.5, 0.6, -0.2, 0.3]), "l": est([0.8, -0.9, 0.1, -0.2])}
    kw = dict(unit="seed", what_holds="up", what_reversed="down")
    assert claims.directional("x", "stat", holds, +1, **kw).outcome == REPRODUCED
    assert claims.directional("x", "stat", rev, +1, **kw).outcome == CONTRADICTED
    assert claims.directional("x", "stat", noise, +1, **kw).outcome == INCONCLUSIVE
    assert claims.directional("x", "stat", holds, -1, **kw).outcome == CONTRADICTED
    assert claims.directional("x", "stat", {}, +1, **kw).outcome == INCONCLUSIVE


def test_verdict_rejects_unknown_outcomes_and_registry_is_complete():
    with pytest.raises(LmconvError):
        claims.Verdict("x", "maybe", "s", None, None)  # type: ignore[arg-type]
    ids = [c.id for c in claims.CLAIMS]
    assert len(ids) == len(set(ids))
    for c in claims.CLAIMS:
        assert callable(getattr(claims, c.judge)), c.judge
        assert c.source in ("paper text", "paper code", "secondary reading", "our reading")
    with pytest.raises(LmconvError, match="unknown claim"):
        claims.claim("nope")


# ------------------------------------------------------------------------------------------ cross-seed KL


def phases(u, c, d, r, fall=0.2):
    p = SimpleNamespace(
        has_uniform=u, has_convergence=c, has_divergence=d, has_reconvergence=r, fall=fall if d else None
    )
    return p


def spread(u, c, d, r, fall=0.2, n=6, n_re=None):
    pairs = tuple(phases(u, c, d, r, fall + 0.01 * k) for k in range(n))
    return SimpleNamespace(mean_curve=phases(u, c, d, r, fall), pairs=pairs, n_pairs=n, n_reconvergence=n if r else 0)


def test_four_phases():
    ok = {"s": spread(1, 1, 1, 0), "l": spread(1, 1, 1, 1)}
    assert claims.judge_four_phases(ok).outcome == REPRODUCED
    none = {"s": spread(1, 0, 1, 0), "l": spread(1, 0, 0, 0)}
    assert claims.judge_four_phases(none).outcome == CONTRADICTED
    part = {"s": spread(1, 1, 0, 0), "l": spread(1, 1, 1, 0)}
    v = claims.judge_four_phases(part)
    assert v.outcome == INCONCLUSIVE and "l: uniform, convergence, divergence" in v.reason


def test_reconvergence_by_size():
    ok = {"s": spread(1, 1, 1, 0, 0.01), "m": spread(1, 1, 1, 1, 0.2), "l": spread(1, 1, 1, 1, 0.3)}
    v = claims.judge_reconvergence(ok)
    assert v.outcome == REPRODUCED and v.value == pytest.approx(0.3)
    rev = {"s": spread(1, 1, 1, 1, 0.3), "l": spread(1, 1, 1, 0, 0.01)}
    assert claims.judge_reconvergence(rev).outcome == CONTRADICTED
    both = {"s": spread(1, 1, 1, 1, 0.3), "l": spread(1, 1, 1, 1, 0.3)}
    assert "every size reconverges" in claims.judge_reconvergence(both).reason
    assert claims.judge_reconvergence({"s": spread(1, 1, 1, 0)}).outcome == INCONCLUSIVE


def test_token_claims_and_pos_order():
    pos = {
        "s": Estimate(0.01, stats.Interval(0.005, 0.02, 0.9, "m", 6)),
        "l": Estimate(0.02, stats.Interval(0.01, 0.03, 0.9, "m", 6)),
    }
    neg = {k: Estimate(-e.value, stats.Interval(-e.interval.hi, -e.interval.lo, 0.9, "m", 6)) for k, e in pos.items()}
    mixed = {"s": pos["s"], "l": Estimate(0.0, stats.Interval(-0.01, 0.01, 0.9, "m", 6))}
    for judge in (claims.judge_frequency, claims.judge_function_words):
        assert judge(pos).outcome == REPRODUCED
        assert judge(neg).outcome == CONTRADICTED
        assert judge(mixed).outcome == INCONCLUSIVE
    v = claims.judge_pos_order({"s": ["IN", "DT", "Nouns"], "l": ["IN", "DT", "Nouns"]})
    assert v.outcome == INCONCLUSIVE and v.value == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ activations


def test_early_stabilisation():
    assert claims.judge_early_stabilisation({"s": [0.1] * 4, "l": [0.95, 1.0, 0.92, 0.97]}).outcome == REPRODUCED
    assert claims.judge_early_stabilisation({"s": [1.0] * 4, "l": [0.0, 0.1, 0.05, 0.0]}).outcome == CONTRADICTED
    assert claims.judge_early_stabilisation({"s": [0.0] * 4, "l": [0.85, 0.95, 0.9, 0.88]}).outcome == INCONCLUSIVE


def test_smaller_slower():
    fast_large = {"s": [0.8, 0.9, 0.85, 0.95], "m": [0.5, 0.55, 0.6, 0.52], "l": [0.1, 0.2, 0.15, 0.12]}
    v = claims.judge_smaller_slower(fast_large)
    assert v.outcome == REPRODUCED and v.value < 0
    slow_large = {"s": fast_large["l"], "m": fast_large["m"], "l": fast_large["s"]}
    assert claims.judge_smaller_slower(slow_large).outcome == CONTRADICTED
    noise = {"s": [0.1, 0.9, 0.5, 0.3], "m": [0.2, 0.8, 0.6, 0.4], "l": [0.15, 0.85, 0.55, 0.35]}
    assert claims.judge_smaller_slower(noise).outcome == INCONCLUSIVE
    # "never" ranks after every real point
    never = {"s": [math.inf] * 4, "m": [0.5, 0.55, 0.6, 0.52], "l": [0.1, 0.2, 0.15, 0.12]}
    assert claims.judge_smaller_slower(never).outcome == REPRODUCED


def test_rank_and_late_degradation():
    below = {"attention": {"rho": -0.5, "lo": -0.7, "hi": -0.2}, "mlp": {"rho": -0.4, "lo": -0.6, "hi": -0.1}}
    above = {c: {"rho": -r["rho"], "lo": -r["hi"], "hi": -r["lo"]} for c, r in below.items()}
    mixed = {"attention": below["attention"], "mlp": above["mlp"]}
    assert claims.judge_rank_convergence(below).outcome == REPRODUCED
    assert claims.judge_rank_convergence(above).outcome == CONTRADICTED
    assert claims.judge_rank_convergence(mixed).outcome == INCONCLUSIVE
    assert claims.judge_rank_convergence({"a": {"rho": math.nan, "lo": 0, "hi": 0}}).outcome == INCONCLUSIVE
    v = claims.judge_late_degradation(None)
    assert v.outcome == INCONCLUSIVE and "no downstream scores" in v.reason
    falls = {"s": est([-0.05, -0.04, -0.06, -0.05]), "l": est([0.01, 0.02, 0.0, 0.01])}
    assert claims.judge_late_degradation(falls).outcome == REPRODUCED


# ------------------------------------------------------------------------------------------ spectra


def test_spectral_claims():
    runs = {"s": [0.5, 0.6, 0.4, 0.55], "l": [0.3, 0.35, 0.4, 0.32]}
    flip = {k: [-x for x in v] for k, v in runs.items()}
    noise = {"s": [0.5, -0.6, 0.4, -0.55], "l": [-0.3, 0.35, -0.4, 0.32]}
    assert claims.judge_spectrum_before_weights(runs).outcome == REPRODUCED
    assert claims.judge_spectrum_before_weights(flip).outcome == CONTRADICTED
    assert claims.judge_spectrum_before_weights(noise).outcome == INCONCLUSIVE
    assert claims.judge_mlp_below_attention(flip).outcome == REPRODUCED
    assert claims.judge_mlp_below_attention(runs).outcome == CONTRADICTED

    big = {"s": [1.8, 2.0, 1.9, 2.1], "l": [1.5, 1.7, 1.6, 1.55]}
    assert claims.judge_falls_to_floor(big).outcome == REPRODUCED
    assert claims.judge_falls_to_floor({"s": [0.3, 0.4, 0.35, 0.32]}).outcome == CONTRADICTED
    assert claims.judge_falls_to_floor({"s": [None, None, 2.0, None]}).outcome == CONTRADICTED
    assert claims.judge_falls_to_floor({"s": [0.8, 1.3, 0.9, 1.2]}).outcome == INCONCLUSIVE

    sync = {"s": [0.05, -0.05, 0.1, 0.0], "l": [0.02, -0.03, 0.04, 0.0]}
    late = {"s": [0.5, 0.6, 0.55, 0.5], "l": [0.5, 0.45, 0.6, 0.52]}
    wide = {"s": [-0.8, 0.9, 0.1, -0.4], "l": [0.5, -0.45, 0.6, 0.52]}
    assert claims.judge_sosd_at_loss(sync).outcome == REPRODUCED
    v = claims.judge_sosd_at_loss(late)
    assert v.outcome == CONTRADICTED and "after" in v.reason
    assert claims.judge_sosd_at_loss(wide).outcome == INCONCLUSIVE
    assert claims.judge_sosd_at_loss({"s": [math.nan, math.nan, 0.1]}).outcome == INCONCLUSIVE


def test_sweep_claims():
    assert claims.judge_across_schedules(None).outcome == INCONCLUSIVE
    assert claims.judge_across_schedules({"cos": [2.0, 1.9], "wsd": [1.5, 1.4]}).outcome == REPRODUCED
    assert claims.judge_across_schedules({"cos": [2.0, 1.9], "const": [None, None]}).outcome == CONTRADICTED
    assert claims.judge_across_schedules({"cos": [2.0, None], "const": [1.0, 1.2]}).outcome == INCONCLUSIVE
    assert claims.judge_norm_floor({"slope": 0.95, "lo": 0.92, "hi": 1.05}).outcome == REPRODUCED
    assert claims.judge_norm_floor({"slope": 1.01, "lo": 1.009, "hi": 1.012}).outcome == REPRODUCED  # a hair off 1
    assert "too wide" in claims.judge_norm_floor({"slope": 0.95, "lo": 0.5, "hi": 1.6}).reason
    assert claims.judge_norm_floor({"slope": -0.5, "lo": -0.8, "hi": -0.2}).outcome == CONTRADICTED
    v = claims.judge_norm_floor({"slope": 0.4, "lo": 0.3, "hi": 0.5})
    assert v.outcome == INCONCLUSIVE and "not in proportion" in v.reason
    assert claims.judge_norm_floor(None).outcome == INCONCLUSIVE
    assert claims.judge_norm_floor({"slope": 1.0, "lo": math.nan, "hi": math.nan}).outcome == INCONCLUSIVE


def test_fmt_words_for_missing_events():
    assert claims.fmt(None) == "not seen" and claims.fmt(math.nan) == "not seen" and claims.fmt(math.inf) == "never"


def test_by_interval_words_follow_the_interval():
    kw = dict(above="up", below="down", neither="flat")
    assert claims.by_interval(0.1, 0.3, **kw) == "up"
    assert claims.by_interval(-0.3, -0.1, **kw) == "down"
    assert claims.by_interval(-0.1, 0.3, **kw) == "flat"
    assert claims.by_interval(math.nan, math.nan, **kw) == "flat"


def test_trend_and_compare_words():
    kw = dict(up="rises", down="falls", neither="neither")
    assert claims.trend_word([1, 2, 3], **kw) == "rises" and claims.trend_word([3, 2, 1], **kw) == "falls"
    assert claims.trend_word([1, 3, 2], **kw) == "neither" and claims.trend_word([1, math.nan], **kw) == "neither"
    assert claims.trend_word([1], **kw) == "neither"
    kw2 = dict(more="later", less="earlier", same="same", missing="n/a")
    assert claims.compare_word(2, 1, **kw2) == "later" and claims.compare_word(1, 2, **kw2) == "earlier"
    assert claims.compare_word(1, 1, **kw2) == "same" and claims.compare_word(None, 1, **kw2) == "n/a"
    assert claims.compare_word(math.nan, 1, **kw2) == "n/a"
