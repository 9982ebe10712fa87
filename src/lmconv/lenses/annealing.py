"""Reconvergence or annealing? Cross-seed KL under warmup + cosine, warmup + constant LR, and WSD.

The main suite (warmup + cosine) is arm "cosine". Its companion *anneal* profile trains the same sizes, seeds,
data order, steps and checkpoints with a constant LR after warmup (arm "constant") and with
warmup-stable-decay (arm "wsd": the constant arm's exact state at the decay start, then a short linear decay).
Rules used throughout (each a choice of ours, stated in the book):

- A seed pair's curve is KL(p_i‖p_j) averaged over the probe's positions, per checkpoint, for every ordered pair
  i ≠ j; the arm's curve is the mean over pairs, and spreads are the min–max over pairs.
- The peak is the argmax of the mean curve; the *stable* segment runs from the peak to the decay start S of
  the WSD arm, the *decay* segment from S to the last step T. A fall over a segment is KL(start) − KL(end),
  in nats and as a share of KL at the peak; each pair's fall is taken over the same steps.
- The LR multiplier at a checkpoint step s is the one of the update that produced it (step s − 1).
- The unigram point is the argmin over steps of the seed-mean KL(p‖unigram) (tokens table, mean over
  positions); its spread is the min–max of each seed's own argmin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import analysis
from ..chapters import params
from ..errors import LmconvError
from ..metrics import phases, stats
from ..training import profiles

# The anneal companion of each main profile, used when the main profile names none under `companions`.
COSINE = "cosine"  # label of the main suite's arm
SAME_KEYS = ("corpus", "vocab_size", "context")  # must equal the main profile's (arms read on its probe)

params.register("anneal_profile", params.choice_param((None, *profiles.available())))
params.register("abs_tol", params.float_param(0.0, None))


# ---------------------------------------------------------------------------------------------------------
# which suites
# ---------------------------------------------------------------------------------------------------------


def companion(profile: str, anneal_profile: str | None = None) -> str:
    """The anneal profile of a main profile: the given one, else the profile's ``companions.anneal``."""
    return profiles.companion(profile, "anneal", anneal_profile)


@dataclass(frozen=True)
class ArmSpec:
    """One arm of the comparison: where its suite lives and how its LR was scheduled."""

    label: str  # "cosine" for the main suite, else the anneal profile's arm name
    profile: str
    arm: str | None  # arm of ``profile`` (None: its first arm)
    schedule: profiles.Schedule
    steps: int
    lr: float
    branch: tuple[str, int] | None  # (parent label, step) for an arm that starts from another arm's state

    def multiplier(self, step: int) -> float:
        """LR multiplier of the update that produced checkpoint ``step`` (that of step 0 for step 0)."""
        return self.schedule.multiplier(max(int(step) - 1, 0), self.steps)


def check_compatible(main: profiles.Profile, anneal: profiles.Profile) -> None:
    """Raise unless the anneal profile differs from the main one only in its arms and extra checkpoints.

    Rule: corpus, vocabulary and context equal (every arm is analysed on the main profile's probe, and the main
    arm at the anneal profile's seeds); its seeds and sizes subsets of the main profile's, the sizes with equal
    shapes; every anneal arm trains as many steps as the main arm, with the same batch; every checkpoint step of
    the main arm is also one of every anneal arm.
    """
    bad = [k for k in SAME_KEYS if main.raw.get(k) != anneal.raw.get(k)]
    if extra := sorted(set(anneal.seeds) - set(main.seeds)):
        bad.append(f"seeds {extra}")
    for name, size in anneal.sizes.items():
        if name not in main.sizes or main.sizes[name] != size:
            bad.append(f"sizes.{name}")
    m = main.arm().train
    for a in anneal.arms.values():
        if a.train.steps != m.steps or a.train.batch_size != m.batch_size:
            bad.append(f"arms.{a.family} steps/batch")
        missing = set(main.checkpoint_steps()) - set(anneal.checkpoint_steps(a.family))
        if missing:
            bad.append(f"arms.{a.family} checkpoints (lacks {sorted(missing)[:4]})")
    if bad:
        raise LmconvError(
            f"profile {anneal.name!r} is not a companion of {main.name!r}: they differ in {bad}",
            f"copy those settings from lmconv/training/profiles/{main.name}.yaml",
        )


