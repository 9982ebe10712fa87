"""Does bf16 training change the findings? A suite against its twin trained in the other precision, run for run.

Where ``precision: auto`` resolves to bf16 (the machine multiplies bf16 matrices natively), the main suite trains
its steps under bf16 autocast (compiled, on the CPU); its *precision* companion trains the same runs of some sizes
in fp32, eagerly. A run and its twin share the seed, so the initial weights and the batch order: they differ only
in the precision of the forward's matrix products (of the training steps and of the validation loss the log
records) and in the kernels that compute the step. The fp32 suite is the
reference, whichever of the two it is.

Rules (each a choice of ours, stated in the book):

- Per seed: the final validation loss, and the median over (layer, circuit) units of the CKA stabilisation
  fraction (chapter 5's rule: the first checkpoint from which CKA to the final checkpoint stays ≥ 0.9).
- Per unordered seed pair: ΔΣ, the mean over weight matrices of ‖Σ̂_i − Σ̂_j‖₂ between the final singular
  distributions. Per seed, the same distance between a run and its twin says how far the precision alone moves
  the spectrum.
- Per ordered seed pair and checkpoint: KL(p_i‖p_j) averaged over the probe; E[conv] is minus the mean over pairs,
  and the KL phases are the detector's on that mean (as in chapter 2).
- *Agreement within the seed spread*: for a quantity measured per seed (or per pair) in both precisions, the
  precision's effect is the largest change of one run's (one pair's) value between the twins, and the seed spread
  is the range (max − min) of the reference's values over its seeds (pairs); they agree when the effect is no
  larger than the spread. The curve agrees when, at every checkpoint, the two means differ by no more than the
  reference's range over pairs there; the phases agree when both mean curves show the same phases and each
  boundary (end of (i), trough, peak) agrees by the rule above, pair by pair.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from .. import analysis
from ..chapters import params
from ..errors import LmconvError
from ..metrics import phases, spectrum
from ..training import profiles
from . import activations as act
from . import annealing as A
from . import seed_sources as S

REFERENCE = "fp32"
SAME_KEYS = ("corpus", "vocab_size", "context")  # must equal the main profile's (both are read on its probe)
BOUNDARIES = {"uniform_end": "end of (i)", "trough_step": "trough", "peak_step": "peak"}
BOUNDARY_PHASE = {"uniform_end": "uniform", "trough_step": "convergence", "peak_step": "divergence"}

params.register("precision_profile", params.choice_param((None, *profiles.available())))


def companion(profile: str, given: str | None = None) -> str:
    """The precision companion of a main profile: ``given``, else the profile's ``companions.precision``."""
    return profiles.companion(profile, "precision", given)


def precision_of(profile: profiles.Profile) -> str:
    """The one precision a profile's arms train in (``auto`` resolved); an error when its arms mix precisions."""
    found = profiles.precisions(profile)
    if len(found) != 1:
        raise LmconvError(
            f"profile {profile.name!r} trains its arms in {sorted(found)}",
            "compare suites whose arms share one precision",
        )
    return found.pop()


def check_design(main: profiles.Profile, comp: profiles.Profile) -> None:
    """Raise unless ``comp`` trains the main profile's runs of some sizes in the other precision.

    Rule: corpus, vocabulary and context equal; its sizes a subset of the main profile's with equal shapes; its
    seeds among the main profile's, at least two; one arm, whose training settings equal the main arm's except the
    precision (and the device and thread count, which change bits, not the training); the same checkpoints; and
    the two precisions differ."""
    bad = [k for k in SAME_KEYS if main.raw.get(k) != comp.raw.get(k)]
    bad += [f"sizes.{n}" for n, s in comp.sizes.items() if main.sizes.get(n) != s]
    bad += [f"seeds {sorted(set(comp.seeds) - set(main.seeds))}"] if set(comp.seeds) - set(main.seeds) else []
    m = main.arm().train
    if len(comp.arms) != 1:
        bad.append(f"arms {list(comp.arms)} (one arm: the twin of the main arm)")
    elif replace(comp.arm().train, precision=m.precision, device=m.device, threads=m.threads) != m:
        bad.append("train (settings other than the precision)")
    if comp.checkpoint_steps() != main.checkpoint_steps():
        bad.append("checkpoints")
    if bad or len(comp.seeds) < 2:
        raise LmconvError(
            f"profile {comp.name!r} is not a precision companion of {main.name!r}: "
            + (f"they differ in {bad}" if bad else "it needs at least two seeds"),
            f"copy those settings from lmconv/training/profiles/{main.name}.yaml and change only the precision",
        )
    if precision_of(main) == precision_of(comp):
        raise LmconvError(
            f"profiles {main.name!r} and {comp.name!r} both train in {precision_of(main)}: there is nothing to compare",
            "compare only where the main profile trains in bf16 (profiles.needed_companions says when)",
        )


