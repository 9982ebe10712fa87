"""Chapters 7–8 (spectral stability; schedules and optimizers): synthetic tables with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from lmconv.chapters import params
from lmconv.errors import LmconvError
from lmconv.lenses import spectral as sp
from lmconv.metrics import phases, spectrum
from lmconv.training import profiles

NAMES = ["layers.0.q", "layers.0.k", "layers.0.v", "layers.0.o", "layers.0.mlp_in", "layers.0.mlp_out"]


def _spectra(steps: np.ndarray, break_step: int, seed: int = 0, r: int = 16) -> np.ndarray:
    """Singular values that move fast (relative step 1e-2) before ``break_step`` and slowly (1e-4) after."""
    rng = np.random.default_rng(seed)
    sv = np.sort(rng.uniform(0.5, 2.0, size=(len(NAMES), r)), axis=-1)[:, ::-1]
    out = [sv.copy()]
    for a, b in itertools.pairwise(steps):
        scale = 1e-2 if b <= break_step else 1e-4
        sv = sv * np.exp(scale * (b - a) * rng.normal(size=sv.shape))
        out.append(sv.copy())
    return np.stack(out)


def _loss(steps: np.ndarray, end_fast: float) -> np.ndarray:
    """Plateau to step 10, a fast fall (slope −2 per decade) to ``end_fast``, then a slow tail (−0.2 per decade)."""
    x = np.log10(np.maximum(steps, 1).astype(float))
    x0, x1 = 1.0, math.log10(end_fast)
    y = 8.0 - 2.0 * np.clip(x - x0, 0, x1 - x0) - 0.2 * np.maximum(x - x1, 0)
    return y


def _val_log(steps: np.ndarray, end_fast: float, family="f", size="s", seed=1) -> pd.DataFrame:
    return pd.DataFrame(
        {"family": family, "size": size, "seed": seed, "step": steps, "val_loss": _loss(steps, end_fast)}
    )


# ---------------------------------------------------------------------------------------------------------
# dense records
# ---------------------------------------------------------------------------------------------------------


def test_record_deltas_match_the_definition_and_parse_names():
    steps = np.array([0, 2, 4, 8])
    vals = _spectra(steps, 100)
    d = sp.record_deltas(steps, vals, NAMES)
    assert len(d) == 3 * len(NAMES)
    row = d[(d.step == 8) & (d.matrix == "layers.0.v")].iloc[0]
    want = np.linalg.norm(spectrum.distribution(vals[3, 2]) - spectrum.distribution(vals[2, 2]))
    assert row.delta == pytest.approx(want)
    assert row.prev_step == 4 and row.gap == 4 and row.rate == pytest.approx(want / 4)
    assert row.layer == 0 and row.kind == "v" and row.group == "attention"
    assert set(d[d.kind.isin(["mlp_in", "mlp_out"])].group) == {"mlp"}
    # a uniform scaling of every singular value leaves Σ̂ unchanged: ΔΣ = 0
    same = sp.record_deltas(np.array([0, 1]), np.stack([vals[0], 3 * vals[0]]), NAMES)
    assert np.allclose(same.delta, 0)


def test_record_norms_and_cosines():
    steps = np.array([0, 1, 2])
    vals = _spectra(steps, 100)
    n = sp.record_norms(steps, vals, NAMES)
    r = n[(n.step == 1) & (n.matrix == "layers.0.o")].iloc[0]
    assert r.nuclear == pytest.approx(vals[1, 3].sum())
    assert r.fro == pytest.approx(np.sqrt((vals[1, 3] ** 2).sum()))
    assert r.spectral == pytest.approx(vals[1, 3].max())
    c = sp.record_cosines(steps, vals, NAMES)
    assert np.allclose(c[c.step == 2].cos_sigma, 1.0)
    assert (c.cos_sigma <= 1 + 1e-12).all()


def test_sosd_summary_finds_known_break_points():
    steps = np.arange(0, 2001, 8)
    rows, vals = [], []
    for seed in (1, 2):
        d = sp.record_deltas(steps, _spectra(steps, 480, seed), NAMES)
        d.insert(0, "seed", seed)
        d.insert(0, "size", "s")
        d.insert(0, "family", "f")
        rows.append(d)
        vals.append(
            _val_log(
                np.r_[0, 1, 2, 4, 8, 16, 32, 64, 128, 200, 256, 300, 400, 512, 768, 1024, 1500, 2000], 256, seed=seed
            )
        )
    curves = sp.run_curves(pd.concat(rows))
    ev = sp.sosd_summary(curves, pd.concat(vals))
    assert len(ev) == 2
    for r in ev.itertuples():
        assert 480 <= r.t_S <= 480 + 3 * 8  # the first record of the slow phase, within the smoothing window
        assert r.t_L == pytest.approx(256, rel=0.1)  # the end of the fast fall
        assert r.delta == pytest.approx(math.log10(r.t_S / r.t_L))
        assert r.peak_over_floor > 50
    # by-group curves give one row per group and run
    g = sp.run_curves(pd.concat(rows), by=["group"])
    assert len(sp.sosd_summary(g, pd.concat(vals), by=["group"])) == 4


def test_loss_transition_rules_and_no_transition():
    steps = np.r_[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    y = _loss(steps, 128)
    assert sp.loss_transition(steps, y, "steepest") == pytest.approx(128, rel=0.1)
    # the tail falls at a tenth of the fastest rate: below 20% of it from the end of the fall on, never below 5%
    assert sp.loss_transition(steps, y, "derivative", 0.2) == pytest.approx(256)
    assert sp.loss_transition(steps, y, "derivative", 0.05) is None
    # steepest descent at the last points: too few points after it, so no transition rather than an error
    late = np.r_[8.0] * np.ones(10)
    late[-2:] = [7.0, 5.0]
    assert sp.loss_transition(steps[:10], late, "steepest") is None
    with pytest.raises(LmconvError):
        sp.loss_transition(steps, y, "eyeball")


def test_sensitivity_table_has_a_row_per_rule():
    steps = np.arange(0, 1001, 8)
    d = sp.record_deltas(steps, _spectra(steps, 300), NAMES)
    d.insert(0, "seed", 1)
    d.insert(0, "size", "s")
    d.insert(0, "family", "f")
    c = sp.record_cosines(steps, _spectra(steps, 300), NAMES)
    c.insert(0, "seed", 1)
    c.insert(0, "size", "s")
    c.insert(0, "family", "f")
    val = _val_log(np.r_[0, 1, 2, 4, 8, 16, 32, 64, 100, 128, 200, 256, 400, 512, 768, 1000], 200)
    t = sp.sensitivity(sp.run_curves(d), c, val)
    assert list(t.event).count("t_L") == 4
    assert t.rule.str.contains("(default)", regex=False).sum() == 2
    assert (t.found == "1/1").sum() >= 6
    default = t[(t.event == "t_S") & t.rule.str.contains("default")].iloc[0]
    assert 300 <= default["median step"] <= 330


# ---------------------------------------------------------------------------------------------------------
# checkpoints: the bound
# ---------------------------------------------------------------------------------------------------------


def _weights_table(steps: list[int], step_size: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    mats = {"layers.0.q": rng.normal(size=(12, 12)), "layers.0.mlp_in": rng.normal(size=(48, 12))}
    traj = {k: [w] for k, w in mats.items()}
    for _ in steps[1:]:
        for k in traj:
            traj[k].append(traj[k][-1] * 1.05 + step_size * rng.normal(size=traj[k][-1].shape))
    for k, ws in traj.items():
        final = ws[-1]
        for i, st in enumerate(steps):
            w = ws[i]
            sv = spectrum.singular_values(w)
            rows.append(
                {
                    "family": "f",
                    "size": "s",
                    "step": st,
                    "seed": 1,
                    "prev_step": steps[i - 1] if i else -1,
                    "matrix": k,
                    "layer": 0,
                    "kind": k.rsplit(".", 1)[-1],
                    **spectrum.norms(sv),
                    "cos_final": spectrum.cosine(w, final),
                    "delta_nuclear": float(spectrum.singular_values(w - ws[i - 1]).sum()) if i else float("nan"),
                    "cos_init": spectrum.cosine(w, ws[0]),
                    "rel_change_init": float(np.linalg.norm(w - ws[0]) / np.linalg.norm(ws[0])),
                    "sv": sv,
                }
            )
    return pd.DataFrame(rows)


def test_bound_holds_on_real_matrices_and_the_check_can_fail():
    w = _weights_table([0, 1, 2, 4, 8], 0.3)
    ck = sp.checkpoint_spectra(w)
    assert ck.delta.isna().sum() == 2  # the first step of each matrix has no previous checkpoint
    got = sp.bound_check(ck)
    assert got["n"] == 8 and got["held"] == 1.0 and got["held_l1"] == 1.0
    assert 0 < got["ratio_median"] <= got["ratio_max"] <= 1
    # the L1 distance sits between the L2 ΔΣ and the bound
    d = ck.dropna(subset=["delta"])
    assert (d.delta <= d.delta_l1 + 1e-12).all() and (d.delta_l1 <= d.bound + 1e-12).all()
    # a wrong (too small) ‖ΔW‖_* must show up as violations
    bad = w.assign(delta_nuclear=w.delta_nuclear * 1e-6)
    assert sp.bound_check(sp.checkpoint_spectra(bad))["held"] < 0.5
    # cosines with the final checkpoint: 1 at the end; the spectral one saturates first here
    last = ck[ck.step == 8]
    assert np.allclose(last.cos_sigma, 1) and np.allclose(last.cos_w, 1)
    first = ck[ck.step == 0]
    assert (first.cos_sigma > first.cos_w).all()


def test_checkpoint_spectra_rejects_a_gap_in_the_steps():
    w = _weights_table([0, 1, 2, 4], 0.3)
    w = w[w.step != 2]  # prev_step of step 4 still says 2
    with pytest.raises(LmconvError, match="prev_step"):
        sp.checkpoint_spectra(w)


def test_saturation_norms_and_growth_after():
    w = _weights_table([0, 1, 2, 4, 8, 16], 0.05)
    ck = sp.checkpoint_spectra(w)
    sat = sp.saturation_steps(ck, 0.99)
    assert len(sat) == 1 and sat.spectrum.iloc[0] <= sat.weights.iloc[0]
    ng = sp.norm_growth(ck)
    nuc = ng[ng.measure == "nuclear"].sort_values("step")
    assert nuc["value"].iloc[0] == pytest.approx(1.0) and nuc["value"].iloc[-1] > 1.2
    ev = pd.DataFrame({"family": ["f"], "size": ["s"], "seed": [1], "t_S": [3]})
    ga = sp.growth_after(ck, ev)
    assert ga.t_star.iloc[0] == 4 and ga.nuclear_growth.iloc[0] > 0.1


def test_pick_steps_and_heatmap_bins():
    assert sp.pick_steps([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2000], 6)[0] == 0
    assert sp.pick_steps([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2000], 6)[-1] == 2000
    steps = np.arange(0, 1001, 8)
    d = sp.record_deltas(steps, _spectra(steps, 300), NAMES)
    d.insert(0, "seed", 1)
    d.insert(0, "size", "s")
    d.insert(0, "family", "f")
    h = sp.heatmap_table(d, 10)
    assert h.step_lo.min() == 8 and h.step_hi.max() == 1000
    assert (h.step_hi > h.step_lo).all()
    assert h.groupby("matrix").size().max() <= 10
    b = sp.log_bin(sp.run_curves(d), ["rate"], sp.RUN, bins=12)
    assert len(b) <= 12 and b.step.is_monotonic_increasing


# ---------------------------------------------------------------------------------------------------------
# chapter 8: scaling regression and the sweep profiles
# ---------------------------------------------------------------------------------------------------------


def _scaling_frame(slope: float, noise: float, n_runs: int = 6, n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for run in range(n_runs):
        for m, a_m in (("layers.0.q", 0.3), ("layers.0.mlp_in", -1.0)):
            x = rng.uniform(-6, -3, size=n) + 0.3 * run
            y = a_m + slope * x + noise * rng.normal(size=n)
            rows.append(
                pd.DataFrame(
                    {
                        "family": f"arm{run % 3}",
                        "seed": run,  # one seed per run: six clusters, so the bootstrap draws at random
                        "matrix": m,
                        "optimizer": "adamw",
                        "x_nuclear": x,
                        "y": y,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("slope", [1.0, 0.6])
def test_scaling_fit_recovers_a_known_slope(slope):
    fit = sp.scaling_fit(_scaling_frame(slope, 0.2), "nuclear", n_boot=200)
    assert fit["slope"] == pytest.approx(slope, abs=0.03)
    assert fit["lo"] <= slope <= fit["hi"] and fit["hi"] - fit["lo"] < 0.2
    assert fit["runs"] == 6 and fit["r2_within"] > 0.8
    assert (fit["seeds"], fit["interval"], fit["resamples"]) == (6, "random", 200)


def test_scaling_fit_intercepts_per_matrix_matter():
    # two matrices with very different intercepts and x ranges: a pooled fit without them would be biased
    df = _scaling_frame(1.0, 0.05)
    df.loc[df.matrix == "layers.0.mlp_in", "x_nuclear"] += 2.0
    assert sp.scaling_fit(df, "nuclear", n_boot=20)["slope"] == pytest.approx(1.0, abs=0.02)


def test_scaling_table_from_records_gives_slope_one_when_delta_is_eta_over_norm():
    prof = profiles.load("smoke-sweep")
    steps = np.arange(0, 97, 1)
    rows_d, rows_n = [], []
    rng = np.random.default_rng(0)
    for arm in ("cosine", "constant", "muon"):
        nuc = np.exp(np.linspace(0, 1, len(steps)))[:, None] * rng.uniform(5, 10, size=len(NAMES))[None, :]
        eta = sp.eta(prof, arm, steps[:-1], steps[1:])
        d = pd.DataFrame(
            {
                "family": arm,
                "size": "xs",
                "seed": 1,
                "step": np.repeat(steps[1:], len(NAMES)),
                "prev_step": np.repeat(steps[:-1], len(NAMES)),
                "gap": 1,
                "matrix": np.tile(NAMES, len(steps) - 1),
                "kind": np.tile([n.rsplit(".", 1)[-1] for n in NAMES], len(steps) - 1),
            }
        )
        d["rate"] = 0.7 * np.repeat(eta, len(NAMES)) / nuc[:-1].ravel()
        d["delta"] = d.rate
        n = pd.DataFrame(
            {
                "family": arm,
                "size": "xs",
                "seed": 1,
                "step": np.repeat(steps, len(NAMES)),
                "matrix": np.tile(NAMES, len(steps)),
                "fro": nuc.ravel() / 2,
                "spectral": nuc.ravel() / 4,
                "nuclear": nuc.ravel(),
            }
        )
        rows_d.append(d)
        rows_n.append(n)
    st = sp.scaling_table(prof, pd.concat(rows_d), pd.concat(rows_n))
    fit = sp.scaling_fit(st, "nuclear", n_boot=20)
    assert fit["slope"] == pytest.approx(1.0, abs=1e-9)
    assert set(st.optimizer) == {"adamw", "muon"}


def test_eta_is_the_mean_lr_of_the_updates_between_records():
    prof = profiles.load("smoke-sweep")
    t = prof.arm("step").train
    got = sp.eta(prof, "step", [0, 76], [8, 96])
    want0 = np.mean([t.lr * t.schedule.multiplier(s, t.steps) for s in range(0, 8)])
    want1 = np.mean([t.lr * t.schedule.multiplier(s, t.steps) for s in range(76, 96)])
    assert got == pytest.approx([want0, want1])
    m = prof.arm("muon").train
    assert sp.eta(prof, "muon", [20], [21])[0] == pytest.approx(m.muon_lr * m.schedule.multiplier(20, m.steps))


@pytest.mark.parametrize("name", ["sweep", "smoke-sweep"])
def test_sweep_profiles_parse_and_arms_differ_only_where_intended(name):
    prof = profiles.load(name)
    factor = sp.arm_factor(prof)
    assert factor == {
        "cosine": "baseline",
        "constant": "schedule",
        "wsd": "schedule",
        "step": "schedule",
        "cosine_wd0": "weight decay",
        "cosine_wd1": "weight decay",
        "muon": "optimizer",
    }
    base = prof.arm("cosine").train
    assert [prof.arm(a).train.schedule.kind for a in ("constant", "wsd", "step")] == ["constant", "wsd", "step"]
    assert sorted({prof.arm(a).train.weight_decay for a in prof.arms}) == [0.0, base.weight_decay, 1.0]
    assert prof.arm("muon").train.optimizer == "muon" and prof.arm("muon").train.muon_lr == base.lr
    # WSD and step-wise decay branch from the constant arm exactly where their LR first differs from it
    for a in ("wsd", "step"):
        t = prof.arm(a).train
        b = t.branch_from
        assert b["arm"] == "constant" and b["step"] in prof.checkpoint_steps(a)
        const = prof.arm("constant").train.schedule
        mults = [t.schedule.multiplier(s, t.steps) for s in range(t.steps)]
        first_diff = next(s for s, m in enumerate(mults) if m != const.multiplier(s, t.steps))
        assert b["step"] in (first_diff, first_diff - 1)
    assert base.spectra_every in (1, 2)


def test_sweep_profiles_match_their_suites():
    sweep, smoke, default = profiles.load("sweep"), profiles.load("smoke-sweep"), profiles.load("default")
    assert (sweep.corpus, sweep.vocab_size, sweep.context) == (default.corpus, default.vocab_size, default.context)
    assert next(iter(sweep.sizes.values())) == default.sizes["1.1m"]
    assert (smoke.corpus, smoke.vocab_size, smoke.context, len(smoke.seeds)) == ("brown", 1024, 64, 1)
    assert smoke.arm().train.steps == 96 and list(smoke.arms) == list(sweep.arms)
    budget = sp.sweep_budget(sweep, sp.step_seconds_for(sweep.sizes["1.1m"]))
    assert budget["run_equivalents"] == pytest.approx(5.4)
    assert budget["total_s"] < 35 * 60


def test_arm_factor_rejects_an_arm_changing_two_things():
    raw = profiles.load("smoke-sweep").raw
    raw = {**raw, "arms": {"cosine": {}, "bad": {"weight_decay": 0.0, "optimizer": "muon"}}}
    with pytest.raises(LmconvError, match="bad"):
        sp.arm_factor(profiles.parse(raw, "x"))


def test_sweep_profile_for_and_parameters():
    assert sp.sweep_profile_for("default") == "sweep"
    assert sp.sweep_profile_for("smoke") == "smoke-sweep"
    assert sp.sweep_profile_for("default", "smoke-sweep") == "smoke-sweep"
    with pytest.raises(LmconvError):
        sp.sweep_profile_for("sweep")
    P = params.validate(sosd_elbow_rule="hinge", sweep_profile=None, sosd_floor_frac=0.5, sosd_n_boot=100)
    assert P.sosd_elbow_rule == "hinge" and P.sweep_profile is None
    for bad in (
        {"sosd_elbow_rule": "eyeball"},
        {"sweep_profile": "nope"},
        {"sosd_floor_frac": 0.0},
        {"sosd_n_boot": 1},
    ):
        with pytest.raises(LmconvError):
            params.validate(**bad)


def test_thin_log_keeps_points_a_minimum_log_gap_apart():
    steps = np.r_[0, 1, 2, 3, 4, 6, 8, np.arange(50, 2001, 50)]
    s, v = sp.thin_log(steps, steps * 1.0, 0.05)
    assert s[0] == 1 and s[-1] == 2000 and (v == s).all()
    assert (np.diff(np.log10(s[:-1])) >= 0.05 - 1e-9).all()
    assert len(s) < 0.6 * len(steps) and 500 not in s  # late points are dropped, early ones kept
    s0, _ = sp.thin_log(steps, steps * 1.0, 0.0)
    assert list(s0) == list(steps[1:])


def test_scaling_fit_matches_least_squares_with_dummies():
    df = _scaling_frame(0.8, 0.5, n_runs=4, n=50, seed=3)
    g = pd.factorize(df.matrix + "|" + df.optimizer)[0]
    X = np.column_stack([df.x_nuclear.to_numpy(), np.eye(g.max() + 1)[g]])
    coef, res, *_ = np.linalg.lstsq(X, df.y.to_numpy(), rcond=None)
    fit = sp.scaling_fit(df, "nuclear", n_boot=50)
    assert fit["slope"] == pytest.approx(coef[0], rel=1e-10)
    yt = df.y - df.groupby(g).y.transform("mean")
    assert fit["r2_within"] == pytest.approx(1 - float(res[0]) / float((yt**2).sum()), rel=1e-8)


# ---------------------------------------------------------------------------------------------------------
# chapter 8: each history counted once, intervals over seeds, and conclusions written from the numbers
# ---------------------------------------------------------------------------------------------------------


def _branched_records(prof: profiles.Profile, seeds=(1, 2), with_copies: bool = True):
    """Deltas and norms of the arms constant, wsd (branched from constant) and cosine: the branch's records up
    to its branch step are copies of the parent's (as training writes them), or left out."""
    b = prof.arm("wsd").train.branch_from
    assert b["arm"] == "constant"
    branch = int(b["step"])
    steps = np.arange(0, prof.arm().train.steps + 1, 1)
    rows_d, rows_n = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        hist = {}
        for arm in ("constant", "wsd", "cosine"):
            nuc = np.exp(np.linspace(0, 1, len(steps)))[:, None] * rng.uniform(5, 10, size=len(NAMES))[None, :]
            eta = np.repeat(sp.eta(prof, arm, steps[:-1], steps[1:]), len(NAMES))
            slope = 0.6 + 0.3 * seed  # the seeds differ: an interval over seeds spans their slopes
            rate = 10 ** (slope * np.log10(eta / nuc[:-1].ravel()) + 0.3 * rng.normal(size=eta.size))
            d = pd.DataFrame(
                {
                    "family": arm,
                    "size": "xs",
                    "seed": seed,
                    "step": np.repeat(steps[1:], len(NAMES)),
                    "prev_step": np.repeat(steps[:-1], len(NAMES)),
                    "gap": 1,
                    "matrix": np.tile(NAMES, len(steps) - 1),
                    "rate": rate,
                }
            )
            n = pd.DataFrame(
                {
                    "family": arm,
                    "size": "xs",
                    "seed": seed,
                    "step": np.repeat(steps, len(NAMES)),
                    "matrix": np.tile(NAMES, len(steps)),
                    "fro": nuc.ravel() / 2,
                    "spectral": nuc.ravel() / 4,
                    "nuclear": nuc.ravel(),
                }
            )
            if arm == "wsd":  # the branch's log starts with the parent's records up to the branch step
                pd_, pn = hist["constant"]
                d = pd.concat([pd_[pd_.step <= branch].assign(family="wsd"), d[d.step > branch]])
                n = pd.concat([pn[pn.step <= branch].assign(family="wsd"), n[n.step > branch]])
                if not with_copies:
                    d = d[d.step > branch]
            hist[arm] = (d, n)
            rows_d.append(d)
            rows_n.append(n)
    deltas = pd.concat(rows_d, ignore_index=True)
    deltas["delta"] = deltas.rate
    return deltas, pd.concat(rows_n, ignore_index=True)


