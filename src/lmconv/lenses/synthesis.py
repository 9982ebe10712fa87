"""Chapter 9: the events the three lenses describe, per size and seed, on one log-step axis.

Each lens contributes the events its chapter detects by a stated rule:

- cross-seed KL (chapter 2, :func:`lmconv.metrics.phases.kl_phases` on each ordered seed pair's curve): the end
  of the uniform phase, the trough (end of sharp convergence, when that phase is seen) and the peak (end of sharp
  divergence, start of reconvergence);
- activations (chapter 5, :func:`lmconv.lenses.activations.stabilisation`): the median stabilisation step of
  each run's attention and MLP layers;
- spectra (chapter 7, :func:`lmconv.lenses.spectral.sosd_summary`): the SoSD point t_S of each run's mean
  layer ΔΣ and the end of the fast loss drop t_L.

Alignment is judged in decades of step: two events *line up* in a size when their medians are within
``tol`` decades (a factor 10**tol in step).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..chapters import params
from ..metrics import phases
from . import activations, kl, spectral

params.register("align_tol", params.float_param(0.01, 2.0))

EVENTS = {
    "kl_uniform_end": ("cross-seed KL", "end of the uniform phase"),
    "kl_trough": ("cross-seed KL", "KL trough (end of sharp convergence)"),
    "kl_peak": ("cross-seed KL", "KL peak (start of reconvergence)"),
    "cka_attention": ("activations", "attention layers stabilise (median)"),
    "cka_mlp": ("activations", "MLP layers stabilise (median)"),
    "sosd_point": ("spectra", "singular distribution stops moving (t_S)"),
    "loss_elbow": ("spectra", "fast loss drop ends (t_L)"),
}


def kl_events(pairs: pd.DataFrame, rel_tol: float = 0.05) -> pd.DataFrame:
    """One row per (size, ordered seed pair, event) from the pair's mean-KL curve."""
    rows = []
    for size, cube in kl.pair_cubes(pairs).items():
        curves = cube.rep_curves()
        for rep, curve in zip(cube.reps, curves, strict=True):
            r = phases.kl_phases(cube.steps, curve, rel_tol=rel_tol)
            unit = f"pair {rep[0]}-{rep[1]}"
            rows.append((size, unit, "kl_uniform_end", r.uniform_end))
            if r.has_convergence:
                rows.append((size, unit, "kl_trough", r.trough_step))
            if r.has_divergence:
                rows.append((size, unit, "kl_peak", r.peak_step))
    return pd.DataFrame(rows, columns=["size", "unit", "event", "step"])


def cka_events(cka: pd.DataFrame, total_steps: int, threshold: float = 0.9, min_run: int = 2) -> pd.DataFrame:
    """Per run: the median over layers of the stabilisation step, for attention (OV) and MLP activations."""
    sel = activations.select_cka(cka)
    stab = activations.stabilisation(sel, total_steps, threshold=threshold, min_run=min_run)
    rows = []
    for (size, seed, circuit), g in stab.groupby(["size", "seed", "circuit"], sort=False):
        step = float(np.median(g.step.fillna(np.inf)))
        event = "cka_attention" if circuit.startswith("att") else "cka_mlp"
        rows.append((size, f"seed {seed}", event, step if np.isfinite(step) else None))
    return pd.DataFrame(rows, columns=["size", "unit", "event", "step"])


def sosd_events(
    suite, family: str, sizes: Sequence[str], seeds: Sequence[int], rule: spectral.SosdRule | None = None
) -> pd.DataFrame:
    """Per run: t_S of the mean ΔΣ of the layer matrices and t_L of the validation loss, placed by ``rule``."""
    summary, _ = spectral.run_events(suite, family, sizes, seeds, rule)
    rows = []
    for r in summary.itertuples():
        rows.append((r.size, f"seed {r.seed}", "sosd_point", r.t_S))
        rows.append((r.size, f"seed {r.seed}", "loss_elbow", r.t_L))
    return pd.DataFrame(rows, columns=["size", "unit", "event", "step"])


