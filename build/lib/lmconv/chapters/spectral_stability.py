"""Chapter 7, *Spectral stability* (``notebooks/07_spectral_stability.md``): does the singular distribution of
each weight matrix settle early, before the matrix itself, and when the loss ends its fast fall?

:func:`spectral_records` reads one family's spectra recorded during training (dense tables, ΔΣ curves, t_S and
t_L per run) and is meant for any chapter that places the SoSD events on a suite (chapter 8 does the same per
arm); :func:`load` adds the checkpoints' spectra of chapter 7's engine run. One function per section follows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from .. import analysis
from ..checkpoints import summaries
from ..figures import spectral as fig
from ..findings import claims, papers
from ..lenses import spectral as sp
from ..metrics import stats
from ..training import profiles
from . import Glued, analysed, section

RUN = sp.RUN
ELBOW_WORDS = {
    "steepest": "the end of the fast descent",
    "hinge": "the start of the fall",
    "derivative": "where the descent rate has fallen off",
}


@dataclass
class SpectralRecords:
    """One family's spectra recorded during training and the SoSD events placed on them.

    ``dense``: :func:`lmconv.lenses.spectral.dense_tables` (``deltas``, ``norms``, ``cosines``); ``val_log``:
    the validation loss of the same runs; ``curves``: each run's ΔΣ curve
    (:func:`lmconv.lenses.spectral.run_curves`); ``events``: t_S, t_L and δ per run
    (:func:`lmconv.lenses.spectral.sosd_summary`, without the split step).
    """

    dense: dict[str, pd.DataFrame]
    val_log: pd.DataFrame
    curves: pd.DataFrame
    events: pd.DataFrame


def spectral_records(
    suite: analysis.Suite,
    family: str,
    rule: sp.SosdRule,
    sizes: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> SpectralRecords:
    """The dense tables, ΔΣ curves and t_S/t_L events of ``family``'s runs of the given sizes and seeds (all of
    the suite's profile when None), t_S and t_L placed by ``rule``."""
    sizes = list(sizes or suite.profile.sizes)
    seeds = [int(s) for s in seeds or suite.profile.seeds]
    dense = sp.dense_tables(suite, family, sizes, seeds)
    _, val_log = suite.train_logs(family)
    val_log = val_log[val_log["size"].isin(sizes) & val_log.seed.isin(seeds)]
    curves = sp.run_curves(dense["deltas"])
    return SpectralRecords(dense, val_log, curves, sp.sosd_summary(curves, val_log, rule))


@dataclass
class SpectralData:
    """What chapter 7 reads once: its parameters, the engine's results, the dense records and their events
    (``events``, with the split step of :func:`lmconv.lenses.spectral.split_steps`) and the checkpoints'
    spectra (``ckpt``, all matrices; ``layer``, the layer matrices only)."""

    P: SimpleNamespace
    prof: profiles.Profile
    res: analysis.Results
    rule: sp.SosdRule
    rec: SpectralRecords
    events: pd.DataFrame
    ckpt: pd.DataFrame
    layer: pd.DataFrame

    @property
    def sizes(self) -> list[str]:
        return self.res.sizes

    @property
    def arm(self) -> profiles.Arm:
        return self.prof.arm(self.res.family)


def load(P: SimpleNamespace) -> SpectralData:
    """Open the suite of ``P.profile``, run the engine on its sizes and seeds and place the SoSD events."""
    suite = analysis.Suite.open(P.profile)
    res = analysed(P)
    rule = sp.SosdRule.from_params(P)
    rec = spectral_records(suite, res.family, rule, res.sizes, res.seeds)
    ckpt = sp.checkpoint_spectra(res.weights)
    layer = ckpt[ckpt.kind.isin(sp.LAYER_KINDS)]
    return SpectralData(P, suite.profile, res, rule, rec, sp.split_steps(rec.events), ckpt, layer)