def test_branch_steps_and_own_records():
    prof = profiles.load("sweep")
    assert sp.branch_steps(prof) == {"wsd": 1200, "step": 1200}
    df = pd.DataFrame({"family": ["constant", "wsd", "wsd", "step", "cosine"], "step": [1200, 1200, 1202, 5, 5]})
    assert sp.own_records(prof, df).to_dict("list") == {
        "family": ["constant", "wsd", "cosine"],
        "step": [1200, 1202, 5],
    }


def test_scaling_fit_counts_a_branched_arms_inherited_history_once():
    prof = profiles.load("smoke-sweep")
    dup = _branched_records(prof, with_copies=True)
    ref = _branched_records(prof, with_copies=False)
    st_dup, st_ref = sp.scaling_table(prof, *dup), sp.scaling_table(prof, *ref)
    fit_dup, fit_ref = sp.scaling_fit(st_dup, n_boot=50), sp.scaling_fit(st_ref, n_boot=50)
    assert len(st_dup) == len(st_ref)
    for k in ("slope", "lo", "hi", "r2_within", "n", "runs", "seeds"):
        assert fit_dup[k] == pytest.approx(fit_ref[k], rel=1e-12), k
    # the test has teeth: counting the copies changes the fit
    naive = sp.scaling_fit(sp.scaling_table(prof, *dup, own_history_only=False), n_boot=50)
    assert naive["n"] > fit_ref["n"] and naive["slope"] != pytest.approx(fit_ref["slope"], rel=1e-6)
    # the binned points of the figure come from the same rows
    pts_dup, pts_ref = sp.scaling_points(st_dup, bins=10), sp.scaling_points(st_ref, bins=10)
    pd.testing.assert_frame_equal(pts_dup, pts_ref)