def summarise(events: pd.DataFrame, sizes: Sequence[str]) -> pd.DataFrame:
    """Per size and event: median, min and max step over the units that show it, and how many do."""
    rows = []
    for size in sizes:
        for event, (lens, label) in EVENTS.items():
            g = events[(events["size"] == size) & (events.event == event)]
            s = g.step.dropna().astype(float)
            s = s[np.isfinite(s)]
            rows.append(
                {
                    "size": size,
                    "event": event,
                    "lens": lens,
                    "label": label,
                    "units": len(g),
                    "seen": len(s),
                    "median": float(np.median(s)) if len(s) else np.nan,
                    "min": float(s.min()) if len(s) else np.nan,
                    "max": float(s.max()) if len(s) else np.nan,
                }
            )
    return pd.DataFrame(rows)


def gaps(summary: pd.DataFrame) -> pd.DataFrame:
    """Per size, every pair of events: the gap between their medians in decades (log10 step of b minus a)."""
    rows = []
    for size, g in summary.groupby("size", sort=False):
        med = g.set_index("event")["median"]
        for a, b in itertools.combinations(EVENTS, 2):
            ma, mb = med.get(a, np.nan), med.get(b, np.nan)
            ok = np.isfinite(ma) and np.isfinite(mb) and ma > 0 and mb > 0
            rows.append(
                {"size": size, "a": a, "b": b, "gap_decades": float(np.log10(mb) - np.log10(ma)) if ok else np.nan}
            )
    return pd.DataFrame(rows)


def aligned_pairs(gap_table: pd.DataFrame, tol: float) -> pd.DataFrame:
    """Per pair of events: in how many sizes they line up (``|gap| ≤ tol`` decades), and the gaps per size."""
    wide = gap_table.pivot_table(index=["a", "b"], columns="size", values="gap_decades", sort=False)
    sizes = list(dict.fromkeys(gap_table["size"]))
    wide = wide[sizes]
    out = wide.copy()
    out["sizes_aligned"] = (wide.abs() <= tol).sum(axis=1)
    out["sizes_measured"] = wide.notna().sum(axis=1)
    out["gap_trend"] = wide[sizes[-1]] - wide[sizes[0]] if len(sizes) > 1 else np.nan
    return out.reset_index()


def lead_event(summary: pd.DataFrame) -> pd.DataFrame:
    """The events in the order they happen (by median step; events not seen are left out): one column per size,
    row k the k-th event as "label (median step)"."""
    cols = {}
    for size, g in summary.groupby("size", sort=False):
        g = g.dropna(subset=["median"]).sort_values("median", kind="stable")
        cols[size] = pd.Series([f"{lab} ({med:g})" for lab, med in zip(g.label, g["median"], strict=True)])
    out = pd.DataFrame(cols)
    out.index = pd.RangeIndex(1, len(out) + 1, name="order")
    return out.fillna("")


LATE_EVENTS = ("kl_peak", "cka_attention", "cka_mlp", "sosd_point")
SHORT_NAMES = {
    "kl_peak": "the KL peak",
    "cka_attention": "the attention layers' stabilisation",
    "cka_mlp": "the MLP layers' stabilisation",
    "sosd_point": "the SoSD point",
}


def _left_out(unseen: list[str]) -> str:
    """ " (… was not seen in any run, so it is left out)" for the late events a comparison could not include."""
    if not unseen:
        return ""
    names = " and ".join(SHORT_NAMES[e] for e in unseen)
    one = len(unseen) == 1
    return f" ({names} {'was' if one else 'were'} not seen in any run, so {'it is' if one else 'they are'} left out)"