@section
def setup(d: SpectralData) -> Glued:
    """The opening's numbers: the suite's sizes, seeds, records and checkpoints, and the paper's scales."""
    train = d.arm.train
    sizes_tab = summaries.sizes_table(d.prof)
    sizes_tab = sizes_tab[sizes_tab["size"].isin(d.sizes)]
    return {
        "n_sizes": len(d.sizes),
        "n_seeds": len(d.res.seeds),
        "n_runs": len(d.events),
        "spectra_every": train.spectra_every,
        "n_records": int(d.rec.dense["norms"].groupby(RUN).step.nunique().median()),
        "n_checkpoints": len(d.res.steps),
        "n_steps": train.steps,
        "size_small": d.sizes[0],
        "size_large": d.sizes[-1],
        "llama_small": papers.SOSD_LLAMA_SIZES_B[0],
        "llama_large": papers.SOSD_LLAMA_SIZES_B[1],
        "paper_loss_start": papers.SOSD_LOSS_START,
        "paper_loss_end": papers.SOSD_LOSS_END,
        "params_min": int(sizes_tab.parameters.min()),
        "params_max": int(sizes_tab.parameters.max()),
        "train_tokens_m": train.steps * train.batch_size * d.prof.context / 1e6,
    }


def _long(frame: pd.DataFrame, labels: Mapping[str, str]) -> pd.DataFrame:
    """``frame``'s columns ``labels`` stacked into one ``value`` column, ``measure`` naming each by its label."""
    out = frame.melt(id_vars=[*RUN, "step"], value_vars=list(labels), var_name="measure")
    out["measure"] = out.measure.map(labels)
    return out


def _median_step(v: pd.Series) -> float:
    """The median of a column of steps as floats (NaN when any is None: an event not seen in some run)."""
    return float(np.median(v.astype(float)))


@section
def shape_settles(d: SpectralData) -> Glued:
    """*The shape settles before the matrix*: spectral and weight cosines with the last checkpoint."""
    cos_run = d.layer.groupby([*RUN, "step"], as_index=False)[["cos_sigma", "cos_w"]].mean()
    cos_long = _long(cos_run, {"cos_sigma": "cos(σ_t, σ_T)", "cos_w": "cos(W_t, W_T)"})
    c0 = cos_run[cos_run.step == cos_run.step.min()]
    return {
        "fig_cosine": fig.cosine_saturation(stats.band(cos_long, "value", ["size", "measure", "step"]), d.sizes),
        **_saturation(d),
        "cos0_sigma": float(c0.cos_sigma.min()),
        "cos0_w": float(c0.cos_w.max()),
    }


def _saturation(d: SpectralData) -> Glued:
    """When each run's spectral and weight cosines reach the threshold, the verdict and the table."""
    threshold = d.P.sosd_cos_threshold
    sat = sp.saturation_steps(d.ckpt, threshold)
    spectrum, weights = sat.spectrum.astype(float), sat.weights.astype(float)
    gap = sp.saturation_gap(sat, int(max(d.res.steps)), d.sizes)
    tab = sat.groupby("size")[["spectrum", "weights"]].agg(_median_step).reindex(d.sizes)
    tab.columns = [f"cos(σ_t, σ_T) ≥ {threshold:g} from step", f"cos(W_t, W_T) ≥ {threshold:g} from step"]
    return {
        "cos_threshold": threshold,
        "sat_earlier": int(((spectrum < weights) | sat.weights.isna()).sum()),
        "sat_verdict": claims.judge_spectrum_before_weights(gap).sentence(),
        "sat_sigma_lo": float(spectrum.min()),
        "sat_sigma_hi": float(spectrum.max()),
        "sat_w_lo": float(weights.min()),
        "sat_w_hi": float(weights.max()),
        "tab_saturation": tab.style.format("{:.0f}", na_rep="never"),
    }


@section
def spectrum_moves(d: SpectralData) -> Glued:
    """*How fast the spectrum moves*: ΔΣ between records with the loss, its fall to a floor, the t_S rule."""
    return {**_delta_figure(d), **_fall(d), **_rule_words(d)}


def _delta_figure(d: SpectralData) -> Glued:
    """ΔΣ between records per size (seed band) under the validation loss, with the median t_S and t_L."""
    val_log, events = d.rec.val_log, d.events
    band = stats.band(d.rec.curves, "delta", ["size", "step"])
    val_band = stats.band(val_log[val_log.step > 0], "val_loss", ["size", "step"])
    ev_long = events.melt(id_vars=RUN, value_vars=["t_S", "t_L"], var_name="event", value_name="step")
    ev_med = ev_long.dropna().groupby(["size", "event"], as_index=False, sort=False).step.median()
    return {"fig_delta": fig.delta_with_loss(band, val_band, ev_med, "ΔΣ between records", d.sizes)}