def test_scaling_interval_comes_from_seed_clusters_enumerated_exactly():
    prof = profiles.load("smoke-sweep")
    st = sp.scaling_table(prof, *_branched_records(prof))
    fit = sp.scaling_fit(st, n_boot=50)
    assert (fit["seeds"], fit["runs"], fit["interval"], fit["resamples"]) == (2, 6, "exact", 3)
    # two seeds: the resamples are {1,1}, {1,2}, {2,2}; the interval is the range of the single-seed fits
    one = [sp.scaling_fit(st[st.seed == s], n_boot=0)["slope"] for s in (1, 2)]
    assert (fit["lo"], fit["hi"]) == pytest.approx((min(one), max(one)), rel=1e-12)
    assert fit["lo"] < fit["slope"] < fit["hi"]
    # whatever the arms, the clusters are seeds: relabelling every row as one arm changes nothing
    same = sp.scaling_fit(st.assign(family="one"), n_boot=50)
    assert (same["lo"], same["hi"], same["resamples"]) == (fit["lo"], fit["hi"], 3)
    assert "3 distinct bootstrap resamples of the 2 seeds" in sp.interval_text(fit)
    assert "range of the two single-seed fits" in sp.interval_text(fit)
    assert sp.interval_text(fit, how=False) == f"{fit['lo']:.2f} to {fit['hi']:.2f}"
    assert sp.scaling_fit(st[st.seed == 1], n_boot=50)["interval"] == "none"
    assert "nothing to resample" in sp.interval_text(sp.scaling_fit(st[st.seed == 1], n_boot=50))