# ---------------------------------------------------------------------------------------------------------
# comparisons (pure functions; the tests feed them synthetic tables)
# ---------------------------------------------------------------------------------------------------------


def agreement(ref: pd.Series, other: pd.Series) -> dict[str, Any]:
    """The rule of agreement within the seed spread, for one quantity measured per unit (seed or seed pair) in
    both precisions (two series indexed by unit): each precision's mean with its min–max over units, the
    ``effect`` (largest change of a unit between the twins), the ``spread`` (range of the reference over units),
    and ``agree`` (effect ≤ spread)."""
    if set(ref.index) != set(other.index) or ref.empty:
        raise LmconvError(
            f"the two precisions were measured on different units ({sorted(ref.index)} against {sorted(other.index)})",
            "train and analyse the same seeds in both suites",
        )
    other = other.reindex(ref.index)
    effect = float(np.max(np.abs(other.to_numpy(float) - ref.to_numpy(float))))
    spread = float(ref.max() - ref.min())
    ends = lambda s: {"value": float(s.mean()), "lo": float(s.min()), "hi": float(s.max())}  # noqa: E731
    return {"ref": ends(ref), "other": ends(other), "effect": effect, "spread": spread, "agree": effect <= spread}


def curve_agreement(curves: pd.DataFrame, ref: str, other: str) -> dict[str, Any]:
    """One size's KL curves (rows precision, step, seed_i, seed_j, kl): at each checkpoint the distance between the
    two precisions' means over pairs, against the reference's min–max range over pairs there. ``agree`` when it is
    within the range at every checkpoint; ``n_within`` of ``n_steps`` say where; ``worst_step`` is the checkpoint
    with the largest distance over range, with that distance and range (``worst_effect``, ``worst_spread``)."""
    g = curves.groupby(["precision", "step"]).kl.agg(["mean", "min", "max"])
    r, o = g.loc[ref], g.loc[other].reindex(g.loc[ref].index)
    effect, spread = (o["mean"] - r["mean"]).abs(), r["max"] - r["min"]
    within = effect <= spread
    # effect over range; a step where the pairs do not spread counts as infinitely far unless the means agree
    ratio = (effect / spread.where(spread > 0)).where(spread > 0, np.where(effect > 0, np.inf, 0.0))
    worst = ratio.idxmax()
    return {
        "agree": bool(within.all()),
        "n_within": int(within.sum()),
        "n_steps": len(within),
        "worst_step": int(worst),
        "worst_effect": float(effect[worst]),
        "worst_spread": float(spread[worst]),
        "max_effect": float(effect.max()),
    }