def _fall(d: SpectralData) -> Glued:
    """The peak and floor of ΔΣ, the verdict on its fall, and the paper's values beside them."""
    events = d.events
    peak_steps = events.groupby("size", sort=False).peak_step.median()
    return {
        "peak_step_lo": float(peak_steps.min()),
        "peak_step_hi": float(peak_steps.max()),
        "falls_verdict": claims.judge_falls_to_floor(sp.fall_by_size(events, d.sizes)).sentence(),
        "n_split_cross": int((events.split_by == "τ crossing").sum()),
        "n_ts_found": int(events.t_S.notna().sum()),
        "pof_lo": float(events.peak_over_floor.min()),
        "pof_hi": float(events.peak_over_floor.max()),
        "paper_peak": papers.SOSD_PEAK,
        "paper_floor": papers.SOSD_FLOOR,
        "paper_pof": papers.SOSD_PEAK / papers.SOSD_FLOOR,
        "paper_phase_step": papers.SOSD_PHASE_STEP,
        "r_small": _rank(d.res.weights, d.sizes[0]),
        "r_large": _rank(d.res.weights, d.sizes[-1]),
    }


def _rank(weights: pd.DataFrame, size: str) -> int:
    """The number of singular values of a query matrix of ``size``."""
    return int(weights[(weights["size"] == size) & (weights.kind == "q")].sv.iloc[0].size)


def _rule_words(d: SpectralData) -> Glued:
    """The parameters of the t_S and t_L rules, as the prose states them."""
    return {
        "floor_frac": d.P.sosd_floor_frac,
        "window": d.P.sosd_window,
        "elbow_thin": d.P.sosd_elbow_thin,
        "elbow_rule": ELBOW_WORDS[d.P.sosd_elbow_rule],
    }


@section
def checkpoint_gaps(d: SpectralData) -> Glued:
    """ΔΣ between checkpoints, raw and per step, and the range of the gaps between checkpoints."""
    gap_run = d.layer.dropna(subset=["delta"]).groupby([*RUN, "step"], as_index=False)[["delta", "rate"]].mean()
    gap_long = _long(gap_run, {"delta": "raw ΔΣ", "rate": "ΔΣ per step"})
    gaps = np.diff(d.res.steps)
    return {
        "fig_gaps": fig.gap_comparison(stats.band(gap_long, "value", ["size", "measure", "step"]), d.sizes),
        "gap_min": int(gaps.min()),
        "gap_max": int(gaps.max()),
    }


@section
def attention_mlp(d: SpectralData) -> Glued:
    """*Attention and MLP*: ΔΣ per matrix kind, MLP over attention after the split, each group's own split."""
    deltas = d.rec.dense["deltas"]
    kind_c = sp.run_curves(deltas, by=["kind"])
    grp_c = sp.run_curves(deltas, by=["group"])
    kind_b = stats.band(sp.log_bin(kind_c, ["rate"], [*RUN, "kind"]), "rate", ["size", "kind", "step"])
    verdict = claims.judge_mlp_below_attention(sp.mlp_attention_ratio(deltas, d.events, d.sizes))
    return {
        "fig_kinds": fig.kind_lines(kind_b, d.sizes, "kind", sort=sp.LAYER_KINDS),
        "mlp_verdict": verdict.sentence(),
        **_mlp_ratio(d, grp_c),
        **_group_split(d, grp_c),
        "tab_kinds": _kinds_table(d, kind_c),
    }


def _mlp_ratio(d: SpectralData, grp_c: pd.DataFrame) -> Glued:
    """Per run, the MLP's mean ΔΣ per step after the split step over the attention's."""
    lev = sp.phase_levels(grp_c, d.events, "group", at="t_split")
    lev_w = lev.pivot_table(index=RUN, columns="group", values="phase II")
    ratio = (lev_w["mlp"] / lev_w["attention"]) if {"mlp", "attention"} <= set(lev_w) else pd.Series(dtype=float)
    return {
        "mlp_lower": int((ratio < 1).sum()),
        "mlp_ratio_med": float(ratio.median()),
        "mlp_ratio_lo": float(ratio.min()),
        "mlp_ratio_hi": float(ratio.max()),
    }