def test_exact_seed_bootstrap_matches_brute_force_over_ordered_draws():
    df = _scaling_frame(0.8, 0.8, n_runs=3, n=30, seed=5)  # three seeds
    fit = sp.scaling_fit(df, n_boot=10)
    assert (fit["interval"], fit["resamples"]) == ("exact", 10) and sp.cluster_resamples(3) == 10
    seeds = sorted(df.seed.unique())
    slopes = []
    for draw in itertools.product(seeds, repeat=3):  # all 27 equally likely ordered draws
        sub = pd.concat([df[df.seed == s] for s in draw], ignore_index=True)
        slopes.append(sp.scaling_fit(sub, n_boot=0)["slope"])
    slopes = np.sort(slopes)
    cdf = np.arange(1, 28) / 27
    want = [slopes[np.searchsorted(cdf, q - 1e-12)] for q in (0.025, 0.975)]
    assert (fit["lo"], fit["hi"]) == pytest.approx(want, rel=1e-10)
    assert [sp.cluster_resamples(k) for k in (1, 2, 4, 5)] == [1, 3, 35, 126]
    # above the threshold the resamples are drawn at random
    assert sp.scaling_fit(df, n_boot=40, exact_max=2)["resamples"] == 40


def _fit(slope, lo, hi):
    return {"slope": slope, "lo": lo, "hi": hi}