def arm_specs(main: profiles.Profile, anneal: profiles.Profile) -> list[ArmSpec]:
    """The main profile's first arm (label "cosine" when its schedule is cosine), then the anneal arms, parents
    before the arms that branch from them."""
    from ..training.train import arm_order

    m = main.arm()
    label = COSINE if m.train.schedule.kind == "cosine" else m.train.schedule.kind
    out = [ArmSpec(label, main.name, None, m.train.schedule, m.train.steps, m.train.lr, None)]
    for a in arm_order(anneal):
        b = a.train.branch_from
        branch = (str(b["arm"]), int(b["step"])) if b else None
        out.append(ArmSpec(a.family, anneal.name, a.family, a.train.schedule, a.train.steps, a.train.lr, branch))
    return out


def decay_start(specs: list[ArmSpec]) -> int | None:
    """The step S where the stable and decay segments meet: the decay start of the first WSD arm."""
    for s in specs:
        if s.schedule.kind == "wsd":
            return s.schedule.decay_start(s.steps)
    return None


# ---------------------------------------------------------------------------------------------------------
# tables → curves (pure functions; the tests feed them synthetic tables)
# ---------------------------------------------------------------------------------------------------------


def pair_curves(pairs: pd.DataFrame, label: str, column: str = "arm") -> pd.DataFrame:
    """Mean KL over probe positions per (size, step, ordered seed pair), labelled ``label`` in ``column`` (the arm
    here; the kind of pair in :mod:`lmconv.lenses.seed_sources`)."""
    g = pairs.groupby(["size", "step", "seed_i", "seed_j"], as_index=False, observed=True).kl.mean()
    g.insert(0, column, label)
    return g


def seed_unigram(tokens: pd.DataFrame, label: str) -> pd.DataFrame:
    """Mean KL(p‖unigram) over probe positions per (size, step, seed), labelled with the arm."""
    g = tokens.groupby(["size", "step", "seed"], as_index=False, observed=True).kl_unigram.mean()
    g.insert(0, "arm", label)
    return g


def splice(parent: pd.DataFrame, branch: pd.DataFrame, step: int) -> pd.DataFrame:
    """A branched arm's full history: the parent's rows before ``step``, the branch's own rows from it on.

    Both must carry ``arm`` and ``step`` columns; the result takes the branch's arm label.
    """
    before = parent[parent.step < step].assign(arm=branch.arm.iloc[0] if len(branch) else None)
    return pd.concat([before, branch[branch.step >= step]], ignore_index=True).sort_values(
        [c for c in ("size", "step", "seed_i", "seed_j", "seed") if c in branch.columns], ignore_index=True
    )


def mean_curves(curves: pd.DataFrame, column: str = "arm") -> pd.DataFrame:
    """Per (``column``, size, step): mean, min and max of KL over seed pairs, E[conv] = −mean, and mean/KL at step 0
    (NaN where KL at step 0 is 0)."""
    g = stats.band(curves, "kl", [column, "size", "step"])
    g = g.rename(columns={"value": "kl", "lo": "kl_min", "hi": "kl_max", "n": "pairs"})
    first = g.sort_values("step").groupby([column, "size"]).kl.transform("first")
    g["kl_rel"] = g.kl / first.where(first > 0)
    g["conv"], g["conv_lo"], g["conv_hi"] = -g.kl, -g.kl_max, -g.kl_min
    return g.sort_values([column, "size", "step"], ignore_index=True)


def _at(steps: np.ndarray, values: np.ndarray, step: int) -> float:
    idx = np.flatnonzero(steps == step)
    if not idx.size:
        raise LmconvError(f"no checkpoint at step {step} (have {steps.tolist()[:6]}…)")
    return float(values[..., idx[0]]) if values.ndim == 1 else values[:, idx[0]]


def _spread(v: np.ndarray) -> tuple[float, float]:
    v = np.asarray(v, dtype=float)
    return float(np.nanmin(v)), float(np.nanmax(v))


