"""Chapters 5–6 lens (CKA stabilisation, PER aggregation, rank correlations) on synthetic tables with known
answers, and the chart builders on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lmconv.chapters import params
from lmconv.errors import LmconvError
from lmconv.figures import activations as fig
from lmconv.figures import plots
from lmconv.lenses import activations as act
from lmconv.metrics import stats

# The default profile's checkpoints.
STEPS = [0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, *range(384, 2000, 128), 2000]
T = 2000


def curve(cross: int | None, dip: tuple[int, int] | None = None, lo: float = 0.3, hi: float = 0.95) -> list[float]:
    """A CKA series: ``lo`` before step ``cross``, ``hi`` from it on (never if None), 1 at the last step,
    and ``lo`` again over the steps in ``dip`` (inclusive)."""
    out = []
    for s in STEPS:
        v = hi if cross is not None and s >= cross else lo
        if dip and dip[0] <= s <= dip[1]:
            v = lo
        out.append(1.0 if s == STEPS[-1] else v)
    return out


def cka_table(spec: dict[tuple[str, int, int, str], list[float]]) -> pd.DataFrame:
    """Engine-shaped cka rows from {(size, seed, layer, module): series}, for every variant and estimator."""
    rows = []
    for (size, seed, layer, module), series in spec.items():
        for step, v in zip(STEPS, series, strict=True):
            for variant in ("last", "all"):
                for est in ("biased", "debiased"):
                    rows.append(
                        {
                            "family": "f",
                            "size": size,
                            "step": step,
                            "seed": seed,
                            "layer": layer,
                            "module": module,
                            "variant": variant,
                            "estimator": est,
                            "cka": v,
                        }
                    )
    return pd.DataFrame(rows)


def selected(spec: dict[tuple[str, int, int, str], list[float]]) -> pd.DataFrame:
    """select_cka of the table, with an MLP copy of the attention series for units given without one."""
    full = dict(spec)
    for (size, seed, layer, module), series in spec.items():
        if module == "attn_ov":
            full.setdefault((size, seed, layer, "mlp"), series)
    return act.select_cka(cka_table(full), "attn_ov")


# -----------------------------------------------------------------------------------------------------------
# selection
# -----------------------------------------------------------------------------------------------------------


def test_select_cka_picks_module_variant_estimator():
    t = cka_table({("a", 1, 0, m): curve(256) for m in ("attn_ov", "attn_out", "mlp")})
    t.loc[(t.module == "attn_out") & (t.variant == "all") & (t.estimator == "debiased"), "cka"] = 0.123
    s = act.select_cka(t, "attn_out", "all", "debiased")
    assert set(s.circuit) == {"attention", "mlp"}
    assert len(s) == 2 * len(STEPS)
    att = s[s.circuit == "attention"]
    assert np.allclose(att.cka, 0.123)
    assert not np.allclose(s[s.circuit == "mlp"].cka, 0.123)
    with pytest.raises(LmconvError):
        act.select_cka(t, "attn_qk")
    with pytest.raises(LmconvError):
        act.select_cka(t, "attn_ov_faithful")  # no such rows in this table


def rank_table(heads: int = 3, layers: int = 2, seeds=(1, 2), steps=(0, 10, 20)) -> pd.DataFrame:
    rows = []
    for v_slice, shift in (("split", 0.0), ("faithful", 0.05)):
        for kind in ("weight", "grad"):
            for seed in seeds:
                for step in steps:
                    for layer in range(layers):
                        base = {"family": "f", "size": "a", "step": step, "seed": seed, "layer": layer, "kind": kind}
                        rows.append({**base, "circuit": "ov_layer", "head": -1, "per": 0.9 - shift, "v_slice": v_slice})
                        for h in range(heads):
                            rows.append(
                                {
                                    **base,
                                    "circuit": "ov_head",
                                    "head": h,
                                    "per": 0.5 + 0.1 * h - shift,
                                    "v_slice": v_slice,
                                }
                            )
                        rows.append({**base, "circuit": "mlp_out", "head": -1, "per": 0.95, "v_slice": v_slice})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("pool", "per_layer"), [("pooled", 4), ("heads", 3), ("layer", 1)])
def test_select_per_pools(pool, per_layer):
    r = rank_table(heads=3)
    s = act.select_per(r, "split", pool)
    att = s[(s.circuit == "attention") & (s.kind == "weight")]
    assert att.groupby(["seed", "step", "layer"]).size().eq(per_layer).all()
    assert s[s.circuit == "mlp"].groupby(["seed", "step", "layer", "kind"]).size().eq(1).all()
    f = act.select_per(r, "faithful", pool)
    assert np.allclose(f[f.circuit == "attention"].per.to_numpy() + 0.05, s[s.circuit == "attention"].per.to_numpy())
    assert np.allclose(f[f.circuit == "mlp"].per, s[s.circuit == "mlp"].per)


def test_v_slice_comparison_measures_the_shift():
    out = act.v_slice_comparison(rank_table(), "pooled")
    assert set(out.kind) == {"weight", "grad"}
    assert np.allclose(out["split (final)"] - out["faithful (final)"], 0.05)
    assert np.allclose(out["max |Δ median| over training"], 0.05)


# -----------------------------------------------------------------------------------------------------------
# aggregation
# -----------------------------------------------------------------------------------------------------------


def test_box_stats_matches_numpy():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": np.repeat(["x", "y"], 50), "v": rng.normal(size=100)})
    b = act.box_stats(df, "v", ["g"]).set_index("g")
    for g in ("x", "y"):
        v = df[df.g == g].v.to_numpy()
        assert b.loc[g, "min"] == pytest.approx(v.min())
        assert b.loc[g, "q1"] == pytest.approx(np.percentile(v, 25))
        assert b.loc[g, "median"] == pytest.approx(np.median(v))
        assert b.loc[g, "q3"] == pytest.approx(np.percentile(v, 75))
        assert b.loc[g, "max"] == pytest.approx(v.max())
        assert b.loc[g, "n"] == 50


def test_layer_band_is_median_over_layers_then_spread_over_seeds():
    # seed 1: layers 0.1, 0.2, 0.9 -> median 0.2; seed 2: 0.4, 0.5, 0.6 -> 0.5; seed 3: 0.7, 0.8, 0.0 -> 0.7
    vals = {1: [0.1, 0.2, 0.9], 2: [0.4, 0.5, 0.6], 3: [0.7, 0.8, 0.0]}
    df = pd.DataFrame(
        [{"size": "a", "step": 5, "seed": k, "layer": i, "v": x} for k, xs in vals.items() for i, x in enumerate(xs)]
    )
    b = act.layer_band(df, "v", ["size", "step"]).iloc[0]
    assert (b["value"], b["lo"], b["hi"], b["n"]) == pytest.approx((0.5, 0.2, 0.7, 3))
    per_layer = stats.band(df, "v", ["size", "step", "layer"], centre="median")
    assert len(per_layer) == 3
    assert per_layer.set_index("layer").loc[2, "hi"] == pytest.approx(0.9)


def test_thin_steps_keeps_ends_and_spacing():
    kept = act.thin_steps(STEPS, min_gap=0.3)
    assert kept[0] == 0 and kept[-1] == 2000
    u = np.log1p(kept)
    assert np.all(np.diff(u)[:-1] >= 0.3 - 1e-12)
    assert set(kept) <= set(STEPS)
    assert len(kept) < len(STEPS)
    assert act.thin_steps([5]) == [5]
    assert act.thin_steps(STEPS, min_gap=0.0) == STEPS


def test_results_panel_shape():
    spec = {
        (s, k, layer, m): curve(256) for s in ("a", "b") for k in (1, 2) for layer in (0, 1) for m in ("attn_ov", "mlp")
    }
    c = selected(spec)
    r = rank_table(steps=tuple(STEPS))
    r2 = r.assign(size="b")
    p = act.select_per(pd.concat([r, r2]), "split", "pooled")
    panel = act.results_panel(c, p)
    assert set(panel.metric) == {"CKA", "PER (weights)", "PER (gradients)"}
    assert len(panel) == 3 * 2 * 2 * len(STEPS)  # metrics × sizes × circuits × steps
    assert (panel["lo"] <= panel["value"]).all() and (panel["value"] <= panel["hi"]).all()


# -----------------------------------------------------------------------------------------------------------
# stabilisation
# -----------------------------------------------------------------------------------------------------------


def test_stabilisation_known_steps():
    spec = {
        ("a", 1, 0, "attn_ov"): curve(256),  # stable from 256
        ("a", 1, 1, "attn_ov"): curve(128, dip=(1024, 1024)),  # reaches at 128, dips at 1024 -> from 1152
        ("a", 1, 2, "attn_ov"): curve(None),  # only the final checkpoint is ≥ 0.9 -> never
        ("a", 1, 3, "attn_ov"): curve(1920),  # last two checkpoints: stabilises at 1920 with min_run 2
        ("a", 1, 0, "mlp"): curve(0),  # stable from the start
    }
    st = act.stabilisation(selected(spec), T, threshold=0.9, min_run=2).set_index(["layer", "circuit"])
    assert st.loc[(0, "attention"), "step"] == 256
    assert st.loc[(0, "attention"), "fraction"] == pytest.approx(256 / T)
    assert st.loc[(1, "attention"), "step"] == 1152
    assert math.isnan(st.loc[(2, "attention"), "step"])
    assert math.isinf(st.loc[(2, "attention"), "fraction"])
    assert not st.loc[(2, "attention"), "stabilised"]
    assert st.loc[(3, "attention"), "step"] == 1920
    assert st.loc[(0, "mlp"), "step"] == 0
    strict = act.stabilisation(selected(spec), T, threshold=0.9, min_run=3).set_index(["layer", "circuit"])
    assert not strict.loc[(3, "attention"), "stabilised"]
    # a higher threshold than the plateau: nothing but the final checkpoint qualifies
    high = act.stabilisation(selected(spec), T, threshold=0.96, min_run=2)
    assert not high.stabilised.any()


def test_stabilisation_summary_known_shares():
    # size "big": seed 1 layers at 256, 384 (both ≤ 400 = 20%); seed 2 layers at 256 and 1024.
    # size "small": seed 1 at 1024 and never; seed 2 at 128 and 1536.
    spec = {
        ("big", 1, 0, "attn_ov"): curve(256),
        ("big", 1, 1, "attn_ov"): curve(384),
        ("big", 2, 0, "attn_ov"): curve(256),
        ("big", 2, 1, "attn_ov"): curve(1024),
        ("small", 1, 0, "attn_ov"): curve(1024),
        ("small", 1, 1, "attn_ov"): curve(None),
        ("small", 2, 0, "attn_ov"): curve(128),
        ("small", 2, 1, "attn_ov"): curve(1536),
    }
    st = act.stabilisation(selected(spec), T)
    s = act.stabilisation_summary(st, within=0.2, nearly_all=0.75).set_index(["size", "circuit"])
    big, small = s.loc[("big", "attention")], s.loc[("small", "attention")]
    assert big.units == 4 and big.share_stabilised == 1.0
    assert big.share_within == pytest.approx(0.75)
    assert (big.share_within_min, big.share_within_max) == pytest.approx((0.5, 1.0))
    assert big.median_fraction == pytest.approx((256 + 384) / 2 / T)
    assert big.all_layers_fraction == pytest.approx((384 + 1024) / 2 / T)  # median over seeds of the max
    assert big.claim  # 75% ≥ 75%
    assert small.share_stabilised == pytest.approx(0.75)
    assert small.share_within == pytest.approx(0.25)
    assert math.isinf(small.all_layers_fraction_max)  # seed 1 has a layer that never stabilises
    assert small.all_layers_fraction == math.inf  # median of (inf, 1536/T) is inf
    assert not small.claim
    strict = act.stabilisation_summary(st, within=0.2, nearly_all=0.9).set_index(["size", "circuit"])
    assert not strict.loc[("big", "attention"), "claim"]
    table = act.summary_table(act.stabilisation_summary(st), 0.2)
    assert "never" in set(table["all layers stabilised by (median seed)"])


def test_compare_choices_differences():
    spec = {}
    for layer in (0, 1):
        spec[("a", 1, layer, "attn_ov")] = curve(256)
        spec[("a", 1, layer, "attn_out")] = [
            min(1.0, v + 0.02) if s < 2000 else 1.0 for s, v in zip(STEPS, curve(1024), strict=True)
        ]
        spec[("a", 1, layer, "mlp")] = curve(256)
    t = cka_table(spec)
    cmp = act.compare_choices(t, [{"attention": "attn_ov"}, {"attention": "attn_out"}], T).set_index("attention")
    assert cmp.attrs["step_at"] == 384
    assert cmp.loc["attn_ov", "mad_vs_first"] == 0
    assert cmp.loc["attn_ov", "share_within"] == 1.0
    assert cmp.loc["attn_out", "share_within"] == 0.0
    assert cmp.loc["attn_ov", "cka_at"] == pytest.approx(0.95)
    assert cmp.loc["attn_out", "cka_at"] == pytest.approx(0.32)
    # |0.95 − 0.32| on steps 256 … 896 (6 checkpoints), |0.3 − 0.32| elsewhere, averaged over all but the last
    n = len(STEPS) - 1
    diffs = [abs(a - b) for a, b in zip(curve(256)[:-1], spec[("a", 1, 0, "attn_out")][:-1], strict=True)]
    assert cmp.loc["attn_out", "mad_vs_first"] == pytest.approx(sum(diffs) / n)


# -----------------------------------------------------------------------------------------------------------
# correlation with uncertainty
# -----------------------------------------------------------------------------------------------------------


def test_rankdata_and_spearman():
    assert act.rankdata(np.array([10.0, 20.0, 20.0, 5.0, math.inf])).tolist() == [2.0, 3.5, 3.5, 1.0, 5.0]
    x = np.arange(10.0)
    assert act.spearman(x, x**3) == pytest.approx(1.0)
    assert act.spearman(x, -np.exp(x)) == pytest.approx(-1.0)
    assert math.isnan(act.spearman(x, np.ones(10)))
    assert math.isnan(act.spearman(x[:2], x[:2]))
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0, math.inf])
    r = np.corrcoef(act.rankdata(np.arange(6.0)), act.rankdata(y))[0, 1]
    assert act.spearman(np.arange(6.0), y) == pytest.approx(r)


def units_frame(per_size: dict[str, list[tuple[int, float, float]]]) -> pd.DataFrame:
    """(seed, x, y) per unit; the layer index counts within a seed."""
    rows = []
    for size, items in per_size.items():
        layer = {}
        for seed, x, y in items:
            layer[seed] = layer.get(seed, -1) + 1
            rows.append({"size": size, "seed": seed, "layer": layer[seed], "x": x, "y": y})
    return pd.DataFrame(rows)


def test_bootstrap_perfect_monotone_gives_degenerate_interval():
    df = units_frame({"a": [(k, float(i + 3 * k), float(i + 3 * k) ** 2) for k in range(4) for i in range(3)]})
    r = act.bootstrap_corr(df, "x", "y", scope="pooled", n_boot=200)
    assert r["rho"] == pytest.approx(1.0)
    assert (r["lo"], r["hi"]) == pytest.approx((1.0, 1.0))
    assert r["n"] == 12 and r["n_groups"] == 4 and r["n_boot_valid"] == 200


def test_bootstrap_independent_data_interval_covers_zero_and_is_reproducible():
    rng = np.random.default_rng(3)
    df = units_frame({s: [(k, rng.normal(), rng.normal()) for k in range(20) for _ in range(3)] for s in ("a", "b")})
    r1 = act.bootstrap_corr(df, "x", "y", n_boot=300, seed=7)
    r2 = act.bootstrap_corr(df, "x", "y", n_boot=300, seed=7)
    assert r1 == r2
    assert r1["lo"] < 0 < r1["hi"]
    assert r1["lo"] <= r1["rho"] <= r1["hi"]


def test_within_scope_removes_between_size_differences():
    # inside each size y rises with x; size b has larger x but smaller y, so pooled ρ is negative
    items_a = [(k, float(i), 10.0 + i) for k in range(3) for i in range(3)]
    items_b = [(k, 100.0 + i, float(i)) for k in range(3) for i in range(3)]
    df = units_frame({"a": items_a, "b": items_b})
    within = act.bootstrap_corr(df, "x", "y", scope="within", n_boot=100)
    pooled = act.bootstrap_corr(df, "x", "y", scope="pooled", n_boot=100)
    assert within["rho"] == pytest.approx(1.0)
    assert pooled["rho"] < 0


def test_verdict_words():
    assert act.verdict(-0.5, -0.8, -0.2, -1) == "as the paper"
    assert act.verdict(0.5, 0.2, 0.8, -1) == "opposite to the paper"
    assert act.verdict(0.1, -0.2, 0.4, +1) == "inconclusive"
    assert act.verdict(math.nan, math.nan, math.nan, +1) == "undefined"


def link_inputs():
    """Two sizes × three seeds × two layers: layer 1 has lower PER and stabilises later."""
    spec, rows = {}, []
    for size in ("a", "b"):
        for seed in (1, 2, 3):
            for layer in (0, 1):
                spec[(size, seed, layer, "attn_ov")] = curve(256 if layer == 0 else 1536)
                spec[(size, seed, layer, "mlp")] = curve(256 if layer == 0 else 1536)
                for step in STEPS:
                    for kind in ("weight", "grad"):
                        per = (0.9 if layer == 0 else 0.6) + 0.001 * seed
                        for circuit in ("ov_layer", "mlp_out"):
                            rows.append(
                                {"size": size, "step": step, "seed": seed, "layer": layer, "circuit": circuit,
                                 "head": -1, "kind": kind, "per": per, "v_slice": "split"}
                            )  # fmt: skip
    return selected(spec), act.per_by_layer(pd.DataFrame(rows), "split")


def test_link_units_and_correlation_table_find_the_planted_link():
    cka, per_layer = link_inputs()
    stab = act.stabilisation(cka, T)
    units = act.link_units(cka, per_layer, stab)
    assert len(units) == 2 * 3 * 2 * 2
    assert units.per_w_final.notna().all() and units.stab_fraction.notna().all()
    u = units.set_index(["size", "seed", "layer", "circuit"])
    assert u.loc[("a", 1, 1, "attention"), "stab_fraction"] == pytest.approx(1536 / T)
    assert u.loc[("a", 2, 0, "mlp"), "per_w_final"] == pytest.approx(0.902)
    # mean CKA excludes the final checkpoint (1 by construction)
    expected = np.mean(curve(256)[:-1])
    assert u.loc[("a", 1, 0, "attention"), "cka_mean"] == pytest.approx(expected)
    corr = act.correlation_table(units, n_boot=200)
    assert len(corr) == 2 * 3 * 2 * 2  # circuits × rank measures × convergence measures × scopes
    stab_rows = corr[corr["convergence measure"] == "stabilisation step"]
    assert (stab_rows.rho < -0.8).all()
    assert (stab_rows.verdict == "as the paper").all()
    cka_rows = corr[corr["convergence measure"] == "mean CKA over training"]
    assert (cka_rows.rho > 0.8).all()
    shown = act.correlation_display(corr)
    assert len(shown) == len(corr) // 2  # the two scopes side by side
    assert shown["ρ [CI], pooled"].str.contains(r"\[").all() and shown["verdict, within size"].notna().all()


def test_correlation_by_step_rows():
    cka, per_layer = link_inputs()
    by = act.correlation_by_step(cka, per_layer, "weight", n_boot=100)
    assert len(by) == 2 * (len(STEPS) - 1)
    assert by.step.max() < STEPS[-1]
    late = by[(by.step >= 256) & (by.step < 1536)]
    assert (late.rho > 0.8).all()  # higher PER, higher CKA in that stretch
    early = by[by.step < 256]
    assert early.rho.isna().all()  # CKA is the same for every unit: undefined


def test_layer_order_positive_when_deeper_layers_stabilise_later():
    cka, _ = link_inputs()
    lo = act.layer_order(act.stabilisation(cka, T), n_boot=100)
    assert np.allclose(lo.rho, 1.0)


def test_parameters_registered():
    ok = params.validate(cka_min_run=3, cka_nearly_all=0.8, per_pool="heads", rank_n_boot=500)
    assert ok.per_pool == "heads"
    for bad in ({"cka_min_run": 0}, {"cka_nearly_all": 1.5}, {"per_pool": "all"}, {"rank_n_boot": 5}):
        with pytest.raises(LmconvError):
            params.validate(**bad)


# -----------------------------------------------------------------------------------------------------------
# figures: valid Vega-Lite from small tables
# -----------------------------------------------------------------------------------------------------------


def test_dodge_and_cell_edges_on_the_symlog_axis():
    x, x0, x1 = fig.dodge(np.array([0.0, 100.0]), np.array([0, 1]), 2, 0.2)
    u = fig._symlog
    assert u(x[0]) == pytest.approx(-0.1) and u(x[1]) == pytest.approx(math.log1p(100) + 0.1)
    assert (x0 < x).all() and (x < x1).all()
    edges = fig.cell_edges([0, 1, 3])
    assert edges[1][0] == pytest.approx(fig._symexp(math.log1p(1) / 2))
    assert edges[1][1] == pytest.approx(edges[3][0])
    assert edges[0][0] < 0 < edges[0][1]


def test_charts_build():
    cka, per_layer = link_inputs()
    stab = act.stabilisation(cka, T)
    box = act.box_stats(cka[cka.step.isin(act.thin_steps(STEPS))], "cka", ["size", "circuit", "step"])
    band = act.layer_band(cka, "cka", ["size", "circuit", "step"])
    lb = stats.band(cka, "cka", ["size", "circuit", "layer", "step"], centre="median")
    mean = stats.band(cka, "cka", ["size", "circuit", "layer", "step"])
    units = act.link_units(cka, per_layer, stab)
    per = per_layer.assign(head=-1)
    charts = [
        fig.boxes(box, y_title="CKA", sizes=["a", "b"], y_domain=(0, 1)),
        fig.median_lines(band, y_title="CKA", sizes=["a", "b"]),
        fig.layer_lines(lb, sizes=["a", "b"]),
        fig.heatmap(mean, midpoint=0.95, sizes=["a", "b"]),
        fig.stabilisation_dots(stab, within=0.2, sizes=["a", "b"]),
        fig.results_grid(act.results_panel(cka, per), sizes=["a", "b"]),
        fig.link_scatter(units, "per_w_final", "PER"),
        fig.correlation_lines(act.correlation_by_step(cka, per_layer, n_boot=100)),
    ]
    for c in charts:
        spec = c.to_dict()  # validates against the Vega-Lite schema
        assert "$schema" in spec


def test_threshold_sweep_moves_only_the_threshold():
    # plateau 0.85 from step 256, 0.95 from 1024: stabilises at 256 for thresholds ≤ 0.85, at 1024 above
    series = [1.0 if s == 2000 else (0.95 if s >= 1024 else 0.85 if s >= 256 else 0.3) for s in STEPS]
    spec = {("a", k, 0, "attn_ov"): series for k in (1, 2)}
    sw = act.threshold_sweep(selected(spec), [0.8, 0.9, 0.97], T, within=0.2, nearly_all=0.9)
    att = sw[sw.circuit == "attention"].set_index("threshold")
    assert att.loc[0.8, "median_fraction"] == pytest.approx(256 / T)
    assert att.loc[0.9, "median_fraction"] == pytest.approx(1024 / T)
    assert math.isinf(att.loc[0.97, "median_fraction"])
    assert att.claim.tolist() == [True, False, False]
    assert act.highest_passing(sw, "a", "attention") == 0.8
    assert act.highest_passing(sw[sw.threshold > 0.85], "a", "attention") is None
    table = act.sweep_table(sw)
    assert table.shape == (2, 3)
    assert table.loc[("a", "Attention"), "CKA ≥ 0.97"] == "0.0% / never"


def test_step_axis_labels_each_tick_on_its_own():
    d = plots.step_axis().to_dict()
    assert "format" not in d and "1000" in d["labelExpr"]
    assert d["values"][:3] == [0, 1, 10]


def test_early_shares_and_median_fractions_per_seed():
    stab = pd.DataFrame(
        {
            "size": ["a"] * 4 + ["b"] * 4,
            "seed": [1, 1, 2, 2] * 2,
            "layer": [0, 1] * 4,
            "circuit": "attention",
            "fraction": [0.1, 0.5, 0.15, 0.18, 0.3, math.inf, 0.05, 0.1],
        }
    )
    assert act.early_shares(stab, 0.2, ["b", "a"]) == {"b": [0.0, 1.0], "a": [0.5, 1.0]}
    med = act.median_fractions(stab, ["a", "b"])
    assert med["a"] == pytest.approx([0.3, 0.165]) and med["b"][0] == math.inf