def phase_agreement(curves: pd.DataFrame, ref: str, other: str, rel_tol: float = 0.05) -> dict[str, Any]:
    """One size's KL phases in both precisions (:func:`lmconv.metrics.phases.kl_phases_by_pair`): the phases each
    mean curve shows with their spans and how many pairs reconverge, and ``agree`` when both mean curves show the
    same phases and every boundary (end of (i), trough, peak) agrees within the seed spread by :func:`agreement`,
    pair by pair, over the pairs that show its phase in both precisions."""
    out: dict[str, Any] = {}
    by_pair = {}
    for p in (ref, other):
        steps, kp = S._wide(curves[curves.precision == p])
        by_pair[p] = phases.kl_phases_by_pair(steps, kp, rel_tol=rel_tol)
        m = by_pair[p].mean_curve
        out[p] = {
            "phases": m.observed(),
            "spans": {k: v for k, v in m.spans().items() if v is not None},
            "pairs_reconverge": by_pair[p].n_reconvergence,
            "n_pairs": by_pair[p].n_pairs,
        }
    off, boundaries = [], {}
    for key, words in BOUNDARIES.items():
        has = f"has_{BOUNDARY_PHASE[key]}"
        both = [
            (a, b)
            for a, b in zip(by_pair[ref].pairs, by_pair[other].pairs, strict=True)
            if getattr(a, has) and getattr(b, has)
        ]
        if not both:
            continue
        a = agreement(pd.Series([getattr(x, key) for x, _ in both]), pd.Series([getattr(y, key) for _, y in both]))
        boundaries[key] = a
        if not a["agree"]:
            off.append(f"{words}: a pair's moves {a['effect']:.0f} steps, the {ref} pairs' span {a['spread']:.0f}")
    same = out[ref]["phases"] == out[other]["phases"]
    out |= {"same_phases": same, "boundaries": boundaries, "boundaries_off": off, "agree": same and not off}
    return out


def cross_precision_spectra(records: dict[tuple[str, str, int], np.ndarray], ref: str, other: str) -> pd.DataFrame:
    """ΔΣ between a run's final singular distribution and its twin's, per (size, seed): how far the precision
    alone moves the spectrum. ``records``: (precision, size, seed) → the last record's singular values."""
    rows = []
    for p, size, k in records:
        if p == ref and (other, size, k) in records:
            pairs = zip(records[ref, size, k], records[other, size, k], strict=True)
            d = float(np.mean([spectrum.delta_sigma(a, b) for a, b in pairs]))  # as S.final_spectra: mean over matrices
            rows.append({"size": size, "seed": k, "delta_sigma": d})
    return pd.DataFrame(rows, columns=["size", "seed", "delta_sigma"])


# ---------------------------------------------------------------------------------------------------------
# loading the suites
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PrecisionData:
    """The per-unit measures of both suites, for the sizes and seeds they share."""

    main: profiles.Profile
    companion: profiles.Profile
    ref: str  # the reference precision (fp32)
    other: str
    sizes: list[str]
    seeds: list[int]
    curves: pd.DataFrame  # precision, size, step, seed_i, seed_j, kl
    losses: pd.DataFrame  # precision, size, seed, val_loss (the last validation)
    stabilisation: pd.DataFrame  # precision, size, seed, median_fraction
    spectra: pd.DataFrame  # precision, size, seed_i, seed_j, delta_sigma (final spectra, between seeds)
    twins: pd.DataFrame  # size, seed, delta_sigma (final spectra, a run against its twin)
    steps: int  # training steps of a run