def arm_summary(
    curves: pd.DataFrame,
    unigram: pd.DataFrame,
    spec: ArmSpec,
    split: int | None,
    *,
    common_start: int | None = None,
    rel_tol: float = 0.05,
    abs_tol: float = 0.0,
) -> dict[str, Any]:
    """Peak, falls per segment, LR multipliers, phases and unigram point of one (arm, size).

    ``curves``: rows (step, seed_i, seed_j, kl) of one arm and size; ``unigram``: rows (step, seed,
    kl_unigram). ``split`` is the decay start S (None: no split, the stable segment runs to the end). Each
    number of the mean curve comes with its min–max over seed pairs (``*_lo``/``*_hi``): the peak step and
    height of each pair's own curve, and each pair's fall over the mean curve's segments. ``common_start``
    (the cosine arm's peak step) adds ``fall_common``, the fall from that step to S (to the last step without
    S), so that every arm is measured over the same steps.
    """
    wide = curves.pivot_table(index=["seed_i", "seed_j"], columns="step", values="kl").sort_index(axis=1)
    steps = wide.columns.to_numpy().astype(int)
    kp = wide.to_numpy(dtype=float)  # (pairs, steps)
    by_pair = phases.kl_phases_by_pair(steps, kp, rel_tol=rel_tol, abs_tol=abs_tol)
    ph = by_pair.mean_curve
    mean = np.nanmean(kp, axis=0)
    last = int(steps[-1])
    peak = ph.peak_step
    s = split if split is not None and split in steps else None
    stable_end = last if s is None else s  # the stable segment is empty when the peak is at or after S
    # the rule locates the peak on the smoothed curve; the numbers shown are the raw pair-mean KL at its steps
    peak_kl, final_kl = _at(steps, mean, peak), float(mean[-1])
    out: dict[str, Any] = {
        "arm": spec.label,
        "steps_trained": spec.steps,
        "kl0": ph.kl0,
        "peak_step": peak,
        "peak_kl": peak_kl,
        "peak_rel": peak_kl / ph.kl0 if ph.kl0 > 0 else None,
        "final_kl": final_kl,
        "final_rel": final_kl / ph.kl0 if ph.kl0 > 0 else None,
        "fall": 1.0 - final_kl / peak_kl if peak_kl > 0 else None,
        "reconverges": ph.has_reconvergence,
        "pairs_reconverge": by_pair.n_reconvergence,
        "n_pairs": by_pair.n_pairs,
        "converges_early": ph.has_convergence,  # phase (ii): KL below its initial band before the peak
        "pairs_converge_early": by_pair.n_convergence,
        "dip_depth": ph.dip_depth,
        "trough_step": ph.trough_step,
        "lr_peak": spec.multiplier(peak),
        "lr_split": spec.multiplier(s) if s is not None else None,
        "lr_final": spec.multiplier(last),
        "split": s,
        "stable_end": stable_end,
    }
    pk = [p.peak_step for p in by_pair.pairs]
    out["peak_step_lo"], out["peak_step_hi"] = _spread(pk)
    out["peak_kl_lo"], out["peak_kl_hi"] = _spread(
        [_at(steps, kp[k], p.peak_step) for k, p in enumerate(by_pair.pairs)]
    )
    segments = [("stable", peak, stable_end), ("decay", s, last), ("total", peak, last)]
    segments.append(("common", common_start, stable_end))
    for name, a, b in segments:
        if a is None or b is None or b <= a:
            out.update({f"fall_{name}": None, f"fall_{name}_rel": None, f"fall_{name}_lo": None})
            out.update({f"fall_{name}_hi": None, f"fall_{name}_span": None})
            continue
        f = _at(steps, mean, a) - _at(steps, mean, b)
        fp = _at(steps, kp, a) - _at(steps, kp, b)
        lo, hi = _spread(fp)
        out.update(
            {
                f"fall_{name}": f,
                f"fall_{name}_rel": f / peak_kl,
                f"fall_{name}_lo": lo,
                f"fall_{name}_hi": hi,
                f"fall_{name}_span": (int(a), int(b)),
            }
        )
    out.update(unigram_point(unigram))
    return out