def test_scaling_sentence_each_direction():
    assert sp.scaling_sentence(_fit(0.95, 0.9, 1.05)).startswith("ΔΣ tracks η/‖W‖*")
    assert "0.95 (interval 0.90 to 1.05)" in sp.scaling_sentence(_fit(0.95, 0.9, 1.05))
    assert sp.scaling_sentence(_fit(-0.5, -0.7, -0.3)).startswith("ΔΣ does not track")
    assert "is open" in sp.scaling_sentence(_fit(0.2, -0.1, 0.5))
    assert "cannot say" in sp.scaling_sentence(_fit(0.9, math.nan, math.nan))
    part = sp.scaling_sentence(_fit(0.5, 0.4, 0.6))
    assert "less than in proportion" in part and "below the 1" in part
    assert "more than in proportion" in sp.scaling_sentence(_fit(1.5, 1.3, 1.7))
    assert sp.scaling_sentence(_fit(1.01, 1.009, 1.012)).startswith("ΔΣ tracks")  # a hair above 1 is proportional
    assert "too wide to tell" in sp.scaling_sentence(_fit(1.0, 0.5, 1.6))
    assert "η/‖W‖F" in sp.scaling_sentence(_fit(0.95, 0.9, 1.05), norm="fro")


def test_weight_decay_sentence_each_direction():
    wd = [0.0, 0.1, 1.0]
    holds = sp.weight_decay_sentence(wd, [3.0, 2.0, 1.0], [1e-4, 2e-4, 5e-4])
    assert "falls and the floor of ΔΣ rises: the direction the paper's account predicts" in holds
    assert sp.weight_decay_sentence([1.0, 0.0, 0.1], [1.0, 3.0, 2.0], [5e-4, 1e-4, 2e-4]) == holds  # any order
    rev = sp.weight_decay_sentence(wd, [1.0, 2.0, 3.0], [5e-4, 2e-4, 1e-4])
    assert "the final norm rises and the floor of ΔΣ falls: the opposite of what the paper's account" in rev
    mixed = sp.weight_decay_sentence(wd, [3.0, 2.0, 1.0], [1e-4, 3e-4, 2e-4])
    assert "the final norm falls and the floor of ΔΣ does not move steadily" in mixed and "do not settle" in mixed
    assert "cannot say" in sp.weight_decay_sentence([0.1], [1.0], [1e-4])
    assert "do not settle" in sp.weight_decay_sentence(wd, [3.0, 2.0, 1.0], [1e-4, math.nan, 5e-4])