def load(profile: str, precision_profile: str | None = None, sizes: list[str] | None = None) -> PrecisionData:
    """Analyse both suites at the companion's sizes and seeds (through :func:`lmconv.analysis.run`, cached: the
    main suite's pass is chapter 2's) and reduce them to the measures of the comparison."""
    main = profiles.load(profile)
    comp = profiles.load(companion(profile, precision_profile))
    check_design(main, comp)
    avail = list(comp.sizes)
    unknown = [s for s in sizes or [] if s not in avail]
    if unknown:
        raise LmconvError(f"sizes {unknown} are not in both {main.name} and {comp.name}", f"pick from {avail}")
    sizes, seeds = list(sizes or avail), list(comp.seeds)
    total = main.arm().train.steps
    curves, losses, stab, records = [], [], [], {}
    for prof in (main, comp):
        p = precision_of(prof)
        r = analysis.run(
            prof.name, sizes=sizes, seeds=None if prof is main else seeds, probe=main.probe, progress=False
        )
        curves.append(A.pair_curves(S._among(r.pairs, seeds), p, column="precision"))
        _, val = r.suite.train_logs(r.family)
        last = val[val["size"].isin(sizes) & val.seed.isin(seeds)].sort_values("step").groupby(["size", "seed"]).last()
        losses.append(last.reset_index()[["size", "seed", "val_loss"]].assign(precision=p))
        cka = act.select_cka(r.cka[r.cka.seed.isin(seeds)])
        med = act.stabilisation(cka, total).groupby(["size", "seed"]).fraction.median()
        stab.append(med.rename("median_fraction").reset_index().assign(precision=p))
        for size in sizes:
            for k in seeds:
                records[p, size, k] = r.suite.spectra_records(r.family, size, k)[1][-1]
    ref = REFERENCE
    other = next(p for p in (precision_of(main), precision_of(comp)) if p != ref)
    spectra = S.final_spectra(records).rename(columns={"kind": "precision"})
    cat = lambda frames: pd.concat(frames, ignore_index=True)  # noqa: E731
    twins = cross_precision_spectra(records, ref, other)
    return PrecisionData(
        main, comp, ref, other, sizes, seeds, cat(curves), cat(losses), cat(stab), spectra, twins, total
    )


def _per_unit(table: pd.DataFrame, precision: str, size: str, unit: list[str], column: str) -> pd.Series:
    t = table[(table.precision == precision) & (table["size"] == size)]
    return t.set_index(unit)[column]


def compare(d: PrecisionData, rel_tol: float = 0.05) -> dict[str, dict[str, Any]]:
    """Per size: the agreement (:func:`agreement`) of the final loss, the CKA stabilisation and the between-seed
    ΔΣ, the curve's (:func:`curve_agreement`) and the phases' (:func:`phase_agreement`), and the twins' ΔΣ."""
    out = {}
    for size in d.sizes:
        measures = {}
        for name, table, unit, column in (
            ("loss", d.losses, ["seed"], "val_loss"),
            ("stabilisation", d.stabilisation, ["seed"], "median_fraction"),
            ("spectra", d.spectra, ["seed_i", "seed_j"], "delta_sigma"),
        ):
            ref, other = (_per_unit(table, p, size, unit, column) for p in (d.ref, d.other))
            measures[name] = agreement(ref, other)
        c = d.curves[d.curves["size"] == size]
        twins = d.twins[d.twins["size"] == size].delta_sigma
        out[size] = measures | {
            "curve": curve_agreement(c, d.ref, d.other),
            "phases": phase_agreement(c, d.ref, d.other, rel_tol),
            "twins": {"value": float(twins.mean()), "lo": float(twins.min()), "hi": float(twins.max())},
        }
    return out


# ---------------------------------------------------------------------------------------------------------
# words
# ---------------------------------------------------------------------------------------------------------

MEASURE_WORDS = {
    "loss": "final validation loss (nats)",
    "stabilisation": "CKA stabilisation (median fraction of training)",
    "spectra": "ΔΣ between seeds' final spectra",
}


def _range(x: dict[str, float], fmt: str) -> str:
    return f"{x['value']:{fmt}} ({x['lo']:{fmt}}–{x['hi']:{fmt}})"


def _agrees(ok: bool) -> str:
    return "agrees within the seed spread" if ok else "differs by more than the seed spread"