def statements(summary: pd.DataFrame, gap_table: pd.DataFrame, tol: float) -> dict[str, str]:
    """The chapter's verdicts as sentences built from the measured medians (so the prose follows the data)."""
    med = summary.pivot_table(index="size", columns="event", values="median", sort=False)
    late = [e for e in LATE_EVENTS if e in med]
    spread = (np.log10(med[late].max(axis=1)) - np.log10(med[late].min(axis=1))).dropna()
    out = {"late": "could not be compared: fewer than two of them were seen in any size"}
    if len(spread) and len(late) >= 2:
        together = bool((spread <= 2 * tol).all())
        out["late"] = (
            f"fall within {spread.min():.2f} to {spread.max():.2f} decades of each other depending on the size"
            + (", close together" if together else ", too far apart to call one moment")
            + _left_out([e for e in LATE_EVENTS if e not in late])
        )
    if {"sosd_point", "loss_elbow"} <= set(med):
        g = (np.log10(med["sosd_point"]) - np.log10(med["loss_elbow"])).dropna()
        if len(g) and (g.abs() <= tol).all():
            out["elbow"] = (
                f"lines up with the SoSD point in every size (within {g.abs().max():.2f} decades), as the "
                "spectral paper reports for its models"
            )
        elif len(g) and (g > tol).all():
            out["elbow"] = (
                f"does not join them: it comes {g.min():.2f} to {g.max():.2f} decades (a factor of {10 ** g.min():.1f} "
                f"to {10 ** g.max():.1f} in steps) before the SoSD point, so in this suite the singular distribution "
                "does not stop moving when the fast drop of the loss ends, as the spectral paper reports for its models"
            )
        elif len(g):
            out["elbow"] = (
                f"is {g.min():+.2f} to {g.max():+.2f} decades from the SoSD point depending on the size "
                f"(positive: before it), so the two line up in some sizes only"
            )
        else:
            out["elbow"] = "could not be compared with the SoSD point (one of them was not found)"
    else:
        missing = [
            lab
            for e, lab in (("sosd_point", "the SoSD point"), ("loss_elbow", "the end of the fast loss drop"))
            if e not in med
        ]
        out["elbow"] = f"could not be compared with the SoSD point: {' and '.join(missing)} was not seen in any run"
    out["early"] = "could not be compared with the late events (one side was not seen)"
    early = [e for e in ("kl_uniform_end", "kl_trough") if e in med]
    if early and late:
        lead = (np.log10(med[late].min(axis=1)) - np.log10(med[early].max(axis=1))).dropna()
        if len(lead):
            out["early"] = f"precede the earliest of the late events by {lead.min():.2f} to {lead.max():.2f} decades"
    return out


def lr_at_events(
    summary: pd.DataFrame, schedule, total_steps: int, events: Sequence[str] = LATE_EVENTS
) -> pd.DataFrame:
    """Per size and event (of ``events``, where seen): the median step, the learning-rate multiplier of
    ``schedule`` there (share of the peak rate) and whether the schedule is decaying at that step (its multiplier
    falls over the next step)."""
    rows = []
    for r in summary[summary.event.isin(events)].dropna(subset=["median"]).itertuples():
        t = round(float(r.median))
        m, m_next = schedule.multiplier(t, total_steps), schedule.multiplier(min(t + 1, total_steps), total_steps)
        rows.append({"size": r.size, "event": r.event, "step": t, "lr_share": float(m), "decaying": bool(m_next < m)})
    return pd.DataFrame(rows, columns=["size", "event", "step", "lr_share", "decaying"])


def decay_statement(lr: pd.DataFrame) -> str:
    """Whether the late events happen while the learning rate decays, from :func:`lr_at_events`, as a sentence."""
    if lr.empty:
        return (
            "None of the late events was seen, so whether they coincide with the decay of the learning rate cannot "
            "be said."
        )
    n, k = len(lr), int(lr.decaying.sum())
    span = f"{lr.lr_share.min():.0%} to {lr.lr_share.max():.0%} of its peak"
    if k == n:
        return (
            f"All {n} late events seen (medians per size) happen while the schedule takes the learning rate down: "
            f"it is at {span} there."
        )
    if k == 0:
        return f"None of the {n} late events seen happens while the learning rate decays (it is at {span} there)."
    return f"{k} of the {n} late events seen happen while the learning rate decays (it is at {span} there)."