def test_transition_sentence_each_direction():
    holds = sp.transition_sentence([100, 300, 1000], [200, 210, 220])
    assert holds.startswith("The loss transition does not follow") and "factor of 10.00" in holds
    rev = sp.transition_sentence([100, 300, 1000], [50, 160, 480])
    assert rev.startswith("The loss transition moves with the SoSD point") and "+1.00" in rev
    assert "but not with it" in sp.transition_sentence([100, 300, 1000], [500, 50, 300])
    assert "hardly moves" in sp.transition_sentence([100, 101, 102], [50, 200, 60])
    assert "Too few arms" in sp.transition_sentence([100, math.nan], [50, 60])


def test_branch_sentence_each_direction():
    prof = profiles.load("sweep")
    holds = sp.branch_sentence(prof, {"constant": 300.0, "wsd": 300.0, "step": 301.0, "cosine": 500.0})
    assert holds == (
        "WSD and step-wise decay share the constant arm's history up to step 1200, where they branch off, and with "
        "it its SoSD point (t_S = 300)."
    )
    rev = sp.branch_sentence(prof, {"constant": 300.0, "wsd": 900.0, "step": 950.0})
    assert "but not its SoSD point (t_S = 900 and 950 against 300)" in rev
    mixed = sp.branch_sentence(prof, {"constant": 300.0, "wsd": 300.0, "step": math.nan})
    assert mixed.startswith("Of the branched arms, WSD keeps") and "was not found" in mixed
    assert sp.branch_sentence(profiles.load("default"), {}) == ""