def _group_split(d: SpectralData, grp_c: pd.DataFrame) -> Glued:
    """Decades from the attention's split step to the MLP's, each on its group's own curve."""
    ev_grp = sp.split_steps(sp.sosd_summary(grp_c, d.rec.val_log, d.rule, by=["group"]))
    ts_g = ev_grp.pivot_table(index=RUN, columns="group", values="t_split")
    dlog = np.log10(ts_g["mlp"].astype(float)) - np.log10(ts_g["attention"].astype(float))
    return {"grp_dlog_med": float(dlog.median()), "grp_dlog_absmax": float(dlog.abs().max())}


def _kinds_table(d: SpectralData, kind_c: pd.DataFrame) -> Styler:
    """Per size and matrix kind: the median t_S of the kind's own curve and its ΔΣ per step in each phase."""
    ev_kind = sp.sosd_summary(kind_c, d.rec.val_log, d.rule, by=["kind"])
    lev_k = sp.phase_levels(kind_c, d.events, "kind", at="t_split")
    tab = (
        ev_kind.groupby(["size", "kind"], sort=False)
        .agg(t_S=("t_S", _median_step))
        .join(lev_k.groupby(["size", "kind"], sort=False)[["phase I", "phase II"]].median())
        .reset_index()
    )
    tab["kind"] = pd.Categorical(tab.kind, categories=sp.LAYER_KINDS, ordered=True)
    order = d.sizes.index
    tab = tab.sort_values(["size", "kind"], key=lambda s: s if s.name == "kind" else s.map(order))
    tab = tab.rename(
        columns={"t_S": "t_S (median)", "phase I": "ΔΣ per step, phase I", "phase II": "ΔΣ per step, phase II"}
    )
    return tab.set_index(["size", "kind"]).style.format("{:.3g}").format("{:.0f}", subset=["t_S (median)"])


def _depth(layer: pd.Series) -> np.ndarray:
    """The depth of each layer index of one run: "first", "last" or "middle"."""
    return np.where(layer == layer.max(), "last", np.where(layer == 0, "first", "middle"))


@section
def layers(d: SpectralData) -> Glued:
    """Per layer: the ΔΣ heatmap and the split step of the first and the last layer's own curves."""
    deltas = d.rec.dense["deltas"]
    heat = sp.heatmap_table(deltas, d.P.sosd_heatmap_bins)
    lay_c = sp.run_curves(deltas, by=["layer"])
    ev_lay = sp.split_steps(sp.sosd_summary(lay_c, d.rec.val_log, d.rule, by=["layer"]))
    ev_lay["depth"] = ev_lay.groupby(RUN).layer.transform(_depth)
    first_last = ev_lay[ev_lay.depth != "middle"].pivot_table(index=RUN, columns="depth", values="t_split")
    first_last = first_last.reindex(columns=["first", "last"])
    return {
        "fig_heatmap": fig.layer_heatmap(heat, d.sizes),
        "ts_first_layer": float(first_last["first"].median()),
        "ts_last_layer": float(first_last["last"].median()),
        "n_last_later": int((first_last["last"] > first_last["first"]).sum()),
        "n_layer_runs": int(first_last.dropna().shape[0]),
        "heatmap_bins": d.P.sosd_heatmap_bins,
    }


@section
def bound(d: SpectralData) -> Glued:
    """*A bound on how far the spectrum can move*: measured ΔΣ between checkpoints against the Mirsky bound."""
    bc = sp.bound_check(d.ckpt)
    pts = d.ckpt.dropna(subset=["delta", "bound"])
    pts = pts.groupby(["size", "group", "matrix", "step", "prev_step"], as_index=False)[["delta", "bound"]].mean()
    return {
        "fig_bound": fig.bound_scatter(pts, d.sizes),
        "bound_n": bc["n"],
        "bound_held": bc["held"],
        "bound_held_l1": bc["held_l1"],
        "bound_ratio_med": bc["ratio_median"],
        "bound_ratio_max": bc["ratio_max"],
    }