def unigram_point(unigram: pd.DataFrame) -> dict[str, Any]:
    """Argmin over steps of the seed-mean KL to the unigram distribution, and of each seed's own curve."""
    m = unigram.groupby("step").kl_unigram.mean()
    per_seed = unigram.loc[unigram.groupby("seed").kl_unigram.idxmin(), "step"].to_numpy()
    return {
        "unigram_step": int(m.idxmin()),
        "unigram_kl": float(m.min()),
        "unigram_step_lo": int(per_seed.min()),
        "unigram_step_hi": int(per_seed.max()),
    }


def window_fall(curves: pd.DataFrame, start: int, end: int) -> float:
    """Fall of the pair-mean KL of one (arm, size) between two checkpoint steps: KL(start) − KL(end)."""
    m = curves.groupby("step").kl.mean()
    if start not in m.index or end not in m.index:
        raise LmconvError(f"window_fall: steps {start} and {end} must both be checkpoints")
    return float(m[start] - m[end])


def compare(summaries: dict[str, dict[str, Any]], curves: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """What survives without annealing, for one size: the constant (and WSD) arms against the cosine arm.

    Rule: over the cosine arm's reconvergence window W = [peak_cos, T], ``share_window`` is the constant
    arm's fall over W divided by the cosine arm's fall over W (both in nats); ``share_own`` is the constant
    arm's fall from its own peak to T divided by the cosine arm's fall from its own peak to T. For the WSD
    arm the same window fall is split at S into its stable and decay parts. Shares are None when the cosine
    arm does not fall over W.
    """
    cos, con = summaries.get(COSINE), summaries.get("constant")
    if cos is None or con is None:
        raise LmconvError("compare needs a cosine and a constant arm", f"got arms {sorted(summaries)}")
    p, t = cos["peak_step"], int(curves[COSINE].step.max())
    out: dict[str, Any] = {"window": (p, t)}
    cos_w = window_fall(curves[COSINE], p, t) if t > p else 0.0
    con_w = window_fall(curves["constant"], p, t) if t > p else 0.0
    out.update({"cos_fall_window": cos_w, "const_fall_window": con_w})
    out["share_window"] = con_w / cos_w if cos_w > 0 else None
    cos_own = cos["fall_total"] or 0.0
    out["share_own"] = (con["fall_total"] or 0.0) / cos_own if cos_own > 0 else None
    wsd = summaries.get("wsd")
    if wsd is not None and wsd["split"] is not None and t > p:
        s = wsd["split"]
        w = curves["wsd"]
        out["wsd_fall_window"] = window_fall(w, p, t)
        out["wsd_fall_stable_window"] = window_fall(w, p, s) if s > p else 0.0
        out["wsd_fall_decay"] = window_fall(w, s, t)
        out["cos_fall_decay"] = window_fall(curves[COSINE], s, t)
        out["const_fall_decay"] = window_fall(curves["constant"], s, t)
        out["share_wsd_window"] = out["wsd_fall_window"] / cos_w if cos_w > 0 else None
    return out


def verdict(size: str, s: dict[str, dict[str, Any]], c: dict[str, Any], rel_tol: float) -> str:
    """One plain statement (Markdown) per size: what the cosine arm's late KL does, what is left of it under a
    constant LR, and what the WSD decay does. Every number in it is computed here from ``s`` (arm summaries
    of :func:`arm_summary`) and ``c`` (:func:`compare`); "the rule" is the phase (iv) rule of
    ``lmconv.metrics.phases.kl_phases`` with ``rel_tol``."""
    cos, con, wsd = s[COSINE], s["constant"], s.get("wsd")
    p, t = c["window"]
    rule = f"the rule asks for a fall of more than {rel_tol:.0%} of the peak"
    if cos["reconverges"]:
        text = (
            f"under cosine, KL falls by {cos['fall_total']:.3f} nats ({cos['fall_total_rel']:.0%} of its peak) "
            f"from step {p} to step {t}, while the LR multiplier goes from {cos['lr_peak']:.2f} to "
            f"{cos['lr_final']:.2f}. "
        )
    else:
        text = (
            f"the cosine arm does not reconverge: from its peak at step {p} ({cos['peak_kl']:.3f} nats) to step "
            f"{t} its KL changes by {signed(-(cos['fall_total'] or 0.0))} nats, "
            f"{_signed_pct(-(cos['fall'] or 0.0))} of the peak ({rule}). "
        )
    window = (
        f"over steps {p}–{t} its KL changes by {signed(-c['const_fall_window'])} nats where the cosine arm's "
        f"changes by {signed(-c['cos_fall_window'])}"
    )
    if con["reconverges"]:
        text += (
            f"Under a constant LR it reconverges too: from its own peak at step {con['peak_step']} KL falls by "
            f"{con['fall_total']:.3f} nats ({con['fall_total_rel']:.0%} of that peak), {_share(c['share_own'])} "
            f"of the cosine arm's fall; {window}."
        )
    elif con["peak_step"] == t:
        text += (
            f"Under a constant LR KL rises to the last step, where it is {con['final_kl']:.3f} nats "
            f"({con['final_rel']:.1f} times its step-0 value); {window}"
            + (": none of the cosine arm's reconvergence is left." if cos["reconverges"] else ".")
        )
    else:
        text += (
            f"Under a constant LR KL peaks at step {con['peak_step']} ({con['peak_kl']:.3f} nats) and ends "
            f"{_signed_pct(-(con['fall'] or 0.0))} from that peak ({rule}); {window}."
        )
    if wsd is not None and "wsd_fall_decay" in c:
        split = wsd["split"]
        text += (
            f" In the WSD arm's {t - split}-step decay (steps {split}–{t}) KL changes by "
            f"{signed(-c['wsd_fall_decay'])} nats ({_signed_pct(-(wsd['fall_decay_rel'] or 0.0))} of its peak), "
            f"the constant arm's by {signed(-c['const_fall_decay'])} and the cosine arm's by "
            f"{signed(-c['cos_fall_decay'])}; by the rule the WSD arm "
            f"{'reconverges' if wsd['reconverges'] else 'does not reconverge'}."
        )
    return f"**{size}**: " + text


def conclusion(summary: dict[str, dict[str, Any]]) -> str:
    """The section's answer in one sentence, from the phase (iv) flags of every size and arm: of the sizes
    whose cosine arm reconverges, in how many the constant arm does too, and in how many sizes the WSD
    decay alone makes KL reconverge."""
    rec = [z for z, d in summary.items() if d["arms"][COSINE]["reconverges"]]
    kept = [z for z in rec if summary[z]["arms"]["constant"]["reconverges"]]
    wsd = [z for z, d in summary.items() if "wsd" in d["arms"] and d["arms"]["wsd"]["reconverges"]]
    has_wsd = any("wsd" in d["arms"] for d in summary.values())
    if not rec:
        out = "No size reconverges under cosine here, so there is no reconvergence for the schedules to explain"
    elif not kept:
        out = (
            f"No reconvergence survives without annealing: of the sizes that reconverge under cosine "
            f"({', '.join(rec)}), none does with a constant learning rate"
        )
    else:
        out = (
            f"Reconvergence survives without annealing in {len(kept)} of the {len(rec)} sizes that reconverge "
            f"under cosine ({', '.join(kept)})"
        )
    if has_wsd:
        out += f", while the short WSD decay alone makes KL reconverge in {len(wsd)} of {len(summary)} sizes" + (
            f" ({', '.join(wsd)})" if wsd else ""
        )
    return out + "."


def _signed_pct(x: float) -> str:
    """A share with its sign, e.g. "+4%" or "−12%" (typographic minus; shares that round to 0 print "0%")."""
    return "0%" if round(x * 100) == 0 else f"{x:+.0%}".replace("-", "−")


def signed(x: float, digits: int = 3) -> str:
    """A number with its sign and a typographic minus, e.g. "+0.012" or "−0.034"."""
    return f"{x:+.{digits}f}".replace("-", "−")


def _share(x: float | None) -> str:
    return "an undefined share" if x is None else f"{x:.0%}"


# ---------------------------------------------------------------------------------------------------------
# loading the suites
# ---------------------------------------------------------------------------------------------------------


@dataclass
class AnnealData:
    """Everything the section shows, for the sizes both profiles share."""

    main: profiles.Profile
    anneal: profiles.Profile
    specs: list[ArmSpec]
    sizes: list[str]
    split: int | None
    curves: pd.DataFrame  # arm, size, step, seed_i, seed_j, kl
    unigram: pd.DataFrame  # arm, size, step, seed, kl_unigram
    cross_entropy: pd.DataFrame  # arm, size, step, seed, surprisal

    def lr(self, points: int = 240) -> pd.DataFrame:
        """Learning rate and multiplier of every arm at ``points`` steps plus every checkpoint step."""
        rows = []
        for s in self.specs:
            grid = np.unique(np.r_[np.linspace(0, s.steps, points).astype(int), self.curves.step.unique()])
            for st in grid:
                m = s.multiplier(int(st))
                rows.append({"arm": s.label, "step": int(st), "multiplier": m, "lr": s.lr * m})
        return pd.DataFrame(rows)


def load(
    profile: str,
    anneal_profile: str | None = None,
    sizes: list[str] | None = None,
    progress: bool = False,
) -> AnnealData:
    """Analyse every arm (through :func:`lmconv.analysis.run`, cached) and reduce the tables to curves.

    A branched arm (WSD) is analysed at step 0 and from its branch step on; before that step its checkpoints
    are hard links to its parent's, so its history is the parent's (:func:`splice`).
    """
    main = profiles.load(profile)
    anneal = profiles.load(companion(profile, anneal_profile))
    check_compatible(main, anneal)
    specs = arm_specs(main, anneal)
    avail = [s for s in anneal.sizes if s in main.sizes]
    if sizes:
        unknown = [s for s in sizes if s not in avail]
        if unknown:
            raise LmconvError(f"sizes {unknown} are not in both {main.name} and {anneal.name}", f"pick from {avail}")
    sizes = list(sizes or avail)
    curves, uni, ce = {}, {}, {}
    for spec in specs:
        steps = None
        if spec.branch:
            own = anneal.checkpoint_steps(spec.arm)
            steps = sorted({0, *(s for s in own if s >= spec.branch[1])})
        r = analysis.run(
            spec.profile,
            arm=spec.arm,
            sizes=sizes,
            seeds=list(anneal.seeds),
            steps=steps,
            probe=main.probe,
            progress=progress,
        )
        c, u = pair_curves(r.pairs, spec.label), seed_unigram(r.tokens, spec.label)
        e = r.tokens.groupby(["size", "step", "seed"], as_index=False).surprisal.mean()
        e.insert(0, "arm", spec.label)
        if spec.branch:
            parent, at = spec.branch
            c, u, e = (splice(x[parent], y, at) for x, y in ((curves, c), (uni, u), (ce, e)))
        curves[spec.label], uni[spec.label], ce[spec.label] = c, u, e
    cat = lambda d: pd.concat(d.values(), ignore_index=True)  # noqa: E731
    return AnnealData(main, anneal, specs, sizes, decay_start(specs), cat(curves), cat(uni), cat(ce))


def summarise(data: AnnealData, rel_tol: float = 0.05, abs_tol: float = 0.0) -> dict[str, dict[str, Any]]:
    """Per size: ``{"arms": {label: arm_summary}, "compare": compare(...)}``, every arm's ``fall_common``
    measured from the cosine arm's peak step."""
    out = {}
    kw = {"rel_tol": rel_tol, "abs_tol": abs_tol}
    for size in data.sizes:
        rows = {}
        for spec in data.specs:
            c = data.curves[(data.curves.arm == spec.label) & (data.curves["size"] == size)]
            u = data.unigram[(data.unigram.arm == spec.label) & (data.unigram["size"] == size)]
            rows[spec.label] = (c, u, spec)
        start = arm_summary(*rows[COSINE], data.split, **kw)["peak_step"] if COSINE in rows else None
        arms = {k: arm_summary(c, u, sp, data.split, common_start=start, **kw) for k, (c, u, sp) in rows.items()}
        out[size] = {"arms": arms, "compare": compare(arms, {k: v[0] for k, v in rows.items()})}
    return out


def _with_range(x: float | None, lo: float | None, hi: float | None, fmt: str = ".3f") -> str | None:
    """ "x (lo–hi)", or None when x is None."""
    if x is None:
        return None
    return f"{x:{fmt}} ({lo:{fmt}}–{hi:{fmt}})".replace("-", "−")


def table(summary: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (size, arm): the section's numbers, rounded for reading ("–" where a segment is empty).

    Values "x (lo–hi)" give the mean curve's value and the range over seed pairs (over seeds for the unigram
    point); negative falls (KL rose) carry a typographic minus."""
    rows = []
    for size, d in summary.items():
        for arm, a in d["arms"].items():
            yes = {True: "yes", False: "no"}
            rows.append(
                {
                    "size": size,
                    "arm": arm,
                    "KL at step 0": f"{a['kl0']:.4f}",
                    "peak step": _with_range(a["peak_step"], a["peak_step_lo"], a["peak_step_hi"], ".0f"),
                    "peak KL": _with_range(a["peak_kl"], a["peak_kl_lo"], a["peak_kl_hi"]),
                    "peak / step 0": f"{a['peak_rel']:.1f}",
                    "final KL": f"{a['final_kl']:.3f}",
                    "final / step 0": f"{a['final_rel']:.1f}",
                    "fall, peak→S": _with_range(a["fall_stable"], a["fall_stable_lo"], a["fall_stable_hi"]),
                    "fall, cosine peak→S": _with_range(a["fall_common"], a["fall_common_lo"], a["fall_common_hi"]),
                    "fall, S→end": _with_range(a["fall_decay"], a["fall_decay_lo"], a["fall_decay_hi"]),
                    "fall, peak→end": _with_range(a["fall_total"], a["fall_total_lo"], a["fall_total_hi"]),
                    "LR × at peak / S / end": " / ".join(
                        "–" if x is None else f"{x:.2f}" for x in (a["lr_peak"], a["lr_split"], a["lr_final"])
                    ),
                    "reconverges (pairs)": f"{yes[a['reconverges']]} ({a['pairs_reconverge']}/{a['n_pairs']})",
                    "phase (ii) (pairs)": f"{yes[a['converges_early']]} ({a['pairs_converge_early']}/{a['n_pairs']})",
                    "lowest KL before peak / step 0": None if a["dip_depth"] is None else f"{1 - a['dip_depth']:.3f}",
                    "unigram point": _with_range(a["unigram_step"], a["unigram_step_lo"], a["unigram_step_hi"], ".0f"),
                }
            )
    df = pd.DataFrame(rows).astype(object)
    return df.where(df.notna(), "–")


def identical_until(curves: pd.DataFrame, tol: float = 1e-9) -> int:
    """The last checkpoint step up to which the arms' pair curves all agree (KL differs by at most ``tol``),
    for every size and seed pair; -1 if they differ at step 0."""
    wide = curves.pivot_table(index=["size", "step", "seed_i", "seed_j"], columns="arm", values="kl")
    spread = (wide.max(axis=1) - wide.min(axis=1)).groupby(level="step").max().sort_index()
    bad = spread.index[~(spread <= tol)]
    ok = spread.index[spread.index < bad.min()] if len(bad) else spread.index
    return int(ok.max()) if len(ok) else -1


def late_start(curves: pd.DataFrame, share: float = 0.1) -> int:
    """First step of the late-training view: the earliest checkpoint at or after ``share`` of training."""
    steps = np.sort(curves.step.unique())
    return int(steps[steps >= share * steps[-1]][0])


def early_phases(summary: dict[str, dict[str, Any]], rel_tol: float = 0.05) -> dict[str, Any]:
    """Counts over sizes and arms for the early phases: in how many sizes all arms share the unigram point,
    its range of steps, how many arm–size curves show phase (ii), and the range of KL_trough/KL0 (the lowest KL
    before the peak relative to step 0) over arm–size curves."""
    same = sum(len({a["unigram_step"] for a in d["arms"].values()}) == 1 for d in summary.values())
    arms = [a for d in summary.values() for a in d["arms"].values()]
    dips = [1.0 - a["dip_depth"] for a in arms if a["dip_depth"] is not None]
    return {
        "same_unigram": same,
        "n_sizes": len(summary),
        "unigram_lo": min(a["unigram_step"] for a in arms),
        "unigram_hi": max(a["unigram_step"] for a in arms),
        "n_convergence": sum(a["converges_early"] for a in arms),
        "n_arm_sizes": len(arms),
        "min_dip": float(min(dips)),
        "max_dip": float(max(dips)),
        "rel_tol": rel_tol,
    }


def lr_gap(specs: list[ArmSpec], until: int) -> float:
    """Largest relative difference between any arm's LR multiplier and the first arm's, over checkpoint steps
    0…``until`` (every update up to that step): the max of abs(m_arm(s) − m_first(s)) / m_first(s)."""
    ref = specs[0]
    gap = 0.0
    for sp in specs[1:]:
        for st in range(0, until + 1):
            m0 = ref.multiplier(st)
            gap = max(gap, abs(sp.multiplier(st) - m0) / m0)
    return gap


def focus_size(summary: dict[str, dict[str, Any]]) -> str:
    """The size whose cosine arm falls the most from its peak (relative to the peak); the last size on ties."""
    falls = {size: d["arms"][COSINE]["fall_total_rel"] or 0.0 for size, d in summary.items()}
    best = max(falls.values())
    return [size for size, f in falls.items() if f == best][-1]


def final_cross_entropy(data: AnnealData, size: str) -> dict[str, float]:
    """Mean probe cross-entropy (surprisal, nats) over seeds at the last step, per arm, for one size."""
    ce = data.cross_entropy
    last = ce[(ce["size"] == size) & (ce.step == ce.step.max())]
    return {arm: float(v) for arm, v in last.groupby("arm").surprisal.mean().items()}


def comparison_words(ce: dict[str, float], arms: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The section's comparisons as words, from the focus size's final cross-entropy per arm (``ce``) and its
    arm summaries (``arms``, with ``final_kl``): ``ce_word`` (constant vs cosine loss), ``decay_ce_effect`` (wsd
    vs the constant arm it branches from), ``kl_word`` (constant vs cosine KL), ``wsd_word`` (wsd vs cosine KL).
    Ties read as "equal to"/"as close as"."""

    def cmp(a: float, b: float, more: str, less: str, same: str) -> str:
        return more if a > b else less if a < b else same

    out = {
        "ce_word": cmp(ce["constant"], ce[COSINE], "higher", "lower", "equal to that"),
        "kl_word": cmp(arms["constant"]["final_kl"], arms[COSINE]["final_kl"], "further apart", "closer", "as close"),
    }
    if "wsd" in ce and "wsd" in arms:
        out["decay_ce_effect"] = cmp(ce["constant"], ce["wsd"], "lowers", "raises", "does not change")
        out["wsd_word"] = cmp(arms["wsd"]["final_kl"], arms[COSINE]["final_kl"], "above", "below", "level with")
    return out


def lesson(summary: dict[str, dict[str, Any]]) -> str:
    """What the section shows about reconvergence and the learning rate, from the phase (iv) flags: the late
    fall follows the learning rate when no size reconverges at a constant rate while a decay (cosine or WSD)
    makes some reconverge; otherwise the sentence says what was seen instead."""
    dec = [z for z, d in summary.items() if any(d["arms"][a]["reconverges"] for a in d["arms"] if a != "constant")]
    const = [z for z, d in summary.items() if d["arms"]["constant"]["reconverges"]]
    if dec and not const:
        return (
            "at our scale the late fall of cross-seed KL follows the learning rate, not the number of steps taken: "
            "it appears under a decaying schedule and never at a constant rate, so a reconvergence seen under a "
            "decaying schedule cannot by itself be read as something the models learned"
        )
    if const:
        return (
            f"at our scale KL reconverges even at a constant learning rate in {', '.join(const)}, so there the late "
            "fall is not only the schedule's doing"
        )
    return "no arm reconverges at our scale, so these runs cannot tell a learned reconvergence from annealing"