# ------------------------------------------------------------------------------------------ chapter 7's sentences


def _events(ts, tl, fall=None):
    n = len(ts)
    fall = fall if fall is not None else [1.5] * n
    return pd.DataFrame(
        {
            "family": "f",
            "size": ["a"] * (n // 2) + ["b"] * (n - n // 2),
            "seed": list(range(n)),
            "t_S": ts,
            "t_cross": [t if t is not None else 500 for t in ts],
            "t_L": tl,
            "delta": [np.log10(a) - np.log10(b) if a and b else np.nan for a, b in zip(ts, tl, strict=True)],
            "fall_decades": fall,
            "t_S_reason": ["ΔΣ is still falling over the floor span (3 decades per decade): a steady decline"] * n,
            "t_L_reason": ["the loss bends"] * n,
        }
    )


def test_timing_sentences_follow_the_sign_and_the_missing_events():
    sched = profiles.Schedule(kind="cosine", warmup=10, final_ratio=0.1)
    later = sp.timing_sentences(_events([800, 900, 1000, 700], [250, 300, 260, 240]), sched, 2000)
    assert "times later than" in later["delta"] and "4 of 4 runs" in later["delta"]
    assert later["lr"].startswith("The SoSD point falls") and later["rank"].startswith("Across")
    earlier = sp.timing_sentences(_events([100, 90, 120, 80], [250, 300, 260, 240]), sched, 2000)
    assert "times earlier than" in earlier["delta"] and "after t_L in 0 of 4" in earlier["delta"]
    none = sp.timing_sentences(_events([None] * 4, [250, 300, 260, 240]), sched, 2000)
    assert none["found"].startswith("No run has a SoSD point") and "still falling" in none["found"]
    assert none["lr"] == "" and "cannot be computed" in none["delta"]


def test_split_steps_and_fall_by_size():
    ev = sp.split_steps(_events([800, None, 1000, None], [250, 300, 260, 240], [1.2, 0.9, 1.4, 0.8]))
    assert list(ev.t_split) == [800, 500, 1000, 500]
    assert list(ev.split_by) == ["t_S", "τ crossing", "t_S", "τ crossing"]
    assert sp.fall_by_size(ev, ["a", "b"]) == {"a": [1.2, None], "b": [1.4, None]}
    lv = sp.phase_levels(pd.DataFrame(columns=[*sp.RUN, "group", "step", "rate"]), ev, at="t_split")
    assert list(lv.columns) == [*sp.RUN, "group", "phase I", "phase II"] and lv.empty


def test_sensitivity_sentence_says_when_no_alternative_gives_a_delta():
    sens = pd.DataFrame({"event": ["t_S", "t_S", "t_L"], "median δ": [0.2, np.nan, np.nan]})
    text = sp.sensitivity_sentence(sens)
    assert "between +0.20 and +0.20 (1 of 2 alternatives" in text and "no alternative of the loss rule" in text
    assert text[0].isupper() and text.endswith(".")


def test_sosd_point_reports_its_tau_crossing_without_a_floor():
    steps = np.arange(4, 2001, 4)
    power = 1e-2 * (steps / 4.0) ** -1.0  # a steady power-law decline: no floor
    r = phases.sosd_point(steps, power)
    assert r.point is None and not r.found and r.crossing is not None


def test_saturation_gap_counts_never_as_after_the_last_step():
    sat = pd.DataFrame(
        {"size": ["a", "a", "b"], "seed": [1, 2, 1], "spectrum": [10, 100, None], "weights": [100, None, 50]}
    )
    g = sp.saturation_gap(sat, 999, ["a", "b"])
    assert g["a"] == pytest.approx([1.0, 1.0]) and g["b"][0] == pytest.approx(np.log10(50) - 3.0)


def test_the_common_reason_drops_numbers_and_breaks_ties_by_order():
    from lmconv.lenses.spectral import common_reason

    assert common_reason(["falls only (0.1)", "still falling: 0.5", "falls only (0.2)"]) == "falls only"
    assert common_reason(["b (1)", "a (2)"]) == "b" and common_reason(["a (2)", "b (1)"]) == "a"
    assert common_reason([]) == "no reason recorded"
