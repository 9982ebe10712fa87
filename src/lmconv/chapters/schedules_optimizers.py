"""Chapter 8, *Schedules and optimizers* (``notebooks/08_schedules_optimizers.md``): the sweep suite.

Does the SoSD point t_S still line up with the loss transition t_L when the schedule, the weight decay or the
optimizer changes, and does ΔΣ scale like η/‖W‖? Everything the page glues is computed here, from the sweep
suite that goes with the book's profile (:func:`lmconv.lenses.spectral.sweep_profile_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from .. import analysis
from ..book import status
from ..checkpoints import summaries
from ..figures import spectral as fig
from ..findings import claims, papers
from ..lenses import spectral as sp
from ..metrics import stats
from ..training import profiles
from . import Glued, section

LOG_BINS = 40  # log-spaced step bins of the ΔΣ and norm figures
SCATTER_BINS = 30  # equal-count bins per arm of the scaling scatter
LIN_BINS_PER_RUN = 75  # the late-training figure bins the steps in widths of steps // this
LATE_FROM = 0.6  # the late-training figure starts at this fraction of the steps
DEFAULT_DECAY_FRACTION = 0.2  # window of :func:`lmconv.lenses.spectral.window_ratio` when no arm branches
NOT_SEEN = "no arm: t_S or t_L not seen"
SCHEDULE_PANEL = ("baseline", "schedule")


@dataclass
class SweepData:
    """What the chapter reads once: the sweep suite's profile, logs, records, and each run's and arm's events."""

    P: Any
    sweep_name: str
    prof: profiles.Profile
    suite: analysis.Suite
    arms: list[str]
    factor: dict[str, str]
    seeds: list[int]
    val_log: pd.DataFrame
    deltas: pd.DataFrame
    norms: pd.DataFrame
    curves: pd.DataFrame
    events: pd.DataFrame
    base_arm: str
    branched: list[str]
    final: pd.Series
    per_arm: pd.DataFrame

    @property
    def t0(self) -> profiles.TrainSettings:
        """The baseline arm's training settings."""
        return self.prof.arm(self.base_arm).train

    @property
    def size(self) -> profiles.Size:
        """The one model size the sweep trains."""
        return next(iter(self.prof.sizes.values()))

    @property
    def lin_width(self) -> int:
        """Width in steps of the late-training figure's bins."""
        return max(self.t0.steps // LIN_BINS_PER_RUN, 1)


def load(P: Any) -> SweepData:
    """Open the sweep suite of ``P.profile`` (or ``P.sweep_profile``) and place t_S and t_L in every run whose
    seed finished in every arm, by the rule of ``P`` (:meth:`lmconv.lenses.spectral.SosdRule.from_params`)."""
    sweep_name = sp.sweep_profile_for(P.profile, P.sweep_profile)
    suite = analysis.Suite.open(sweep_name)
    prof = suite.profile
    arms = list(prof.arms)
    factor = sp.arm_factor(prof)
    seeds = sp.complete_seeds(suite)
    _, val_log = suite.train_logs()
    val_log = val_log[val_log.seed.isin(seeds)]
    tabs = [sp.dense_tables(suite, a, seeds=seeds) for a in arms]
    deltas = pd.concat([t["deltas"] for t in tabs], ignore_index=True)
    norms = pd.concat([t["norms"] for t in tabs], ignore_index=True)
    curves = sp.run_curves(deltas)
    events = sp.sosd_summary(curves, val_log, sp.SosdRule.from_params(P))
    base_arm = next(a for a, f in factor.items() if f == "baseline")
    steps = prof.arm(base_arm).train.steps
    final = val_log[val_log.step == steps].groupby("family").val_loss.mean()
    return SweepData(
        P=P,
        sweep_name=sweep_name,
        prof=prof,
        suite=suite,
        arms=arms,
        factor=factor,
        seeds=seeds,
        val_log=val_log,
        deltas=deltas,
        norms=norms,
        curves=curves,
        events=events,
        base_arm=base_arm,
        branched=[a for a in arms if prof.arm(a).train.branch_from],
        final=final,
        per_arm=arm_events(events, factor, arms, final),
    )


def _median_float(v: pd.Series) -> float:
    """Median of a column that may hold None (an event not found) as NaN."""
    return float(np.median(v.astype(float)))


def arm_events(events: pd.DataFrame, factor: dict[str, str], arms: list[str], final: pd.Series) -> pd.DataFrame:
    """Per arm (in ``arms`` order): the factor it changes, median t_S and t_L, δ's median, lowest and highest
    over the seeds where both events were found (how many: ``delta_n`` of ``runs``), median peak/floor, and the
    final validation loss ``final``. A run without t_S leaves its arm's median t_S undefined (NaN)."""
    per_arm = (
        events.groupby("family")
        .agg(
            t_S=("t_S", _median_float),
            t_L=("t_L", "median"),
            delta_med=("delta", "median"),
            delta_min=("delta", "min"),
            delta_max=("delta", "max"),
            delta_n=("delta", "count"),
            runs=("delta", "size"),
            peak_over_floor=("peak_over_floor", "median"),
        )
        .reindex(arms)
    )
    per_arm.insert(0, "changes", [factor[a] for a in arms])
    per_arm["final loss"] = final.reindex(arms)
    return per_arm


@section
def setup(d: SweepData) -> Glued:
    """The opening's numbers: which suite, how many arms and seeds, the size, the baseline's settings."""
    t0, size = d.t0, d.size
    return {
        "sweep_name": d.sweep_name,
        "n_arms": len(d.arms),
        "n_seeds": len(d.seeds),
        "n_seeds_profile": len(d.prof.seeds),
        "size_name": size.name,
        "hidden": size.hidden,
        "layers": size.layers,
        "steps": t0.steps,
        "spectra_every": t0.spectra_every,
        "base_arm": d.base_arm,
        "base_wd": t0.weight_decay,
        "base_lr": t0.lr,
        "llama_large": papers.SOSD_LLAMA_SIZES_B[1],
    }


def _branch(d: SweepData) -> dict | None:
    """``branch_from`` of the first branched arm (all branch from the same point), None when none branches."""
    return d.prof.arm(d.branched[0]).train.branch_from if d.branched else None


@section
def the_sweep(d: SweepData) -> Glued:
    """The arms' table, the planned and the measured cost of training the sweep, and where arms branch off."""
    t0 = d.t0
    cost = sp.step_seconds_for(d.size)
    budget = sp.sweep_budget(d.prof, cost)
    took = status.training_seconds(d.prof.name)
    branch = _branch(d)
    return {
        "tab_arms": sp.arm_table(d.prof).set_index("arm"),
        "cost_step": cost,
        "cost_svd": sp.SVD_SECONDS_PER_RECORD * 1000,
        "n_records": t0.steps // max(t0.spectra_every, 1),
        "per_run_s": budget["per_run_s"],
        "run_equiv": budget["run_equivalents"],
        "plan_min": budget["total_s"] / 60,
        "took_min": took / 60,
        "threads": t0.threads,
        "branch_step": int(branch["step"]) if branch else 0,
        "branch_from": branch["arm"] if branch else "–",
    }


def _schedule_arms(d: SweepData) -> list[str]:
    """The baseline and the arms that change its schedule (the panel of the schedule figures)."""
    return [a for a in d.arms if d.factor[a] in SCHEDULE_PANEL]


@section
def schedules(d: SweepData) -> Glued:
    """The learning-rate schedules of the baseline and the schedule arms, in one panel."""
    lr = pd.concat([summaries.lr_curve(d.prof, a) for a in _schedule_arms(d)])
    lr = lr.assign(value=lr.lr, lo=lr.lr, hi=lr.lr, factor="schedule")
    return {"fig_lr": fig.arm_panels(lr, "learning rate", linear_x=True, arms=d.arms)}


@section
def loss_and_movement(d: SweepData) -> Glued:
    """Validation loss and ΔΣ per step of every arm (with each arm's median t_S), and the final losses."""
    vb = stats.band(d.val_log[d.val_log.step > 0], "val_loss", ["family", "step"])
    binned = sp.log_bin(d.curves, ["rate"], sp.RUN, bins=LOG_BINS)
    db = stats.band(binned, "rate", ["family", "step"])
    found = d.events.dropna(subset=["t_S"])
    ev_rules = found.groupby("family", as_index=False).t_S.median().rename(columns={"t_S": "step"})
    fig_loss = fig.arm_panels(sp.factor_panels(vb, d.factor), "validation loss", arms=d.arms)
    fig_delta = fig.arm_panels(
        sp.factor_panels(db, d.factor),
        "ΔΣ per step (log)",
        y_scale=fig.LOG,
        events=sp.factor_panels(ev_rules, d.factor),
        arms=d.arms,
    )
    return {
        "fig_loss": fig_loss,
        "log_bins": LOG_BINS,
        "lin_width": d.lin_width,
        "scatter_bins": SCATTER_BINS,
        "fig_delta": fig_delta,
        "loss_best_arm": d.final.idxmin(),
        "loss_best": float(d.final.min()),
        "loss_worst_arm": d.final.idxmax(),
        "loss_worst": float(d.final.max()),
        "loss_base": float(d.final[d.base_arm]),
    }


def decay_fraction(d: SweepData) -> float:
    """The fraction of training after the branch point (the decay window of WSD and step-wise decay)."""
    branch = _branch(d)
    return 1 - branch["step"] / d.t0.steps if branch else DEFAULT_DECAY_FRACTION


@section
def late_training(d: SweepData) -> Glued:
    """ΔΣ at the end of training on a linear axis, and each arm's ΔΣ over the decay window relative to the
    window before it (median over seeds)."""
    late_from = int(LATE_FROM * d.t0.steps)
    c = d.curves
    lb = sp.lin_bin(c[c.family.isin(_schedule_arms(d)) & (c.step > late_from)], ["rate"], sp.RUN, width=d.lin_width)
    late = stats.band(lb, "rate", ["family", "step"]).assign(factor="schedule").rename(columns={"family": "arm"})
    out: Glued = {"fig_late": fig.arm_panels(late, "ΔΣ per step (log)", y_scale=fig.LOG, linear_x=True, arms=d.arms)}
    wr_m = sp.window_ratio(c, d.prof, decay_fraction=decay_fraction(d)).groupby("family").ratio.median()
    out |= {f"late_ratio_{a}": float(wr_m[a]) for a in d.arms}
    out["late_from"] = late_from
    return out


@section
def weight_norms(d: SweepData) -> Glued:
    """Nuclear norms relative to step 0, each arm's final norm and ΔΣ floor, and what weight decay does to them."""
    rn = sp.relative_norms(d.norms)
    nb = stats.band(sp.log_bin(rn, ["nuclear"], sp.RUN, bins=LOG_BINS), "nuclear", ["family", "step"])
    out: Glued = {"fig_norms": fig.arm_panels(sp.factor_panels(nb, d.factor), "‖W‖* relative to step 0", arms=d.arms)}
    g_end = rn[rn.step == d.t0.steps].groupby("family").nuclear.median()
    floor = d.events.groupby("family").floor.median()
    out |= {f"norm_end_{a}": float(g_end[a]) for a in d.arms}
    out |= {f"floor_{a}": float(floor[a]) for a in d.arms}
    wd_arms = sorted(
        (d.prof.arm(a).train.weight_decay, a) for a in d.arms if d.factor[a] in ("baseline", "weight decay")
    )
    out["wd_sentence"] = sp.weight_decay_sentence(
        [w for w, _ in wd_arms], [g_end[a] for _, a in wd_arms], [floor[a] for _, a in wd_arms]
    )
    return out


def events_table(per_arm: pd.DataFrame) -> Styler:
    """:func:`arm_events` as the chapter's table (a Styler)."""
    tab = per_arm.rename(
        columns={
            "delta_med": "δ (median)",
            "delta_min": "δ min",
            "delta_max": "δ max",
            "delta_n": "runs with δ",
            "peak_over_floor": "peak/floor",
        }
    )
    fmt = {"t_S": "{:.0f}", "t_L": "{:.0f}", "δ (median)": "{:+.2f}", "δ min": "{:+.2f}", "δ max": "{:+.2f}"}
    return tab.style.format({**fmt, "peak/floor": "{:.1f}", "final loss": "{:.3f}"}, na_rep="–")


def _extremes(per_arm: pd.DataFrame) -> Glued:
    """The range over arms of δ, t_S and t_L, and the arms where δ is lowest and highest."""
    seen = per_arm.delta_med.dropna()  # arms where both events were found
    return {
        "delta_arm_lo": float(per_arm.delta_med.min()),
        "delta_arm_hi": float(per_arm.delta_med.max()),
        "delta_arm_lo_name": str(seen.idxmin()) if len(seen) else NOT_SEEN,
        "delta_arm_hi_name": str(seen.idxmax()) if len(seen) else NOT_SEEN,
        "tl_lo": float(per_arm.t_L.min()),
        "ts_factor": float(per_arm.t_S.max() / per_arm.t_S.min()),
        "tl_factor": float(per_arm.t_L.max() / per_arm.t_L.min()),
        "tl_hi": float(per_arm.t_L.max()),
        "ts_lo": float(per_arm.t_S.min()),
        "ts_hi": float(per_arm.t_S.max()),
    }


@section
def sosd_alignment(d: SweepData) -> Glued:
    """Does t_S still line up with t_L? Per-arm table, each arm's δ and t_S, their ranges and sentences."""
    pa = d.per_arm
    out: Glued = {"tab_events": events_table(pa)}
    for a in d.arms:
        out[f"delta_{a}"] = float(pa.loc[a, "delta_med"])
        out[f"ts_{a}"] = float(pa.loc[a, "t_S"])
    out |= _extremes(pa)
    out |= {
        "n_found": int(d.events.t_S.notna().sum()),
        "n_arms_later": int((pa.delta_med > 0).sum()),
        "ratio_lo": float(10 ** pa.delta_med.min()),
        "ratio_hi": float(10 ** pa.delta_med.max()),
        "const_vs_cos": claims.compare_word(
            pa.loc["constant", "delta_med"],
            pa.loc["cosine", "delta_med"],
            more="later",
            less="earlier",
            same="at the same point",
            missing="(not comparable: δ not seen in one of the arms)",
        ),
        "n_runs": len(d.events),
        "branch_sentence": sp.branch_sentence(d.prof, pa.t_S.to_dict()),
    }
    return out


def run_slopes(d: SweepData, table: pd.DataFrame) -> pd.DataFrame:
    """The scaling slope (nuclear norm, no interval) fitted within each run of ``table``: arm, seed, slope."""
    rows = [
        {"arm": a, "seed": s, "slope": sp.scaling_fit(sub, "nuclear", n_boot=0)["slope"]}
        for a in d.arms
        for s in d.prof.seeds
        if len(sub := table[(table.family == a) & (table.seed == s)])
    ]
    return pd.DataFrame(rows)


def _fit_values(key: str, fit: dict) -> Glued:
    """A scaling fit's slope and interval ends, under ``slope_{key}``, ``slope_{key}_lo`` and ``_hi``."""
    return {f"slope_{key}": fit["slope"], f"slope_{key}_lo": fit["lo"], f"slope_{key}_hi": fit["hi"]}


@section
def scaling(d: SweepData) -> Glued:
    """Does ΔΣ scale like η/‖W‖? The pooled fit for each norm with its seed-bootstrap interval, the scatter,
    the verdict sentences and the slope within each run."""
    st = sp.scaling_table(d.prof, d.deltas, d.norms)  # a branched arm's copy of its parent's records is dropped
    n_boot = d.P.sosd_n_boot
    fit, fit_f, fit_s = (sp.scaling_fit(st, norm, n_boot=n_boot) for norm in ("nuclear", "fro", "spectral"))
    pts = sp.scaling_points(st, "nuclear", bins=SCATTER_BINS)
    out: Glued = {"fig_scaling": fig.scaling_scatter(pts, fit["slope"], arms=d.arms)}
    out |= _fit_values("nuc", fit) | _fit_values("fro", fit_f) | _fit_values("spec", fit_s)
    out |= {
        "slope_r2": fit["r2_within"],
        "slope_n": fit["n"],
        "slope_runs": fit["runs"],
        "slope_seeds": fit["seeds"],
        "slope_interval": sp.interval_text(fit),
        "slope_fro_ci": sp.interval_text(fit_f, how=False),
        "slope_spec_ci": sp.interval_text(fit_s, how=False),
        "scaling_sentence": sp.scaling_sentence(fit),
        "transition_sentence": sp.transition_sentence(d.per_arm.t_S, d.per_arm.t_L),
    }
    per = run_slopes(d, st)
    ps = stats.band(per, "slope", ["arm"], centre="median").set_index("arm")[list(stats.BAND_COLUMNS)].reindex(d.arms)
    ps.columns = ["slope (median over seeds)", "lowest seed", "highest seed"]
    out |= {
        "tab_slopes": ps.style.format("{:.2f}"),
        "arm_slope_lo": float(per.slope.min()),
        "arm_slope_hi": float(per.slope.max()),
    }
    return out