@section
def distribution(d: SpectralData) -> Glued:
    """*The singular distribution itself*: Σ̂ against rank for the largest size, and its top share."""
    largest, weights = d.sizes[-1], d.res.weights
    steps = sp.pick_steps(d.res.steps, 6)
    first, last = steps[0], steps[-1]
    dist = sp.distribution_curves(weights, largest, [first, last])
    top = dist[dist["rank"] == 1].set_index(["group", "step"]).p
    return {
        "fig_dist": fig.distributions(sp.distribution_curves(weights, largest, steps)),
        "dist_steps": ", ".join(str(s) for s in steps),
        "p1_att_0": float(top[("attention", first)]),
        "p1_att_T": float(top[("attention", last)]),
        "p1_mlp_0": float(top[("mlp", first)]),
        "p1_mlp_T": float(top[("mlp", last)]),
    }


@section
def norms(d: SpectralData) -> Glued:
    """*The norms keep growing*: norms relative to step 0, and how much the weights change after the split."""
    ng = sp.norm_growth(d.ckpt)
    lines = ng[ng.measure.isin(["fro", "spectral", "nuclear"])].copy()
    lines["measure"] = lines.measure.map({"fro": "‖W‖_F", "spectral": "‖W‖_2", "nuclear": "‖W‖_*"})
    last = ng[ng.step == ng.step.max()].set_index(["size", "measure"])["value"]
    smallest, largest = d.sizes[0], d.sizes[-1]
    ga = sp.growth_after(d.ckpt, d.events, at="t_split")
    return {
        "fig_norms": fig.norm_lines(lines, d.sizes),
        "nuc_growth_small": float(last[(smallest, "nuclear")]),
        "nuc_growth_large": float(last[(largest, "nuclear")]),
        "spec_growth_large": float(last[(largest, "spectral")]),
        "cos_init_large": float(last[(largest, "cos_init")]),
        "growth_after_med": float(ga.nuclear_growth.median()),
        "cosw_after_med": float(ga.cos_w.median()),
        "cossig_after_med": float(ga.cos_sigma.median()),
    }


EVENT_COLUMNS = {
    "size": "size",
    "seed": "seed",
    "t_S": "t_S",
    "t_cross": "τ crossing",
    "t_L": "t_L",
    "delta": "δ",
    "peak": "peak ΔΣ/step",
    "floor": "floor ΔΣ/step",
    "peak_over_floor": "peak/floor",
    "tau": "τ",
}
EVENT_FORMATS = {
    "t_S": "{:.0f}",
    "τ crossing": "{:.0f}",
    "t_L": "{:.0f}",
    "δ": "{:+.2f}",
    "peak ΔΣ/step": "{:.2e}",
    "floor ΔΣ/step": "{:.2e}",
    "peak/floor": "{:.1f}",
    "τ": "{:.2e}",
}
SENSITIVITY_FORMATS = {"median step": "{:.0f}", "min": "{:.0f}", "max": "{:.0f}", "median δ": "{:+.2f}"}


@section
def synchronisation(d: SpectralData) -> Glued:
    """*Does the spectrum settle when the loss turns?*: both events per run, their timing, the verdict, and
    both events under the alternative rules."""
    events, train = d.events, d.arm.train
    tab = events[list(EVENT_COLUMNS)].copy()
    tab.columns = list(EVENT_COLUMNS.values())
    timing = sp.timing_sentences(events, train.schedule, train.steps)
    sens = sp.sensitivity(d.rec.curves, d.rec.dense["cosines"], d.rec.val_log, d.rule)
    return {
        "tab_events": tab.set_index(["size", "seed"]).style.format(EVENT_FORMATS, na_rep="not seen"),
        **{f"timing_{key}": text for key, text in timing.items()},
        "sync_verdict": claims.judge_sosd_at_loss(sp.delta_by_size(events, d.sizes)).sentence(),
        "tab_sensitivity": sens.set_index(["event", "rule"]).style.format(SENSITIVITY_FORMATS, na_rep="not seen"),
        "sens_sentence": sp.sensitivity_sentence(sens),
    }