def table(summary: dict[str, dict[str, Any]], ref: str, other: str) -> pd.DataFrame:
    """One row per (size, measure): each precision's mean (min–max over seeds or pairs), the precision's effect, the
    seed spread and the verdict; then the E[conv] curve and its phases."""
    rows = []
    for size, s in summary.items():
        for name, words in MEASURE_WORDS.items():
            m = s[name]
            fmt = ".4f"
            rows.append(
                {
                    "size": size,
                    "measure": words,
                    ref: _range(m["ref"], fmt),
                    other: _range(m["other"], fmt),
                    "precision's effect": f"{m['effect']:{fmt}}",
                    "seed spread": f"{m['spread']:{fmt}}",
                    "verdict": _agrees(m["agree"]),
                }
            )
        c, ph = s["curve"], s["phases"]
        rows.append(
            {
                "size": size,
                "measure": "E[conv] curve (nats)",
                ref: "mean over pairs",
                other: "mean over pairs",
                "precision's effect": f"{c['max_effect']:.4f} (largest)",
                "seed spread": f"{c['worst_spread']:.4f} (at step {c['worst_step']}, the closest)",
                "verdict": f"{_agrees(c['agree'])} at {c['n_within']} of {c['n_steps']} checkpoints",
            }
        )
        spans = {p: _spans(ph[p]) for p in (ref, other)}
        b = ph["boundaries"]
        rows.append(
            {
                "size": size,
                "measure": "KL phases (steps; pairs reconverging)",
                ref: f"{spans[ref]}; {ph[ref]['pairs_reconverge']}/{ph[ref]['n_pairs']}",
                other: f"{spans[other]}; {ph[other]['pairs_reconverge']}/{ph[other]['n_pairs']}",
                "precision's effect": ", ".join(f"{BOUNDARIES[k]} {v['effect']:.0f}" for k, v in b.items()) or "–",
                "seed spread": ", ".join(f"{BOUNDARIES[k]} {v['spread']:.0f}" for k, v in b.items()) or "–",
                "verdict": _agrees(ph["agree"]) if ph["same_phases"] else "other phases seen",
            }
        )
    return pd.DataFrame(rows)


def _spans(p: dict[str, Any]) -> str:
    return ", ".join(f"{S.PHASE_NUMERALS[k]} {a}–{b}" for k, (a, b) in p["spans"].items()) or "none"


def verdict(summary: dict[str, dict[str, Any]], ref: str, other: str) -> str:
    """The section's answer: whether every measure of every size agrees within the seed spread, naming those that
    do not, and how far the precision alone moves the final spectrum against the seed."""
    off = [
        f"{name if name in ('curve', 'phases') else MEASURE_WORDS[name]} at {size}"
        for size, s in summary.items()
        for name in (*MEASURE_WORDS, "curve", "phases")
        if not s[name]["agree"]
    ]
    twins = "; ".join(
        f"at {size} a run and its twin end {s['twins']['value']:.4f} apart in ΔΣ against "
        f"{s['spectra']['ref']['value']:.4f} between two {ref} seeds"
        for size, s in summary.items()
    )
    head = (
        f"Training in {other} instead of {ref} changes none of the measured findings beyond the seed spread"
        if not off
        else f"Training in {other} instead of {ref} moves {', '.join(off)} beyond the seed spread"
    )
    return f"{head} ({twins})."


def unchecked(main: profiles.Profile) -> str:
    """What the section says where no twin is compared: an fp32 suite needs none; a bf16 suite whose profile names
    no precision companion goes unchecked, and the sentence says so."""
    p = precision_of(main)
    if p == REFERENCE:
        return (
            f"This build trained the {main.name!r} suite in {p} (`precision: auto` on a machine without native bf16 "
            "matrix products, or a profile that sets fp32), so its findings need no precision check and its fp32 "
            "twin was not trained."
        )
    return (
        f"This build trained the {main.name!r} suite in {p}, and its profile names no fp32 twin "
        "(`companions: {precision: NAME}`), so whether the precision moves its findings is not checked here."
    )


def timing(minutes: dict[str, float], d: PrecisionData) -> str:
    """The compared runs' training time in each precision (``minutes``: precision → minutes summed over runs)."""
    n = len(d.sizes) * len(d.seeds)
    return (
        f"The {n} compared runs ({', '.join(d.sizes)} × {len(d.seeds)} seeds) trained in {minutes[d.other]:.1f} "
        f"minutes in {d.other} against {minutes[d.ref]:.1f} in {d.ref} ({minutes[d.other] / minutes[d.ref]:.2f}×; "
        f"training time summed over runs, as the status page counts it; the {d.main.name!r} suite is the "
        f"{precision_of(d.main)} one)."
    )
